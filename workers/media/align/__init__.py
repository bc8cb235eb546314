"""Offset, clock drift and a calibrated confidence of a clip against the guide.

The evidence a take can hold has a module each, and the decision between candidate offsets one
place (:mod:`.decide`, with its calibration notes):

``features``  what is compared: note onsets, chroma, the main note's pitch class, activity
``music``     part evidence: the clip's notes, harmony and phrasing against the guide's per lag
``leak``      the guide itself heard in the clip (GCC-PHAT along a line of offset and drift)
``clap``      claps along the guide's count-in clicks
``decide``    candidates, agreement between the kinds of evidence, confidence

Convention: ``offset_seconds`` is the clip time at which the guide's t=0 occurs (trim that much
from the clip's start; negative: the clip started late, pad it).
"""

from .decide import (
    CONFIDENCE_THRESHOLD,
    GUIDES_KEPT,
    AlignError,
    AlignResult,
    GuideAnalysis,
    align_files,
    align_signals,
    analyse_guide,
    correlation_curve,
    max_clip_seconds,
)

__all__ = ["CONFIDENCE_THRESHOLD", "GUIDES_KEPT", "AlignError", "AlignResult", "GuideAnalysis",
           "align_files", "align_signals", "analyse_guide", "correlation_curve",
           "max_clip_seconds"]
