"""bench/sync's tools for the part-only takes: the stages' breakdown (``bench.sync.parts``) and
the realistic corpus made of some cases only (``--cases``). Small generated signals; the
realistic renderers (FluidSynth, pyroomacoustics) only where installed."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from bench.sync import parts
from bench.sync.run import write_wav
from tests.media.test_align import jittered_take

SR = 16000


def test_the_stages_of_a_part_only_take_are_read_with_signed_errors(tmp_path):
    """One part-only take (notes jittered +-20 ms, mean removed, 3 s offset): the breakdown
    names the music score's pick and the fine offset, each within a few tens of ms of the
    truth, and the final signed error is the offset's own (estimated minus true)."""
    guide, clip = jittered_take(61, 3.0, 0.02)
    write_wav(str(tmp_path / "guide-000.wav"), guide, SR)
    write_wav(str(tmp_path / "part-00.wav"), clip, SR)
    t = {"clip": "part-00.wav", "guide": "guide-000.wav", "case": "part",
         "true_offset": "3.00000", "drift_ppm": "0.00", "guide_style": "piano/none/floor/1v",
         "timbre": "reed"}
    with open(tmp_path / "truth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(t))
        w.writeheader()
        w.writerow(t)
    row = parts.one(str(tmp_path), t)
    assert row["method"] == "part", row
    assert row["pick"] is not None and abs(row["pick"]) < 40.0, row
    assert row["fine"] is not None and abs(row["fine"]) < 20.0, row
    assert row["err"] is not None and abs(row["err"] - row["fine"]) < 1.0, row  # no drift
    assert row["guide"] == "piano" and row["timbre"] == "reed"
    assert parts.main([str(tmp_path)]) == 0


def test_a_room_draws_the_same_numbers_rendered_or_not():
    """``--cases``: the cases not made still draw their random numbers, so the takes made are
    a full run's. The room (the one costly draw) draws as many numbers without simulating."""
    pytest.importorskip("pyroomacoustics")
    from bench.sync.real import room_rirs

    a, b = np.random.default_rng(5), np.random.default_rng(5)
    rirs, meta = room_rirs(a, 0.3)
    _, skipped = room_rirs(b, 0.3, render=False)
    assert a.random() == b.random()
    assert meta["room"] == skipped["room"] and len(rirs) == 3
