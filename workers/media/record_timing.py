"""What the recording page measured about a take's timing (``static/record.js``), as it
arrives in the tus Upload-Metadata and is stored on the clip.

Kept apart from the aligner (:mod:`workers.media.align.prior` checks it against the sound)
so the web tier can read and validate it on an upload's creation without importing the
aligner's numerical stack (measured: importing ``workers.media.align`` for the first
take's creation held that request 12-15 s on a busy 2-core machine)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: the largest plausible value of any latency a browser reports or a calibration gives (s)
MAX_LATENCY_S = 1.0
#: the prior and the sound agree when they are at most this far apart (ms); here, not in
#: :mod:`workers.media.align.prior` (which re-exports it), so the web tier can say whether a
#: stored ``record_error_ms`` agrees without importing the aligner
PRIOR_AGREE_MS = 5.0
#: how far outside the guide a take's ``record_start_s`` may lie (s): the page starts the
#: recorder a 3-s count-in before the guide (``record_start_s`` about -3, less the
#: latencies, each within MAX_LATENCY_S), and no take starts after the guide has ended;
#: 10 s either side covers both with room, and refuses what no recording page measures
#: (red team F2: ``record_start_s=3600`` on a 24-s guide was stored)
RECORD_START_MARGIN_S = 10.0
#: the bound on ``record_start_s`` when the guide's length is not known (s)
RECORD_START_MAX_S = 3600.0
#: the ways the page reads a take's start (``start_clock``); anything else is stored empty
START_CLOCKS = ("track", "tap")
#: a number as the page writes one: an optional minus, ASCII digits, an optional decimal
#: part; no exponent, no underscores, no other scripts' digits, no spaces (Python's float()
#: takes all of those: ``-7_1`` is -71, ``-\u0667.\u0661`` is -7.1, ``1e-400`` is 0)
_PLAIN_NUMBER = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,12})?", re.ASCII)
#: the values the page writes for a yes/no key (``latency_calibrated``, ``start_stamped``)
_FLAGS = {"yes": True, "1": True, "true": True, "no": False, "0": False, "false": False,
          "": False}
#: the longest ``recorder_mime`` kept, and what it may hold: a recorder's type, audio or
#: video, with parameters (red team F2: ``text/html`` was stored)
_MIME = re.compile(r"(?:audio|video)/[A-Za-z0-9!#$&^_.+\-]+(?:;[ A-Za-z0-9=,.\"_\-]*)?",
                   re.ASCII | re.IGNORECASE)


def start_range(guide_s: float | None) -> tuple[float, float]:
    """The ``record_start_s`` a recording page can measure along a guide of ``guide_s``
    seconds, as (lowest, highest) in s: :data:`RECORD_START_MARGIN_S` either side of the
    guide; ±:data:`RECORD_START_MAX_S` when the guide's length is unknown (None or 0)."""
    if not guide_s or not math.isfinite(guide_s) or guide_s < 0:
        return -RECORD_START_MAX_S, RECORD_START_MAX_S
    return -RECORD_START_MARGIN_S, guide_s + RECORD_START_MARGIN_S


def parse_plain_number(raw: str) -> float:
    """A decimal number as the recording page writes it (``-3.0125``), as a float; ValueError
    for anything else (exponents, underscores, non-ASCII digits, spaces, NaN, infinities)."""
    if not _PLAIN_NUMBER.fullmatch(raw):
        raise ValueError(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


@dataclass(frozen=True)
class RecordTiming:
    """What the recording page measured, in seconds on the guide's clock.

    ``start_s``: guide time at the clip's first sample; ``output_latency_s``: guide sample
    scheduled -> heard; ``input_latency_s``: sound at the microphone -> sample in the take;
    ``base_latency_s``: the AudioContext's own processing latency (part of the output path);
    ``calibrated``: the input latency was measured on this device, not estimated."""

    start_s: float
    output_latency_s: float = 0.0
    input_latency_s: float = 0.0
    base_latency_s: float = 0.0
    calibrated: bool = False
    mime: str = ""
    #: the take's first sample was found on the context clock from its sound (the page's
    #: microphone tap); else the moment MediaRecorder.start() returned was used
    stamped: bool = False
    #: how a stamped start was read (one of START_CLOCKS): ``track``, the microphone's
    #: capture times (MediaStreamTrackProcessor) against the output's (getOutputTimestamp);
    #: ``tap``, the sample at which it entered the AudioContext; empty when not stamped
    clock: str = ""

    @property
    def expected_offset(self) -> float:
        """The offset (clip time of the guide's t=0, s) the device's own clock predicts."""
        return -self.start_s

    def to_json_dict(self) -> dict:
        return {"start_s": round(self.start_s, 6),
                "output_latency_s": round(self.output_latency_s, 6),
                "input_latency_s": round(self.input_latency_s, 6),
                "base_latency_s": round(self.base_latency_s, 6),
                "calibrated": self.calibrated, "mime": self.mime, "stamped": self.stamped,
                "clock": self.clock}

    @classmethod
    def from_metadata(cls, meta: dict[str, str],
                      guide_s: float | None = None) -> RecordTiming | None:
        """The timing from a tus Upload-Metadata dict (keys ``record_start_s``,
        ``output_latency_s``, ``input_latency_s``, ``base_latency_s``,
        ``latency_calibrated``, ``recorder_mime``, ``start_stamped``, ``start_clock``); None
        when the take was not recorded on the page (no ``record_start_s``). ``guide_s``: the
        guide's length (s), when known: ``record_start_s`` must then lie within
        :func:`start_range` of it. Raises ValueError naming the bad key."""
        if not meta.get("record_start_s"):
            return None
        values = {}
        for key, field in (("record_start_s", "start_s"), ("output_latency_s", None),
                           ("input_latency_s", None), ("base_latency_s", None)):
            raw = meta.get(key, "") or "0"
            try:
                value = parse_plain_number(raw)
            except ValueError:
                raise ValueError(key) from None
            # the measured input "latency" may be negative: it also holds how far the
            # recorder's first sample predates the moment it was asked to start
            low = -MAX_LATENCY_S if key == "input_latency_s" else 0.0
            if field is None and not low <= value <= MAX_LATENCY_S:
                raise ValueError(key)
            if field == "start_s":
                low, high = start_range(guide_s)
                if not low <= value <= high:
                    raise ValueError(key)
            values[field or key] = value
        flags = {}
        for key in ("start_stamped", "latency_calibrated"):
            flag = _FLAGS.get(meta.get(key, ""))
            if flag is None:
                raise ValueError(key)
            flags[key] = flag
        clock = meta.get("start_clock", "")
        if clock and clock not in START_CLOCKS:
            raise ValueError("start_clock")
        mime = meta.get("recorder_mime", "")
        if mime and (len(mime) > 100 or not _MIME.fullmatch(mime)):
            raise ValueError("recorder_mime")
        stamped = flags["start_stamped"]
        return cls(calibrated=flags["latency_calibrated"], mime=mime, stamped=stamped,
                   clock=clock if stamped else "", **values)
