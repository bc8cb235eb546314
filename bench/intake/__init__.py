"""Intake benchmark: Tutti's intake (probe, normalize at the campaign canvas with a contact
sheet, thumbnail, checks) beside plain ffmpeg's one transcode of the same file to the same
size. ``python -m bench.intake``; see bench/README.md."""
