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
- When they disagree, the result is unchanged and the difference is returned, to be stored on
  the clip: a device whose reported latency is wrong shows up there.

Why a few milliseconds: a beat is 300 ms or more, so 5 ms cannot confuse two rival offsets,
and a device that knows its timing (the take's first sample found on the context clock, a
calibrated path) is right to about a render quantum and a capture buffer. Measured in
headless Chromium on a loaded machine (README, "Record along the guide"), the page's
prediction was off the sound by +1.7 ms on average with a spread of 16 ms (6 runs on a
loopback; the per-node buffering of the microphone into Web Audio, README): there the prior
mostly does not agree, lifts nothing, and the sound decides, as it must.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..record_timing import MAX_LATENCY_S, RecordTiming
from .decide import CONFIDENCE_THRESHOLD, AlignResult

__all__ = ["MAX_LATENCY_S", "PRIOR_AGREE_MS", "PRIOR_CONFIDENCE", "PRIOR_FLOOR", "PriorCheck",
           "RecordTiming", "check_prior"]

#: the prior and the sound agree when they are at most this far apart (ms)
PRIOR_AGREE_MS = 5.0
#: the confidence an agreeing prior lifts a take to (just above the trust threshold)
PRIOR_CONFIDENCE = 0.6
#: the least confidence the sound must give on its own for an agreeing prior to count
PRIOR_FLOOR = 0.2
assert PRIOR_CONFIDENCE > CONFIDENCE_THRESHOLD


@dataclass(frozen=True)
class PriorCheck:
    """The aligner's result after the prior's check, and what the check found.

    ``error_ms``: the sound's offset minus the prior's (ms; positive: the take's sound came
    later than the device predicted, i.e. the device under-reports its latency)."""

    result: AlignResult
    error_ms: float
    agrees: bool
    lifted: bool


def check_prior(result: AlignResult, timing: RecordTiming) -> PriorCheck:
    """Check the sound's ``result`` against the device's ``timing`` (see the module notes).

    The offset, drift, method and candidates are always the sound's; only the confidence may
    rise, to :data:`PRIOR_CONFIDENCE`, when the two agree within :data:`PRIOR_AGREE_MS` and the
    sound alone gave at least :data:`PRIOR_FLOOR` by a method other than ``none``."""
    error_ms = (result.offset_seconds - timing.expected_offset) * 1000.0
    agrees = abs(error_ms) <= PRIOR_AGREE_MS
    if not agrees or result.method == "none" or result.confidence < PRIOR_FLOOR \
            or result.confidence >= PRIOR_CONFIDENCE:
        return PriorCheck(result, error_ms, agrees, False)
    lifted = replace(result, confidence=PRIOR_CONFIDENCE,
                     trusted=PRIOR_CONFIDENCE >= CONFIDENCE_THRESHOLD)
    return PriorCheck(lifted, error_ms, agrees, True)
