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
#: the ways the page reads a take's start (``start_clock``); anything else is stored empty
START_CLOCKS = ("track", "tap")
#: a number as the page writes one: an optional minus, ASCII digits, an optional decimal
#: part; no exponent, no underscores, no other scripts' digits, no spaces (Python's float()
#: takes all of those: ``-7_1`` is -71, ``-\u0667.\u0661`` is -7.1, ``1e-400`` is 0)
_PLAIN_NUMBER = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,12})?", re.ASCII)
#: the values the page writes for a yes/no key (``latency_calibrated``, ``start_stamped``)
_FLAGS = {"yes": True, "1": True, "true": True, "no": False, "0": False, "false": False,
          "": False}
#: the longest ``recorder_mime`` kept, and what it may hold (a MIME type with parameters)
_MIME = re.compile(r"[A-Za-z0-9!#$&^_.+\-]+/[A-Za-z0-9!#$&^_.+\-]+(?:;[ A-Za-z0-9=,.\"_\-]*)?",
                   re.ASCII)


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
    def from_metadata(cls, meta: dict[str, str]) -> RecordTiming | None:
        """The timing from a tus Upload-Metadata dict (keys ``record_start_s``,
        ``output_latency_s``, ``input_latency_s``, ``base_latency_s``,
        ``latency_calibrated``, ``recorder_mime``, ``start_stamped``, ``start_clock``); None
        when the take was not recorded on the page (no ``record_start_s``). Raises
        ValueError naming the bad key."""
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
            if field == "start_s" and abs(value) > 3600.0:
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
