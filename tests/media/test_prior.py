"""The recording page's timing as a prior (workers.media.align.prior): checked against the
sound, never in its place."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workers.media.align import AlignResult
from workers.media.align.prior import (
    PRIOR_AGREE_MS,
    PRIOR_CONFIDENCE,
    PRIOR_CONFLICT_CONFIDENCE,
    PRIOR_FAR_MS,
    PRIOR_OVERRULE_CONFIDENCE,
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
    assert not check.lifted and not check.result.trusted
    # a sound that found nothing has nothing to agree with (red team F5)
    assert check.agrees == (result.method != "none")


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
    with pytest.raises(ValueError, match="start_clock"):
        RecordTiming.from_metadata({**base, "start_clock": "sundial"})
    unstamped = RecordTiming.from_metadata({"record_start_s": "-3.0", "start_clock": "track"})
    assert unstamped.clock == ""
    for bad in ({"record_start_s": "soon"}, {"record_start_s": "nan"},
                {"record_start_s": "1", "output_latency_s": "-0.1"},
                {"record_start_s": "1", "output_latency_s": "3"},
                {"record_start_s": "1", "input_latency_s": "inf"},
                {"record_start_s": str(math.inf)}):
        with pytest.raises(ValueError):
            RecordTiming.from_metadata(bad)


@pytest.mark.parametrize(("key", "raw"), [
    # red team F6: Python's float() takes all of these
    ("record_start_s", "-7_1"), ("record_start_s", "-\u0667.\u0661"),
    ("record_start_s", "1e-400"), ("record_start_s", "  -7.1  "), ("record_start_s", "-7.1\n"),
    ("record_start_s", "+3"), ("record_start_s", "1e2"), ("record_start_s", ".5"),
    ("record_start_s", "-3601"), ("output_latency_s", "0x10"), ("input_latency_s", "-1.5"),
    ("base_latency_s", "\uff10.1"), ("latency_calibrated", "maybe"),
    ("start_stamped", "definitely"), ("recorder_mime", "<script>alert(1)</script>"),
    ("recorder_mime", "video/webm" + "x" * 5000), ("start_clock", "sundial")])
def test_metadata_is_parsed_strictly_and_the_bad_key_named(key, raw):
    meta = {"record_start_s": "-3.0", "start_stamped": "yes", key: raw}
    with pytest.raises(ValueError) as err:
        RecordTiming.from_metadata(meta)
    assert str(err.value) == key


def test_metadata_as_the_page_writes_it_is_taken():
    timing = RecordTiming.from_metadata({
        "record_start_s": "-3.012500", "output_latency_s": "0.020000",
        "input_latency_s": "-0.004000", "base_latency_s": "0.005333",
        "latency_calibrated": "", "start_stamped": "yes", "start_clock": "track",
        "recorder_mime": "video/webm;codecs=vp8,opus"})
    assert timing.start_s == -3.0125 and timing.input_latency_s == -0.004
    assert timing.mime == "video/webm;codecs=vp8,opus" and timing.clock == "track"
    assert not timing.calibrated and timing.stamped


# --- a far disagreement (red team W1: a take trusted 10 s off, the guide's phrase repeating)

def candidate(offset: float, music: float, notes: float, leak: float = 0.0, prior=False):
    from workers.media.align.decide import Candidate

    return Candidate(offset, music, notes, 0, leak, prior=prior)


def repeat_fooled(at_prior_music: float, confidence: float = 0.66) -> AlignResult:
    """The sound's pick is a phrase repeat 10 s after the truth (3.19 s), found by a weak
    leak line; the evidence near the device's prediction is as the red team's take held."""
    from dataclasses import replace

    found = AlignResult(13.1942, confidence, "leak", -11.7, confidence >= 0.5, (
        candidate(13.1942, 36.3, 4.1, 6.0), candidate(3.1933, 59.6, 12.8),
        candidate(0.0691, 45.4, 3.9)))
    return replace(found, at_prior=candidate(3.1942, at_prior_music, 12.8, 111.6, prior=True))


def test_a_far_disagreement_with_a_weak_sound_is_not_trusted_and_the_better_place_comes_first():
    check = check_prior(repeat_fooled(59.6), RecordTiming(start_s=-2.9456))
    assert check.conflict and check.chose_prior
    assert not check.result.trusted and check.result.confidence == PRIOR_CONFLICT_CONFIDENCE
    assert check.result.offset_seconds == pytest.approx(3.1942)
    offered = [k.offset_seconds for k in check.result.candidates]
    assert offered[:2] == [3.1942, 13.1942]  # both places, for an organizer to hear
    assert check.result.candidates[0].prior
    assert check.error_ms == pytest.approx(10248.6, abs=0.1)  # the sound's own pick's


def test_a_far_disagreement_where_the_prior_holds_less_keeps_the_sound_first_untrusted():
    found = repeat_fooled(-5.0)
    weak = found.at_prior.__class__(3.1942, -5.0, -1.0, 0, 0.0, prior=True)
    from dataclasses import replace

    check = check_prior(replace(found, at_prior=weak), RecordTiming(start_s=-2.9456))
    assert check.conflict and not check.chose_prior and not check.result.trusted
    assert [k.offset_seconds for k in check.result.candidates][:2] == [13.1942, 3.1942]
    # no evidence near the prior at all: still untrusted, the sound's candidates kept
    bare = check_prior(replace(found, at_prior=None), RecordTiming(start_s=-2.9456))
    assert bare.conflict and not bare.result.trusted
    assert bare.result.offset_seconds == 13.1942


def test_a_sound_strong_on_its_own_overrules_a_far_prior():
    strong = repeat_fooled(59.6, confidence=PRIOR_OVERRULE_CONFIDENCE + 0.01)
    check = check_prior(strong, RecordTiming(start_s=-2.9456))
    assert not check.conflict and check.result == strong and check.result.trusted


def test_a_disagreement_within_a_latency_is_no_conflict():
    edge = PRIOR_FAR_MS / 1000
    found = sound(3.0, 0.66, "leak")
    assert not check_prior(found, RecordTiming(start_s=-3.0 + edge * 0.9)).conflict
    assert check_prior(found, RecordTiming(start_s=-3.0 + edge * 1.1)).conflict


def test_no_error_is_recorded_when_the_sound_found_nothing():
    """Red team F5: method none, offset 0: a -3000 ms 'error' would read as a device 3 s off."""
    check = check_prior(AlignResult(0.0, 0.0, "none", 0.0, False), RecordTiming(start_s=-3.0))
    assert check.error_ms is None and not check.agrees and not check.conflict


def test_the_sound_is_searched_near_the_prior_on_a_guide_whose_phrase_repeats():
    """A guide of one 10-s phrase played twice and a take that holds the phrase once: the
    sound alone cannot tell 3.0 s from -7.0 s; the evidence near each prior is found, and a
    prior 10 s from the sound's pick leaves the take untrusted with both places offered."""
    from tests.media.test_align import SR, case
    from workers.media.align import align_signals

    phrase, _ = case(5, offset=0.0, mode="leak", seconds=10.0)
    guide = np.concatenate([phrase, phrase])
    _, clip = case(5, offset=3.0, mode="leak", seconds=10.0)
    for truth in (3.0, -7.0):
        found = align_signals(guide, clip, SR, prior_offset=truth + 0.04)
        assert found.at_prior is not None
        assert found.at_prior.offset_seconds == pytest.approx(truth, abs=0.01)
        check = check_prior(found, RecordTiming(start_s=-(truth + 0.04)))
        # either place may be the sound's pick; never trusted, and the one near the prior
        # is always offered
        assert not check.result.trusted
        offered = [k.offset_seconds for k in check.result.candidates]
        assert any(abs(o - truth) < 0.01 for o in offered)


# --- a weak sound torn between places (red team record3 F1: a headphone take of a chorale
# whose Stollen repeats 10.5 s later; the sound put the repeat 0.4 z ahead of the truth)

def headphone_take(confidence: float = 0.0, method: str = "none") -> AlignResult:
    """The red team's take's candidates as `tutti align --json` gave them (truth +3.0 s)."""
    return AlignResult(-7.484, confidence, method, 0.0, False, (
        candidate(-7.484, 9.9, 5.2), candidate(3.011, 9.5, 5.1), candidate(-7.352, 8.0, 4.2),
        candidate(-5.988, 8.6, 1.4), candidate(3.26, 7.1, 2.5)))


@pytest.mark.parametrize("method,confidence", [("none", 0.0), ("part", 0.1)])
def test_a_weak_sound_torn_between_repeats_takes_the_place_the_prior_points_at(
        method, confidence):
    check = check_prior(headphone_take(confidence, method), RecordTiming(start_s=-3.0))
    assert check.chose_prior and not check.conflict
    assert check.result.offset_seconds == pytest.approx(3.011)
    assert check.result.candidates[0].offset_seconds == pytest.approx(3.011)
    assert check.result.candidates[0].prior  # the clip page marks where the page's clock is
    assert -7.484 in [k.offset_seconds for k in check.result.candidates]  # still offered
    assert check.error_ms == pytest.approx(11.0)  # kept: the device's error is on record
    # never trusted on the prior's word: a weak sound does not check a wrong latency
    assert not check.result.trusted and check.result.confidence <= confidence


def test_the_prior_picks_only_a_place_the_sound_holds_nearly_as_well_as_its_best():
    from dataclasses import replace

    found = headphone_take()
    weak_near = replace(found, candidates=(candidate(-7.484, 9.9, 5.2),
                                           candidate(3.011, 6.0, 2.0)))
    check = check_prior(weak_near, RecordTiming(start_s=-3.0))
    assert not check.chose_prior and check.result.offset_seconds == -7.484
    # nothing within PRIOR_PICK_MS of the prior (a device 60 ms off the sound's places)
    off = check_prior(found, RecordTiming(start_s=-3.071))
    assert not off.chose_prior and off.result.offset_seconds == -7.484
    assert off.error_ms is None


def test_the_start_is_bounded_by_the_guide_and_the_recorder_is_audio_or_video():
    """Red team F2: ``record_start_s=3600`` on a 24-s guide and ``recorder_mime=text/html``
    were stored. The start lies within RECORD_START_MARGIN_S of a guide of known length (no
    page measures more: it counts in 3 s, and no take starts after the guide); only an
    audio or video type is a recorder's."""
    from workers.media.record_timing import RECORD_START_MARGIN_S, start_range

    assert start_range(24.0) == (-RECORD_START_MARGIN_S, 24.0 + RECORD_START_MARGIN_S)
    assert start_range(None) == start_range(0.0) == (-3600.0, 3600.0)
    for raw in ("3600", "34.5", f"{-RECORD_START_MARGIN_S - 0.5}"):
        with pytest.raises(ValueError, match="record_start_s"):
            RecordTiming.from_metadata({"record_start_s": raw}, guide_s=24.0)
    for raw in ("-3.012500", "33.9", f"{-RECORD_START_MARGIN_S}"):
        assert RecordTiming.from_metadata({"record_start_s": raw}, guide_s=24.0)
    # without a known guide length only the absolute bound holds
    assert RecordTiming.from_metadata({"record_start_s": "600"}).start_s == 600.0
    for mime in ("text/html", "application/octet-stream", "image/png", "text/html;x=video/webm"):
        with pytest.raises(ValueError, match="recorder_mime"):
            RecordTiming.from_metadata({"record_start_s": "-3", "recorder_mime": mime})
    for mime in ("video/webm;codecs=vp8,opus", "audio/mp4", "video/mp4;codecs=avc1.42E01E",
                 "Video/WebM"):
        assert RecordTiming.from_metadata({"record_start_s": "-3",
                                           "recorder_mime": mime}).mime == mime
