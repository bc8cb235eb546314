"""The recording page's timing as a prior (workers.media.align.prior): checked against the
sound, never in its place."""

from __future__ import annotations

import math

import pytest

from workers.media.align import AlignResult
from workers.media.align.prior import (
    PRIOR_AGREE_MS,
    PRIOR_CONFIDENCE,
    RecordTiming,
    check_prior,
)


def sound(offset: float, confidence: float, method: str = "part") -> AlignResult:
    return AlignResult(offset, confidence, method, 0.0, confidence >= 0.5)


def test_an_agreeing_prior_lifts_a_hesitant_sound_to_trusted_and_keeps_its_offset():
    check = check_prior(sound(2.5031, 0.35), RecordTiming(start_s=-2.5))
    assert check.agrees and check.lifted
    assert check.result.offset_seconds == 2.5031  # the sound's, to the sample
    assert check.result.confidence == PRIOR_CONFIDENCE and check.result.trusted
    assert check.error_ms == pytest.approx(3.1)


def test_a_disagreeing_prior_changes_nothing_and_the_difference_is_kept():
    found = sound(2.5, 0.35)
    check = check_prior(found, RecordTiming(start_s=-2.46))  # the device says 40 ms earlier
    assert not check.agrees and not check.lifted
    assert check.result == found  # the sound wins
    assert check.error_ms == pytest.approx(40.0)
    # and a trusted take stays trusted: the device does not overrule the sound either
    trusted = sound(2.5, 0.9, "leak")
    assert check_prior(trusted, RecordTiming(start_s=-3.5)).result == trusted


@pytest.mark.parametrize("result", [sound(1.0, 0.1), sound(1.0, 0.4, "none")])
def test_the_prior_alone_never_makes_a_take_trusted(result):
    """A take whose sound says (nearly) nothing gains nothing, agreeing or not."""
    check = check_prior(result, RecordTiming(start_s=-1.0))
    assert check.agrees and not check.lifted and not check.result.trusted


def test_agreement_is_a_few_milliseconds():
    edge = PRIOR_AGREE_MS / 1000
    assert check_prior(sound(1.0, 0.3), RecordTiming(start_s=-1.0 + edge * 0.9)).lifted
    assert not check_prior(sound(1.0, 0.3), RecordTiming(start_s=-1.0 + edge * 1.1)).lifted


def test_timing_from_upload_metadata():
    assert RecordTiming.from_metadata({"campaign": "x"}) is None  # a file, not a take
    timing = RecordTiming.from_metadata({
        "record_start_s": "-3.0125", "output_latency_s": "0.02", "base_latency_s": "0.005",
        "input_latency_s": "-0.012", "latency_calibrated": "yes", "recorder_mime": "video/webm"})
    assert timing.expected_offset == pytest.approx(3.0125)
    assert timing.calibrated and timing.input_latency_s == pytest.approx(-0.012)
    assert RecordTiming(**timing.to_json_dict()) == timing
    assert not timing.stamped and timing.clock == ""
    # how the page read the start travels with it; a clock it does not know is not kept,
    # nor a clock for a start that was not stamped
    base = {"record_start_s": "-3.0", "start_stamped": "yes"}
    assert RecordTiming.from_metadata({**base, "start_clock": "track"}).clock == "track"
    tap = RecordTiming.from_metadata({**base, "start_clock": "tap"})
    assert tap.to_json_dict()["clock"] == "tap"
    assert RecordTiming.from_metadata({**base, "start_clock": "sundial"}).clock == ""
    unstamped = RecordTiming.from_metadata({"record_start_s": "-3.0", "start_clock": "track"})
    assert unstamped.clock == ""
    for bad in ({"record_start_s": "soon"}, {"record_start_s": "nan"},
                {"record_start_s": "1", "output_latency_s": "-0.1"},
                {"record_start_s": "1", "output_latency_s": "3"},
                {"record_start_s": "1", "input_latency_s": "inf"},
                {"record_start_s": str(math.inf)}):
        with pytest.raises(ValueError):
            RecordTiming.from_metadata(bad)
