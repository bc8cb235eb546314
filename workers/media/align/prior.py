"""A take's own timing, measured by the browser that recorded it, as a prior for the aligner.

A take recorded on the campaign page (``static/record.js``) knows when it started on the
guide's clock: the page plays the guide through Web Audio and reads, on the same
``AudioContext`` clock, when the recording began, plus the output latency the browser
reports (``outputLatency``, else ``baseLatency``) and the input latency it measured once per
device (a clap-along or a loopback tone) or estimated. From them the page predicts the offset:
``expected = -start_s``, with ``start_s`` the guide time at the clip's first sample
(negative: the recording began before the guide, during the count-in).

The prior is checked against the sound, never put in its place (issue 16: "when they
disagree the sound wins"):

- The sound's own best offset (:class:`~.decide.AlignResult`) always stays the offset.
- When the prior agrees with it within :data:`PRIOR_AGREE_MS`, two independent measurements
  of the same thing agree (the device's clock cannot be fooled by a chorus a beat away, the
  sound cannot be fooled by a wrong latency report): the confidence may rise, but only to
  :data:`PRIOR_CONFIDENCE` and only from :data:`PRIOR_FLOOR`: a take whose sound says nearly
  nothing ("none", or below the floor) gains nothing, so the prior alone never makes a take
  trusted.
- When they disagree by a little (up to :data:`PRIOR_FAR_MS`), the result is unchanged and the
  difference is returned, to be stored on the clip: a device whose reported latency is wrong
  shows up there.
- When they disagree by far more than any latency a device misreports (more than
  :data:`PRIOR_FAR_MS`: the red team's loopback takes, 10 s apart, the guide's phrase
  repeating), one of the two has mistaken one place for another, and a repeat fools the sound,
  not a clock. The sound keeps its answer only when its evidence is strong on its own
  (:data:`PRIOR_OVERRULE_CONFIDENCE`); else the take is not trusted (confidence at most
  :data:`PRIOR_CONFLICT_CONFIDENCE`), the evidence found near the prior
  (:attr:`~.decide.AlignResult.at_prior`) is offered as a candidate beside the sound's, and
  whichever of the two the take's notes and rhythm support more (:func:`_evidence`) comes
  first, as the offset an organizer starts from by ear.

Why a few milliseconds: a beat is 300 ms or more, so 5 ms cannot confuse two rival offsets,
and a device that knows its timing (the take's first sample found on the context clock, a
calibrated path) is right to about a render quantum and a capture buffer. Measured in
headless Chromium on a loaded machine (README, "Record along the guide"), the page's
prediction was off the sound by +1.7 ms on average with a spread of 16 ms (6 runs on a
loopback; the per-node buffering of the microphone into Web Audio, README): there the prior
mostly does not agree, lifts nothing, and the sound decides, as it must.

- When the sound is weak (method ``none``, or under :data:`PRIOR_FLOOR`) and torn between
  places a beat, a bar or a repeat apart (a headphone take, the part alone: the red team's
  chorale take put the second Stollen, 10.5 s late, 0.4 z ahead of the right place), the
  prior picks among the sound's own candidates: the best supported within
  :data:`PRIOR_PICK_MS` of it (one place), when the take supports it nearly as much as the best
  (:data:`PRIOR_PICK_SHARE` of its :func:`_evidence`), becomes the offset, first among the
  candidates, and the difference is kept (``record_error_ms``). It stays untrusted: a sound
  this weak does not check a device that misreports its latency by a beat, and a wrong offset
  trusted is the worst outcome; an organizer confirms it by ear, starting from the right place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..record_timing import MAX_LATENCY_S, PRIOR_AGREE_MS, RecordTiming
from .decide import CONFIDENCE_THRESHOLD, AlignResult, Candidate

__all__ = ["MAX_LATENCY_S", "PRIOR_AGREE_MS", "PRIOR_CONFIDENCE", "PRIOR_CONFLICT_CONFIDENCE",
           "PRIOR_FAR_MS", "PRIOR_FLOOR", "PRIOR_OVERRULE_CONFIDENCE", "PriorCheck",
           "RecordTiming", "check_prior"]

#: PRIOR_AGREE_MS (imported above, from record_timing): the prior and the sound agree when
#: they are at most this far apart (ms)
#: the confidence an agreeing prior lifts a take to (just above the trust threshold)
PRIOR_CONFIDENCE = 0.6
#: the least confidence the sound must give on its own for an agreeing prior to count
PRIOR_FLOOR = 0.2
#: the prior and the sound disagree "by far" beyond this (ms): more than the largest latency
#: a device may report (MAX_LATENCY_S), so more than any latency misreported; the same width
#: as the search near the prior (decide.PRIOR_SEARCH_S)
PRIOR_FAR_MS = 1000.0
#: the confidence at which the sound overrules a prior that disagrees by far (its evidence is
#: strong on its own: a clear leak or clap line, notes that fit nowhere else)
PRIOR_OVERRULE_CONFIDENCE = 0.85
#: the most confidence a take keeps when the prior and the sound disagree by far and the
#: sound is not strong on its own (below the trust threshold: an organizer decides)
PRIOR_CONFLICT_CONFIDENCE = 0.45
assert PRIOR_CONFIDENCE > CONFIDENCE_THRESHOLD > PRIOR_CONFLICT_CONFIDENCE
#: a weak sound's candidate the prior may pick lies at most this far from it (ms): the spread
#: of the page's start against the sound measured in loaded headless Chromium (16 ms) twice,
#: under the 100 ms and more that separate the rival places a beat or a repeat makes
PRIOR_PICK_MS = 30.0
#: ... and the take supports it at least this share of its best candidate's evidence
PRIOR_PICK_SHARE = 0.85


@dataclass(frozen=True)
class PriorCheck:
    """The aligner's result after the prior's check, and what the check found.

    ``error_ms``: the sound's offset minus the prior's (ms; positive: the take's sound came
    later than the device predicted, i.e. the device under-reports its latency)."""

    result: AlignResult
    error_ms: float | None
    agrees: bool
    lifted: bool
    #: the two disagree by more than PRIOR_FAR_MS and the sound was not strong enough to
    #: overrule the device: the take is not trusted
    conflict: bool = False
    #: in a conflict, the offset near the prior was put first (its evidence was the stronger)
    chose_prior: bool = False


def _evidence(k: Candidate) -> float:
    """How much the take's sound supports candidate ``k``, for choosing between two places a
    repeat makes alike: its music (rhythm, chroma) z plus its notes z, plus any leak line."""
    return float(k.music) + float(k.notes) + float(k.leak)


def check_prior(result: AlignResult, timing: RecordTiming) -> PriorCheck:
    """Check the sound's ``result`` against the device's ``timing`` (see the module notes).

    The offset, drift, method and candidates are always the sound's; only the confidence may
    rise, to :data:`PRIOR_CONFIDENCE`, when the two agree within :data:`PRIOR_AGREE_MS` and the
    sound alone gave at least :data:`PRIOR_FLOOR` by a method other than ``none``. When they
    disagree by more than :data:`PRIOR_FAR_MS` and the sound's confidence is under
    :data:`PRIOR_OVERRULE_CONFIDENCE`, the take is not trusted and the evidence near the
    prior is offered (and chosen when the take supports it more). ``error_ms`` is None when
    the sound found nothing (method ``none``): there is nothing to compare with; the evidence
    near the prior is then only added to the candidates."""
    if result.method == "none" or result.confidence < PRIOR_FLOOR:
        picked = _pick_near_prior(result, timing)
        if picked is not None:
            return picked
    if result.method == "none":
        if result.at_prior is not None and all(
                abs(k.offset_seconds - result.at_prior.offset_seconds) > 0.03
                for k in result.candidates):
            # offered to the organizer beside the sound's guesses
            result = replace(result, candidates=(*result.candidates, result.at_prior))
        return PriorCheck(result, None, False, False)
    error_ms = (result.offset_seconds - timing.expected_offset) * 1000.0
    agrees = abs(error_ms) <= PRIOR_AGREE_MS
    if abs(error_ms) > PRIOR_FAR_MS and result.confidence < PRIOR_OVERRULE_CONFIDENCE:
        return _conflict(result, error_ms)
    if not agrees or result.method == "none" or result.confidence < PRIOR_FLOOR \
            or result.confidence >= PRIOR_CONFIDENCE:
        return PriorCheck(result, error_ms, agrees, False)
    lifted = replace(result, confidence=PRIOR_CONFIDENCE,
                     trusted=PRIOR_CONFIDENCE >= CONFIDENCE_THRESHOLD)
    return PriorCheck(lifted, error_ms, agrees, True)


def _pick_near_prior(result: AlignResult, timing: RecordTiming) -> PriorCheck | None:
    """A weak sound torn between places: the one candidate near the prior, when the take
    supports it nearly as much as its best, becomes the offset, untrusted (see the module
    notes); None when no single candidate qualifies."""
    pool = list(result.candidates)
    near_prior = result.at_prior
    if near_prior is not None and all(
            abs(k.offset_seconds - near_prior.offset_seconds) > 0.03 for k in pool):
        pool.append(near_prior)
    if not pool:
        return None
    # the share is of the sound's own best: the evidence searched for near the prior is
    # found where it is looked for, and a weak leak reading there must not raise the bar
    best = max(_evidence(k) for k in (result.candidates or pool))
    expected = timing.expected_offset
    near = [k for k in pool if abs(k.offset_seconds - expected) * 1000.0 <= PRIOR_PICK_MS]
    if best <= 0.0 or not near:
        return None
    pick = max(near, key=_evidence)
    # every candidate within PRIOR_PICK_MS of the prior is one place (rivals a beat or a
    # repeat away lie 100 ms and more apart): the best supported of them stands for it
    if _evidence(pick) < PRIOR_PICK_SHARE * best:
        return None
    error_ms = (pick.offset_seconds - expected) * 1000.0
    rest = [k for k in pool if abs(k.offset_seconds - pick.offset_seconds) > 0.03]
    # marked as the place the recording page's clock points at (the clip page says so)
    pick = replace(pick, prior=True)
    picked = replace(result, offset_seconds=pick.offset_seconds, trusted=False,
                     confidence=min(result.confidence, PRIOR_CONFLICT_CONFIDENCE),
                     candidates=tuple([pick, *rest][:6]))
    return PriorCheck(picked, error_ms, abs(error_ms) <= PRIOR_AGREE_MS, False,
                      chose_prior=True)


def _conflict(result: AlignResult, error_ms: float) -> PriorCheck:
    """The prior and a not-strong sound disagree by far: not trusted, both places offered,
    the better supported first."""
    confidence = min(result.confidence, PRIOR_CONFLICT_CONFIDENCE)
    sound_first = list(result.candidates) or [
        Candidate(result.offset_seconds, 0.0, 0.0)]
    near = result.at_prior
    if near is None:
        return PriorCheck(replace(result, confidence=confidence, trusted=False), error_ms,
                          False, False, conflict=True)
    rest = [k for k in sound_first if abs(k.offset_seconds - near.offset_seconds) > 0.03]
    chose = _evidence(near) > _evidence(sound_first[0])
    order = [near, *rest] if chose else [rest[0], near, *rest[1:]] if rest else [near]
    offset = order[0].offset_seconds
    return PriorCheck(replace(result, offset_seconds=offset, confidence=confidence,
                              trusted=False, candidates=tuple(order[:6])),
                      error_ms, False, False, conflict=True, chose_prior=chose)
