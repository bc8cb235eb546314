"""Safe probe of an uploaded file: sniff, allow-listed demuxers, caps.

There is no ffprobe in the imageio-ffmpeg wheel, so we run ffmpeg itself and read
the input description it prints. The order matters for hostile files:

1. sniff the magic bytes, so a photo, a song or a document gets a clear reason
   before any demuxer sees it;
2. read the header with ffmpeg restricted to video container demuxers
   (``-format_whitelist``) and the ``file`` protocol only, under a timeout;
3. check everything the header claims against :class:`ProbeLimits` (picture size, frame
   rate, duration, sample rate, channels), one readable reason each;
4. only then read every packet of the streams a player would play (the real video, the
   default and enabled audio track), without decoding, to learn the length that really
   plays: a cut-off upload is rejected as incomplete, and so is one with a hole in the
   middle (no packets of either stream, or none of the sound); a frame rate that the packets
   contradict (a few-KB file "at 1,000 fps") is refused; the container's own header
   (an AVI's frame count, a fragmented MP4's last box) may say more was sent; a file that
   states no length (MPEG-TS, a live WebM, Ogg) whose last packet, block or page is
   broken is kept with ``ends_abruptly`` (the checks tell the participant);
5. decode one frame (with a pixel cap), to prove the video is playable.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from dataclasses import asdict, dataclass

from .ffmpeg import FFmpegError, ffmpeg_report, input_url, run_ffmpeg

log = logging.getLogger(__name__)

#: Demuxers a participant's video may come in (phones, cameras, browsers, old camcorders).
VIDEO_DEMUXERS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2",  # the "mov,mp4,m4a,3gp,3g2,mj2" demuxer
    "matroska", "webm", "avi", "mpegts", "ogg", "flv", "asf", "mpeg",
)
#: Demuxers for any media the engine reads (a guide track may be audio only).
MEDIA_DEMUXERS = VIDEO_DEMUXERS + ("wav", "w64", "mp3", "flac", "aac", "aiff", "caf")

MIME_HINT = "Please upload a video file (MP4, MOV or WebM)."


class ProbeRejected(Exception):
    """The file is not a video we accept. ``code`` is for machines, ``reason`` for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class ProbeLimits:
    """What an upload may claim. Sizes in displayed pixels, rates in frames per second
    and Hz, durations in seconds."""

    min_duration: float = 0.5
    max_duration: float = 900.0
    max_width: int = 7680  # the long side of the displayed frame
    max_height: int = 4320  # the short side of the displayed frame
    min_side: int = 96  # the short side of the displayed frame
    max_fps: float = 240.0
    #: decoded pixels per second (width × height × frames per second) of the coded
    #: picture: DCI 4K (4096×2160) at 60 fps, so a 4K60 phone clip or 1080p at 240 fps
    #: passes, while 8K at 30 fps (about twice as much), or 4K at 120, would take minutes
    max_pixel_rate: float = 4096 * 2160 * 60
    min_sample_rate: int = 8000
    max_sample_rate: int = 192000
    max_channels: int = 8
    #: 360° "ambisonic" sound (Opus channel mapping family 2: VR cameras, YouTube) is
    #: decoded to stereo, so it may have more channels: up to this order ((order + 1)²
    #: channels, plus a head-locked stereo pair)
    max_ambisonic_order: int = 3
    #: a file that stops this much before the length its header states is incomplete
    max_missing_seconds: float = 0.5
    timeout: float = 60.0


@dataclass(frozen=True)
class Colour:
    """How a picture's samples are meant to be read (ffmpeg's names; None: not tagged).

    ``matrix`` e.g. "bt709", "bt470bg", "smpte170m", "bt2020nc"; ``transfer`` e.g.
    "bt709", "arib-std-b67" (HLG), "smpte2084" (PQ); ``primaries`` e.g. "bt709",
    "bt2020"; ``range`` "tv" (limited) or "pc" (full)."""

    matrix: str | None = None
    primaries: str | None = None
    transfer: str | None = None
    range: str | None = None

    @property
    def hdr(self) -> str | None:
        """"hlg" or "pq" for a high dynamic range picture, else None."""
        return {"arib-std-b67": "hlg", "smpte2084": "pq"}.get(self.transfer or "")


@dataclass(frozen=True)
class MediaInfo:
    """What a player would show and play of an accepted upload.

    ``width``×``height`` is the displayed picture in square pixels: after the rotation
    a player applies and after the sample aspect ratio (``sar``, "num:den"; anamorphic
    video is stretched to its display aspect). ``duration`` is the length that really
    plays (seconds: the end of the last readable picture or sound), ``stated_duration``
    what the header claims; ``video_end`` and ``audio_end`` are where each stream stops.
    ``video_stream``/``audio_stream`` are ffmpeg input stream indexes: the real video
    (never cover art) and the audio track a player picks (the default, enabled one).
    """

    path: str
    container: str  # the demuxer name as ffmpeg prints it, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration: float
    width: int  # displayed, i.e. after the rotation and the sample aspect ratio
    height: int
    rotation: int  # clockwise degrees a player turns the coded frame: 0, 90, 180 or 270
    fps: float  # 0.0 when the file does not say (variable frame rate)
    video_codec: str
    has_audio: bool
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    size_bytes: int
    video_stream: int = 0
    audio_stream: int | None = None
    coded_width: int = 0
    coded_height: int = 0
    sar: str = "1:1"
    pix_fmt: str | None = None
    colour: Colour = Colour()
    stated_duration: float | None = None
    video_end: float | None = None
    audio_end: float | None = None
    measured_fps: float | None = None
    #: a display matrix's turn that is not a right angle (clockwise degrees), which the
    #: picture is shown without, as browsers and phones show it; None when there is none
    odd_rotation: int | None = None
    #: the sound is 360° ambisonics of this order (ACN channel order, SN3D: Opus channel
    #: mapping family 2), decoded to stereo by normalize; None for ordinary channels
    ambisonic_order: int | None = None
    #: channels after the ambisonic ones: 2 for a head-locked ("non-diegetic") stereo pair
    ambisonic_extra: int = 0
    #: the file states no length (MPEG-TS, a live WebM, Ogg) and its last piece is
    #: broken (a packet, block or page cut, a bad CRC, zeros): it was probably cut off
    #: after ``duration`` seconds, and how much is missing nobody can tell. Kept, with a
    #: check (``ends_abruptly``) asking to upload again if the performance went on
    ends_abruptly: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StreamInfo:
    """One stream as ffmpeg describes it (only what the engine uses)."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data", ...
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    tbr: float | None = None
    rotation: int = 0
    sample_rate: int | None = None
    channels: int | None = None
    ambisonic_order: int | None = None  # "ambisonic 1+stereo": 1
    ambisonic_extra: int = 0  # "ambisonic 1+stereo": 2
    attached_pic: bool = False
    default: bool = False  # the "default" disposition (MOV: an enabled track)
    pix_fmt: str | None = None
    colour: Colour = Colour()
    sar: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class InputReport:
    """What ffmpeg printed about an input: container, duration and streams."""

    container: str
    duration: float | None
    streams: tuple[StreamInfo, ...]

    @property
    def video(self) -> StreamInfo | None:
        """The picture a player shows: the first default (in MOV: enabled) video track
        that is not cover art, else the first such track. A disabled first track is
        often a small preview."""
        tracks = [s for s in self.streams if s.kind == "video" and not s.attached_pic]
        return next((s for s in tracks if s.default), tracks[0] if tracks else None)

    @property
    def audio(self) -> StreamInfo | None:
        """The track a player plays: the first default (in MOV: enabled) audio track,
        else the first audio track. A disabled first track is often silent."""
        tracks = [s for s in self.streams if s.kind == "audio"]
        return next((s for s in tracks if s.default), tracks[0] if tracks else None)


# --- sniffing ---------------------------------------------------------------------------------

_IMAGE_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P "}


def _not_video(kind: str) -> ProbeRejected:
    return ProbeRejected("not_video", f"This file is {kind}, not a video. {MIME_HINT}")


def sniff(head: bytes) -> ProbeRejected | None:
    """A rejection for well-known non-video files, judged by their first bytes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _not_video("a PNG image")
    if head.startswith(b"\xff\xd8\xff"):
        return _not_video("a JPEG photo")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _not_video("a GIF image")
    if head.startswith(b"BM") and len(head) > 14 and head[6:10] == b"\0\0\0\0":
        return _not_video("a BMP image")
    if head.startswith((b"II*\0", b"MM\0*")):
        return _not_video("a TIFF image")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _not_video("a WebP image")
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return _not_video("a HEIC/AVIF photo")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _audio_only("a WAV audio file")
    if head.startswith(b"fLaC"):
        return _audio_only("a FLAC audio file")
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
                                   and head[1] & 0x06):
        return _audio_only("an MP3 audio file")
    if head[4:8] == b"ftyp" and head[8:12] in _AUDIO_BRANDS:
        return _audio_only("an M4A audio file")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _audio_only("an AIFF audio file")
    if head.startswith(b"%PDF"):
        return _not_video("a PDF document")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _not_video("a ZIP archive (or an Office document)")
    if head.startswith((b"Rar!", b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b")):
        return _not_video("a compressed archive")
    if head.startswith((b"\x7fELF", b"MZ")):
        return _not_video("a program")
    if _looks_like_text(head):
        return _not_video("a text file")
    return None


def _audio_only(kind: str) -> ProbeRejected:
    return ProbeRejected(
        "not_video",
        f"This file is {kind}: it has sound but no picture. Please upload a video of "
        "yourself performing (MP4, MOV or WebM).",
    )


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
    return printable >= 0.97 * len(text)


# --- parsing ffmpeg's description of an input -------------------------------------------------

_INPUT = re.compile(r"^Input #0, (?P<fmt>[^ ]+?), from ")
_DURATION = re.compile(r"^\s+Duration: (?P<d>N/A|\d+:\d\d:\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"^\s+Stream #0:(?P<i>\d+)[^:]*: (?P<kind>[A-Za-z]+): (?P<rest>.*)$")
_CODEC = re.compile(r"^(?P<codec>[A-Za-z0-9_\-.]+)")
_SIZE = re.compile(r"(?:^|[ ,])(?P<w>\d{1,6})x(?P<h>\d{1,6})(?=[ ,\[]|$)")
_FPS = re.compile(r"(?P<v>\d+(?:\.\d+)?)(?P<k>k?) fps\b")
_TBR = re.compile(r"(?P<v>\d+(?:\.\d+)?)(?P<k>k?) tbr\b")
_RATE = re.compile(r"(?P<v>\d+) Hz\b")
_CHANNELS = re.compile(r"Hz, (?P<layout>[^,]+),")
_ROTATION = re.compile(r"rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees")
_PIX = re.compile(r", (?P<pix>[a-z][a-z0-9_]*)(?:\((?P<props>[^)]*)\))?, \d{1,6}x\d{1,6}\b")
_SAR = re.compile(r"SAR (?P<n>\d{1,6}):(?P<d>\d{1,6}) DAR")
_RANGES = ("tv", "pc")
_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4,
                    "5.0": 5, "5.0(side)": 5, "5.1": 6, "5.1(side)": 6, "6.1": 7, "7.1": 8}


#: ffmpeg's name of an ambisonic layout: "ambisonic 1", "ambisonic 1+stereo"
_AMBISONIC = re.compile(r"ambisonic (?P<order>\d{1,2})(?:\+(?P<extra>.+))?")

_NAMED_LAYOUTS = {"mono": 1, "stereo": 2, "downmix": 2, "quad": 4, "hexagonal": 6,
                  "octagonal": 8, "cube": 8, "hexadecagonal": 16, "binaural": 2}


def _clock_seconds(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _rate(match: re.Match[str] | None) -> float | None:
    if match is None:
        return None
    return float(match["v"]) * (1000 if match["k"] else 1)


def _channels(layout: str) -> int | None:
    """Channels of a layout as ffmpeg names it: "stereo", "5.1(side)", "7.1.4" (the
    numbers add up), "hexagonal", "10 channels"."""
    layout = layout.strip()
    if layout in _LAYOUT_CHANNELS:
        return _LAYOUT_CHANNELS[layout]
    m = re.match(r"(\d+) channels", layout)
    if m:
        return int(m[1])
    base = layout.split("(")[0]
    if re.fullmatch(r"\d+(?:\.\d+)+", base):
        return sum(int(n) for n in base.split("."))
    return _NAMED_LAYOUTS.get(base)


def parse_input_report(text: str) -> InputReport | None:
    """Parse the ``Input #0`` block ffmpeg prints; None when there is none."""
    container: str | None = None
    duration: float | None = None
    streams: list[dict] = []
    for line in text.splitlines():
        if container is None:
            m = _INPUT.match(line)
            if m:
                container = m["fmt"]
            continue
        if not line.startswith(" "):  # the block has ended (Output, errors, ...)
            if line.startswith(("Input #", "Output #", "Stream mapping")):
                break
            continue
        m = _DURATION.match(line)
        if m:
            duration = None if m["d"] == "N/A" else _clock_seconds(m["d"])
            continue
        m = _STREAM.match(line)
        if m:
            streams.append(_parse_stream(int(m["i"]), m["kind"].lower(), m["rest"]))
            continue
        m = _ROTATION.search(line)
        if m and streams:
            # side data belongs to the last stream line above it
            streams[-1]["rotation"] = round(-float(m["deg"])) % 360
    if container is None:
        return None
    return InputReport(container, duration, tuple(StreamInfo(**s) for s in streams))


def _parse_stream(index: int, kind: str, rest: str) -> dict:
    codec_match = _CODEC.match(rest)
    fields: dict = {"index": index, "kind": kind,
                    "codec": codec_match["codec"] if codec_match else "unknown"}
    if kind == "video":
        size = _SIZE.search(rest)
        if size:
            fields["width"], fields["height"] = int(size["w"]), int(size["h"])
        fields["fps"] = _rate(_FPS.search(rest))
        fields["tbr"] = _rate(_TBR.search(rest))
        fields["attached_pic"] = "(attached pic)" in rest
        pix = _PIX.search(rest)
        if pix:
            fields["pix_fmt"] = pix["pix"]
            fields["colour"] = _parse_colour(pix["props"] or "", pix["pix"])
        # "480x360 [SAR 1:1 DAR 4:3], SAR 4:3 DAR 16:9": the bracket is the bitstream's
        # (H.264 VUI), the second the container's (Matroska DisplayWidth/Height, MP4
        # pasp), printed when they differ. Players, like av_guess_sample_aspect_ratio,
        # take the container's
        sars = [(int(m["n"]), int(m["d"])) for m in _SAR.finditer(rest)]
        sars = [sar for sar in sars if sar[0] > 0 and sar[1] > 0]
        if sars:
            fields["sar"] = sars[-1]
    elif kind == "audio":
        rate = _RATE.search(rest)
        fields["sample_rate"] = int(rate["v"]) if rate else None
        layout = _CHANNELS.search(rest)
        fields["channels"] = _channels(layout["layout"]) if layout else None
        ambisonic = _AMBISONIC.fullmatch(layout["layout"].strip()) if layout else None
        if ambisonic:
            order = int(ambisonic["order"])
            extra = _channels(ambisonic["extra"]) if ambisonic["extra"] else 0
            fields["ambisonic_order"], fields["ambisonic_extra"] = order, extra or 0
            fields["channels"] = (order + 1) ** 2 + (extra or 0)
    fields["default"] = "(default)" in rest
    return fields


def _parse_colour(props: str, pix_fmt: str) -> Colour:
    """``tv, bt2020nc/bt2020/arib-std-b67, progressive`` -> Colour. ffmpeg prints one
    name when matrix, primaries and transfer agree, else all three (``unknown`` for an
    untagged one); the J pixel formats (yuvj420p, ...) are full range."""
    found: dict[str, str | None] = {}
    for item in (p.strip() for p in props.split(",")):
        if item in _RANGES:
            found["range"] = item
        elif item.count("/") == 2:
            names = [None if n in ("unknown", "reserved", "") else n for n in item.split("/")]
            found["matrix"], found["primaries"], found["transfer"] = names
        elif item and not found.get("matrix") and item not in ("progressive", "top first",
                                                                "bottom first",
                                                                "top coded first (swapped)",
                                                                "bottom coded first (swapped)"):
            if re.fullmatch(r"[a-z0-9\-]+", item) and not item.startswith(("left", "center",
                                                                           "top", "bottom")):
                found["matrix"] = found["primaries"] = found["transfer"] = item
    if "range" not in found and pix_fmt.startswith("yuvj"):
        found["range"] = "pc"
    return Colour(**found)


def read_input_report(path: str, *, timeout: float = 60.0,
                      demuxers: tuple[str, ...] = MEDIA_DEMUXERS) -> InputReport:
    """Describe a media file (header only, nothing decoded). Raises FFmpegError when
    ffmpeg cannot open it and ProbeRejected for a demuxer outside ``demuxers``."""
    status, text = ffmpeg_report(safe_input(path, demuxers), timeout=timeout)
    report = parse_input_report(text)
    if report is None:
        if "not on whitelist" in text:
            raise ProbeRejected(
                "unsupported_format",
                f"Tutti cannot read this kind of file. {MIME_HINT}",
            )
        raise FFmpegError("ffmpeg could not read the file", [], status,
                          "\n".join(text.splitlines()[-8:]))
    return report


def media_duration(path: str, *, timeout: float = 60.0) -> float:
    """Duration in seconds of any media file the engine reads (video or audio)."""
    report = read_input_report(path, timeout=timeout)
    if report.duration is not None:
        return report.duration
    return _measure_duration(path, timeout=timeout, demuxers=MEDIA_DEMUXERS)


def safe_input(path: str, demuxers: tuple[str, ...] = VIDEO_DEMUXERS) -> list[str]:
    """``-i`` for a local file, with only the ``file`` protocol and allow-listed demuxers."""
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(demuxers),
            "-i", input_url(path)]


def _measure_duration(path: str, *, timeout: float, demuxers: tuple[str, ...]) -> float:
    """Duration of a file whose header does not say (e.g. a browser's MediaRecorder WebM):
    copy every packet to the null muxer and read the last output time."""
    status, text = ffmpeg_report(
        ["-v", "error", "-progress", "pipe:2", *safe_input(path, demuxers),
         "-map", "0", "-c", "copy", "-f", "null", "-"],
        timeout=timeout,
    )
    times = [int(v) for v in re.findall(r"^out_time_us=(\d+)$", text, re.M)]
    if status != 0 or not times:
        raise FFmpegError("could not measure the duration", [], status, text[-2000:])
    return times[-1] / 1_000_000


# --- the probe ----------------------------------------------------------------------------------

def probe(path: str, limits: ProbeLimits = ProbeLimits()) -> MediaInfo:  # noqa: B008 - frozen
    """Check an uploaded file and describe it, or raise :class:`ProbeRejected`.

    Raises :class:`FFmpegError` only when ffmpeg itself cannot run (missing binary), or
    was starved of CPU time (:attr:`FFmpegError.starved`: stopped, paused or overloaded;
    try again); a file that makes ffmpeg time out while it runs is rejected as
    ``unreadable``.
    """
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ProbeRejected("unreadable", "Tutti could not open the uploaded file. "
                            "Please upload it again.") from exc
    if size == 0:
        raise ProbeRejected("empty", "The uploaded file is empty (0 bytes). The upload may "
                            "have been interrupted: please upload the video again.")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    rejected = sniff(head)
    if rejected is not None:
        log.info("probe %s: sniffed %s", path, rejected.code)
        raise rejected

    try:
        report = read_input_report(path, timeout=limits.timeout, demuxers=VIDEO_DEMUXERS)
    except FFmpegError as exc:
        log.info("probe %s: ffmpeg cannot read it: %s", path, exc)
        raise _unreadable(exc) from exc

    video = report.video
    if video is None:
        if report.audio is not None:
            raise ProbeRejected("no_video_stream", "This file has sound but no picture. Please "
                                "upload a video of yourself performing (MP4, MOV or WebM).")
        raise ProbeRejected("no_video_stream", f"This file contains no video. {MIME_HINT}")
    if not video.width or not video.height:
        raise _unreadable(False)

    rotation = video.rotation if video.rotation in (0, 90, 180, 270) else 0
    sar_n, sar_d = video.sar
    # what a player shows: anamorphic pixels stretched (or squeezed) to square ones,
    # then the display matrix turns the picture
    shown_w = max(2, int(round(video.width * sar_n / sar_d / 2)) * 2)
    width, height = (video.height, shown_w) if rotation in (90, 270) else (
        shown_w, video.height)
    _check_picture(width, height, video, limits)
    fps = _declared_rate(video, report.container)
    if fps > limits.max_fps:
        raise _too_fast(fps, limits)
    _check_pixel_rate(video, fps, limits)
    audio = report.audio
    if audio is not None:
        _check_sound(audio, limits)
    if report.duration is not None:
        _check_duration(report.duration, limits)

    try:
        # reading is bound by the disk: allow for a large file at 20 MB/s
        ends = measure_streams(path, video.index, audio.index if audio else None,
                               timeout=limits.timeout + size / 20e6, demuxers=VIDEO_DEMUXERS)
    except FFmpegError as exc:
        log.info("probe %s: packets unreadable: %s", path, exc)
        raise _unreadable(exc) from exc
    if ends.video_end <= 0 or ends.video_frames == 0:
        raise _unreadable(False)
    measured_fps = ends.video_frames / ends.video_end if ends.video_end > 0 else 0.0
    # a few frames over (rounding, a last frame's duration) is not a lie
    if ends.video_frames > 2 and measured_fps > limits.max_fps * 1.05:
        raise _too_fast(measured_fps, limits)
    if ends.video_frames > 2:
        _check_pixel_rate(video, measured_fps, limits, slack=1.05)
    playable = max(ends.video_end, ends.audio_end or 0.0)
    stated = report.duration
    # what ffmpeg reports of a file without its index is what remains: the container's
    # own header says what was sent
    claimed = container_claims(path, report.container, size)
    if claimed.seconds is not None and (stated is None or claimed.seconds > stated):
        stated = claimed.seconds
    if stated is not None and stated - playable > limits.max_missing_seconds:
        raise ProbeRejected(
            "incomplete",
            f"This video stops after {playable:.1f} seconds, but the file says it lasts "
            f"{stated:.1f} seconds: the upload was probably cut short. Please upload the "
            "video again (on a steady connection).",
        )
    if claimed.cut:
        raise ProbeRejected(
            "incomplete",
            f"This video stops after {playable:.1f} seconds, in the middle of a part the "
            "file says is longer: the upload was probably cut short. Please upload the "
            "video again (on a steady connection).",
        )
    holes = [(ends.hole, ends.hole_at, "both the picture and the sound stop"),
             (ends.sound_hole, ends.sound_hole_at, "the sound stops")]
    missing, at, what = next((h for h in holes if h[0] > limits.max_missing_seconds),
                             holes[0])
    if missing > limits.max_missing_seconds:
        raise ProbeRejected(
            "incomplete",
            f"In the middle of this video, {what} for about {missing:.1f} seconds "
            f"(from {at:.1f} seconds on): the file is damaged or did not arrive "
            "whole, or the recording was paused. Please upload the video again (on a "
            "steady connection), or record your part again without pausing.",
        )
    if claimed.abrupt:
        log.info("probe %s: ends abruptly after %.2f s: %s", path, playable, claimed.abrupt)
    duration = playable if stated is None else min(stated, playable)
    try:
        _check_duration(duration, limits)
        _decode_one_frame(path, video, timeout=limits.timeout, audio=audio)
    except FFmpegError as exc:
        log.info("probe %s: not decodable: %s", path, exc)
        raise _unreadable(exc) from exc

    info = MediaInfo(
        path=path,
        container=report.container,
        duration=round(duration, 6),
        width=width,
        height=height,
        rotation=rotation,
        fps=round(fps, 3),
        video_codec=video.codec,
        has_audio=audio is not None,
        audio_codec=audio.codec if audio else None,
        sample_rate=audio.sample_rate if audio else None,
        channels=audio.channels if audio else None,
        ambisonic_order=audio.ambisonic_order if audio else None,
        ambisonic_extra=audio.ambisonic_extra if audio else 0,
        size_bytes=size,
        video_stream=video.index,
        audio_stream=audio.index if audio else None,
        coded_width=video.width,
        coded_height=video.height,
        sar=f"{sar_n}:{sar_d}",
        pix_fmt=video.pix_fmt,
        colour=video.colour,
        stated_duration=None if stated is None else round(stated, 6),
        video_end=round(ends.video_end, 6),
        audio_end=None if ends.audio_end is None else round(ends.audio_end, 6),
        measured_fps=round(measured_fps, 3),
        odd_rotation=None if video.rotation in (0, 90, 180, 270) else video.rotation,
        ends_abruptly=claimed.abrupt is not None,
    )
    log.info("probe %s: %s %dx%d rot %d %.3f s %s fps audio=%s (stream %s)", path,
             info.container, info.width, info.height, info.rotation, info.duration, info.fps,
             info.audio_codec, info.audio_stream)
    return info


@dataclass(frozen=True)
class ContainerClaims:
    """What a container's own header says of its length, beyond what ffmpeg reports:
    ``seconds`` (an AVI's frame count, kept when its index at the end is gone), ``cut``
    (a fragmented MP4 whose last fragment's box runs past the end of the file), and for
    containers that state no length at all (MPEG-TS, a live WebM/Matroska, Ogg),
    ``abrupt``: how the file's last piece is broken (plain words for the log: "the last
    TS packet is cut", "a Matroska cluster runs past the end", "the last Ogg page fails
    its CRC", ...), None when it ends cleanly."""

    seconds: float | None = None
    cut: bool = False
    abrupt: str | None = None


#: top-level ISO BMFF boxes whose data a cut upload loses
_ISO_MEDIA_BOXES = {b"mdat", b"moof"}


def container_claims(path: str, container: str, size: int) -> ContainerClaims:
    """Read the container's header for the length it claims (:class:`ContainerClaims`):
    AVI ``strh`` length × scale / rate of the first video stream (else ``avih``
    dwTotalFrames × dwMicroSecPerFrame); for MP4/MOV whether a fragmented file's last
    ``moof``/``mdat`` box claims more bytes than the file has. Anything unreadable
    claims nothing."""
    try:
        with open(path, "rb") as fh:
            if container == "avi":
                return ContainerClaims(seconds=_avi_seconds(fh.read(1 << 20)))
            if container.startswith("mov,"):
                return ContainerClaims(cut=_iso_fragment_cut(fh, size))
            if container == "mpegts":
                return ContainerClaims(abrupt=_ts_abrupt_end(fh, size))
            if container.startswith("matroska"):
                return ContainerClaims(abrupt=_matroska_abrupt_end(fh, size))
            if container == "ogg":
                return ContainerClaims(abrupt=_ogg_abrupt_end(fh, size))
    except (OSError, ValueError, struct.error, IndexError):
        pass
    return ContainerClaims()


def _zeros_from(fh, at: int, size: int) -> bool:
    """Whether the bytes from ``at`` on (at most the first 64 KiB of them) are all zeros:
    a pre-allocated upload or an interrupted copy, not an appended file."""
    fh.seek(at)
    rest = fh.read(min(size - at, 1 << 16))
    return bool(rest) and not rest.strip(b"\0")


#: MPEG-TS packet sizes: plain, M2TS/AVCHD (a 4-byte time code first), with FEC bytes
_TS_SIZES = ((188, 0), (192, 4), (204, 0))
#: how much of a TS file's end is read for its last PES packets
_TS_TAIL = 1 << 20


def _ts_abrupt_end(fh, size: int) -> str | None:
    """How an MPEG-TS file's end is broken, or None: its size is not a whole number of
    packets (the last one cut), its last packet has no sync byte (zeros or garbage
    follow), or a PES packet that states its length (the sound's, usually) lacks bytes at
    the end. A video PES states no length (0), so a cut exactly between packets inside
    the last picture is not seen: the sound's last PES (every few hundred ms) usually is."""
    head = fh.read(4 * 204 + 4)
    packet, sync = next(((p, o) for p, o in _TS_SIZES
                         if all(head[o + k * p:o + k * p + 1] == b"\x47" for k in range(4))),
                        (0, 0))
    if not packet:
        return None
    whole = (size // packet) * packet
    if whole != size:
        return f"the last TS packet is cut ({size - whole} of {packet} bytes)"
    start = max(0, whole - _TS_TAIL // packet * packet)
    fh.seek(start)
    tail = fh.read(whole - start)
    if tail[-packet + sync] != 0x47:
        return "the file ends in bytes that are no TS packets"
    pes: dict[int, list[int]] = {}  # pid -> [stated length (0: none), bytes seen]
    for at in range(sync, len(tail), packet):
        if tail[at] != 0x47:
            return "the file ends in bytes that are no TS packets" if _zeros_from(
                fh, start + at, size) else None
        pid = ((tail[at + 1] & 0x1F) << 8) | tail[at + 2]
        control = (tail[at + 3] >> 4) & 0x3
        if not control & 1 or pid == 0x1FFF:
            continue  # no payload, or padding
        body = at + 4 + (1 + tail[at + 4] if control & 2 else 0)
        end = at + 188
        if body >= end:
            continue
        if tail[at + 1] & 0x40:  # payload unit start
            if tail[body:body + 3] == b"\0\0\1" and body + 6 <= end:
                stated = struct.unpack_from(">H", tail, body + 4)[0]
                pes[pid] = [6 + stated if stated else 0, end - body]
            else:
                pes.pop(pid, None)  # a table (PAT, PMT), not a PES
        elif pid in pes:
            pes[pid][1] += end - body
    cut = [pid for pid, (stated, seen) in pes.items() if stated and seen < stated]
    if cut:
        return f"the last PES packet of stream 0x{cut[0]:x} is cut"
    return None


#: Matroska element ids (with their length marker bits, as the spec writes them)
_EBML, _SEGMENT, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1F43B675
#: the Segment's children: an unknown-size Cluster ends where one of these begins
_MKV_TOP = {_CLUSTER, 0x114D9B74, 0x1549A966, 0x1654AE6B, 0x1C53BB6B, 0x1254C367,
            0x1043A770, 0x1941A469}


def _ebml_number(data: bytes, at: int, *, keep_marker: bool) -> tuple[int | None, int]:
    """An EBML variable-length number at ``at``: (value, its length in bytes); value None
    for a size of all ones ("unknown", a live stream's Segment and Clusters). Raises
    IndexError when ``data`` ends inside it, ValueError for a first byte of zero."""
    first = data[at]
    if first == 0:
        raise ValueError("not an EBML number")
    length = 9 - first.bit_length()
    if at + length > len(data):
        raise IndexError("cut")
    value = int.from_bytes(data[at:at + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _matroska_abrupt_end(fh, size: int) -> str | None:
    """How a Matroska/WebM file's media ends broken, or None: a Cluster, or a block inside
    one, runs past the end of the file (an upload cut mid-frame; a live recording, as a
    browser's MediaRecorder writes it, states no length that would tell), or zeros
    follow the last element. Reads element headers only (seeks over their data): tens
    of thousands of blocks for a 15-minute take. A file cut after a whole element of its
    media is not seen here (nothing in a live stream says more was to come)."""
    def element(at: int) -> tuple[int, int | None, int]:
        fh.seek(at)
        head = fh.read(12)
        ident, n = _ebml_number(head, 0, keep_marker=True)
        length, m = _ebml_number(head, n, keep_marker=False)
        return ident, length, at + n + m

    ident, length, at = element(0)
    if ident != _EBML or length is None:
        return None
    ident, length, at = element(at + length)
    if ident != _SEGMENT:
        return None
    end = size if length is None else at + length
    in_cluster = False
    for _ in range(2_000_000):
        if at >= min(end, size):
            if end > size and in_cluster:  # a known-size Segment: its last Cluster is gone
                return "the file stops before the end its Segment states"
            return None
        try:
            ident, length, data = element(at)
        except IndexError:
            return "an element's header is cut at the end" if in_cluster else None
        except ValueError:
            return "the file ends in zeros" if in_cluster and _zeros_from(fh, at, size) \
                else None
        if ident in _MKV_TOP:
            in_cluster = ident == _CLUSTER
            if ident == _CLUSTER and length is None:
                at = data  # a live recording's Cluster: walk its blocks
                continue
        if length is None:
            return None  # another unknown-size element: nothing more to learn
        if data + length > size:
            return ("a Cluster or a block runs past the end of the file" if in_cluster
                    else None)
        at = data + length
    return None


def _ogg_crc(data: bytes) -> int:
    """The CRC-32 of an Ogg page (polynomial 0x04C11DB7, not reflected, initial 0), its
    CRC field zeroed."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (
                crc << 1) & 0xFFFFFFFF
    return crc


def _ogg_abrupt_end(fh, size: int) -> str | None:
    """How an Ogg file's end is broken, or None: its last page is cut or fails its CRC
    (a page is at most 64 KiB, so its check is cheap), zeros follow the last page, or a
    stream has no end-of-stream page (a whole Ogg file ends each stream with one; a
    cut exactly between pages lacks it). Reads page headers only."""
    at, last, streams, ended = 0, None, set(), set()
    for _ in range(2_000_000):
        if at >= size:
            break
        fh.seek(at)
        head = fh.read(27)
        if head[:4] != b"OggS":
            if len(head) < 4 and b"OggS".startswith(head):
                return "the last Ogg page is cut"
            if _zeros_from(fh, at, size):
                return "the file ends in zeros"
            break  # appended bytes that are no page
        if len(head) < 27:
            return "the last Ogg page is cut"
        table = fh.read(head[26])
        if len(table) < head[26]:
            return "the last Ogg page is cut"
        length = 27 + head[26] + sum(table)
        if at + length > size:
            return "the last Ogg page is cut"
        serial = struct.unpack_from("<I", head, 14)[0]
        streams.add(serial)
        if head[5] & 0x4:
            ended.add(serial)
        last = (at, length)
        at += length
    if last is None:
        return None
    fh.seek(last[0])
    page = bytearray(fh.read(last[1]))
    stated = struct.unpack_from("<I", page, 22)[0]
    page[22:26] = b"\0\0\0\0"
    if _ogg_crc(bytes(page)) != stated:
        return "the last Ogg page fails its CRC"
    if streams - ended:
        return "a stream has no end-of-stream page"
    return None


def _avi_seconds(head: bytes) -> float | None:
    """The length the ``hdrl`` list of an AVI's first bytes states (seconds), or None."""
    if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"AVI ":
        return None
    at = head.find(b"LIST", 12)
    if at < 0 or head[at + 8:at + 12] != b"hdrl":
        return None
    end = min(len(head), at + 8 + struct.unpack_from("<I", head, at + 4)[0])
    at += 12
    total: float | None = None
    while at + 8 <= end:
        fourcc, length = head[at:at + 4], struct.unpack_from("<I", head, at + 4)[0]
        if fourcc == b"avih" and length >= 20:
            us_per_frame, frames = struct.unpack_from("<I", head, at + 8)[0], struct.unpack_from(
                "<I", head, at + 24)[0]
            total = us_per_frame * frames / 1e6 if us_per_frame and frames else None
        elif fourcc == b"LIST" and head[at + 8:at + 12] == b"strl":
            strh = at + 12
            if head[strh:strh + 4] == b"strh" and head[strh + 8:strh + 12] == b"vids":
                scale, rate, _start, frames = struct.unpack_from("<4I", head, strh + 28)
                if scale and rate and frames:
                    return frames * scale / rate
        at += 8 + length + (length & 1)
    return total


def _iso_fragment_cut(fh, size: int) -> bool:
    """Whether a fragmented MP4 (one with ``moof`` boxes) stops inside its last media
    box. Trailing bytes that are no box (an appended archive) end the walk."""
    at, fragmented = 0, False
    for _ in range(200_000):
        if at + 8 > size:
            return False
        fh.seek(at)
        header = fh.read(16)
        length, kind = struct.unpack(">I4s", header[:8])
        if length == 1 and len(header) == 16:
            length = struct.unpack(">Q", header[8:16])[0]
        if length == 0 or not re.fullmatch(rb"[a-z0-9 ]{4}", kind):
            return False  # "to the end of the file", or not a box
        if length < 8:
            return False
        fragmented = fragmented or kind == b"moof"
        if at + length > size:
            return fragmented and kind in _ISO_MEDIA_BOXES
        at += length
    return False


def _check_picture(width: int, height: int, video: StreamInfo, limits: ProbeLimits) -> None:
    long_side, short_side = max(width, height), min(width, height)
    if long_side > limits.max_width or short_side > limits.max_height:
        raise ProbeRejected(
            "frame_too_large",
            f"This video's picture is {width}×{height} pixels, larger than Tutti accepts "
            f"({limits.max_width}×{limits.max_height}). Please export it at 4K or less "
            "and upload it again.",
        )
    if short_side < limits.min_side:
        raise ProbeRejected(
            "frame_too_small",
            f"This video's picture is only {width}×{height} pixels; Tutti needs at least "
            f"{limits.min_side} pixels on its short side. Please record with your phone's "
            "or computer's camera at a normal size (720p or more) and upload it again.",
        )


def _check_pixel_rate(video: StreamInfo, fps: float, limits: ProbeLimits, *,
                      slack: float = 1.0) -> None:
    """Refuse a picture too heavy to convert in time: more coded pixels per second
    (width × height × ``fps``) than ``limits.max_pixel_rate`` × ``slack`` (a measured
    rate is a few frames over: rounding, a last frame's duration)."""
    width, height = video.width or 0, video.height or 0
    if width * height * fps <= limits.max_pixel_rate * slack:
        return
    raise ProbeRejected(
        "too_many_pixels",
        f"This video is {width}×{height} pixels at {fps:.0f} frames per second, more "
        "picture than Tutti can convert in time (the limit is 4K at 60 frames per "
        "second). Please export it at 4K/30, 4K/60 or 1080p and upload it again.",
    )


def _check_sound(audio: StreamInfo, limits: ProbeLimits) -> None:
    rate = audio.sample_rate
    if rate is not None and not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise ProbeRejected(
            "unsupported_audio",
            f"This video's sound has a sample rate of {rate} Hz; Tutti accepts "
            f"{limits.min_sample_rate} to {limits.max_sample_rate} Hz. Please export it "
            "with standard sound (44.1 or 48 kHz) and upload it again.",
        )
    order = audio.ambisonic_order
    if order is not None and (order > limits.max_ambisonic_order
                              or audio.ambisonic_extra not in (0, 2)):
        raise ProbeRejected(
            "unsupported_audio",
            f"This video's sound is 360° (ambisonic) sound of order {order} with "
            f"{audio.channels} channels; Tutti decodes 360° sound up to order "
            f"{limits.max_ambisonic_order}. Please export it with stereo sound and upload "
            "it again.",
        )
    if order is None and audio.channels is not None and audio.channels > limits.max_channels:
        raise ProbeRejected(
            "unsupported_audio",
            f"This video's sound has {audio.channels} channels; Tutti accepts up to "
            f"{limits.max_channels}. Please export it in stereo and upload it again.",
        )


def _declared_rate(video: StreamInfo, container: str) -> float:
    """The frame rate the header declares (``fps``, else ``tbr``), 0.0 when it says
    nothing. Matroska/WebM (a browser's MediaRecorder) has no frame rate field and ffmpeg
    shows its 1 ms time base as "1k": not a claim there (the measured rate decides); in
    any other container "1k fps" is one."""
    if "matroska" in container or "webm" in container:
        return _plausible_rate(video.fps) or _plausible_rate(video.tbr) or 0.0
    return video.fps or video.tbr or 0.0


def _too_fast(fps: float, limits: ProbeLimits) -> ProbeRejected:
    return ProbeRejected(
        "unsupported_format",
        f"This video has {fps:.0f} frames per second, more than Tutti accepts "
        f"({limits.max_fps:g}). Please record at a normal frame rate (30 or 60) "
        "and upload it again.",
    )


@dataclass(frozen=True)
class StreamEnds:
    """Where the readable packets of a file's streams stop, in seconds from the first
    packet of either, and how many video frames there are."""

    video_end: float
    audio_end: float | None
    video_frames: int
    #: with sound, the longest time (seconds) inside the file with neither picture nor
    #: sound packets, and where it starts (seconds from the first packet)
    hole: float = 0.0
    hole_at: float = 0.0
    #: the longest gap (seconds) in the sound's packets, and where it starts
    sound_hole: float = 0.0
    sound_hole_at: float = 0.0


_FRAMECRC_TB = re.compile(r"^#tb (\d+): (\d+)/(\d+)$")
_FRAMECRC_PACKET = re.compile(r"^(\d+),\s*(-?\d+),\s*(-?\d+),\s*(\d+),\s*(\d+),\s*0x[0-9a-f]+"
                              r"(?:, F=0x(?P<flags>[0-9A-F]+))?")
#: packet flags that say the packet will not play (AV_PKT_FLAG_CORRUPT, _DISCARD)
_UNPLAYABLE = 0x2 | 0x4
#: AV_NOPTS_VALUE: a packet without a time stamp
_NOPTS = -(1 << 63)
#: at most this much packet listing is read (a 15-minute 240 fps clip needs a third of it)
_MAX_LISTING = 48 << 20


def measure_streams(path: str, video_index: int, audio_index: int | None, *,
                    timeout: float = 60.0,
                    demuxers: tuple[str, ...] = VIDEO_DEMUXERS) -> StreamEnds:
    """Read every packet of the two streams (copied, not decoded: a second for an hour of
    4K) and return where each stops. Packets a cut-off upload lacks are simply not there;
    packets flagged corrupt or discarded (edit lists) are not counted. Raises
    :class:`FFmpegError` when ffmpeg cannot read the file or times out."""
    maps = ["-map", f"0:{video_index}"]
    if audio_index is not None:
        maps += ["-map", f"0:{audio_index}"]
    out = run_ffmpeg(["-v", "error", *safe_input(path, demuxers), *maps, "-c", "copy",
                      "-fs", str(_MAX_LISTING), "-f", "framecrc", "pipe:1"],
                     timeout=timeout, stdout=None)
    return parse_framecrc(out.decode("ascii", "replace"), audio=audio_index is not None)


def parse_framecrc(text: str, *, audio: bool) -> StreamEnds:
    """The :class:`StreamEnds` of a ``framecrc`` listing whose output stream 0 is the
    video and stream 1 (with ``audio``) the sound."""
    time_bases: dict[int, float] = {}
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    delay: dict[int, int] = {}  # pts - dts of each stream's last packet with both
    spans: dict[int, list[tuple[float, float]]] = {0: [], 1: []}  # each packet's (start, end)
    frames = 0
    for line in text.splitlines():
        if line.startswith("#"):
            m = _FRAMECRC_TB.match(line)
            if m and int(m[3]):
                time_bases[int(m[1])] = int(m[2]) / int(m[3])
            continue
        m = _FRAMECRC_PACKET.match(line)
        if m is None:
            continue
        stream = int(m[1])
        if m["flags"] and int(m["flags"], 16) & _UNPLAYABLE:
            continue
        tb = time_bases.get(stream)
        if tb is None:
            continue
        dts, pts, dur = int(m[2]), int(m[3]), int(m[4])
        if pts == _NOPTS:
            # MPEG-PS stamps a time only now and then: the dts says when, plus the
            # reordering delay the stream's last stamped packet had
            pts = dts if dts == _NOPTS else dts + delay.get(stream, 0)
        elif dts != _NOPTS:
            delay[stream] = pts - dts
        if stream == 0:
            frames += 1
        if pts == _NOPTS:
            # a packet without any time stamp plays right after the one before it
            if stream in spans and spans[stream]:
                start = spans[stream][-1][1]
                spans[stream].append((start, start + dur * tb))
            continue
        first[stream] = min(first.get(stream, pts * tb), pts * tb)
        last[stream] = max(last.get(stream, 0.0), (pts + dur) * tb)
        if stream in spans:
            spans[stream].append((pts * tb, (pts + dur) * tb))
    if not first:
        return StreamEnds(0.0, None if not audio else 0.0, 0)
    origin = min(first.values())
    video_end = max(0.0, last.get(0, origin) - origin)
    audio_end = max(0.0, last.get(1, origin) - origin) if audio else None
    hole = sound_hole = (0.0, 0.0)
    if audio and spans[1]:
        # a time neither stream covers, or a gap in the sound, is missing: a damaged
        # middle that the demuxer skipped (Matroska resyncs to its next cluster), a
        # recorder paused without closing the gap. A gap in the picture alone is not:
        # screen recordings send no frame while nothing moves
        hole = max(_gaps(spans[0] + spans[1]), default=hole)
        sound_hole = max(_gaps(spans[1]), default=sound_hole)
    return StreamEnds(video_end, audio_end, frames, hole[0], hole[1] - origin * bool(hole[0]),
                      sound_hole[0], sound_hole[1] - origin * bool(sound_hole[0]))


def _gaps(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (length, start) of each stretch (seconds) between the first start and the last
    end of ``spans`` (each a packet's (start, end)) that no span covers."""
    gaps: list[tuple[float, float]] = []
    covered: float | None = None
    for start, end in sorted(spans):
        if covered is not None and start > covered:
            gaps.append((start - covered, covered))
        covered = end if covered is None else max(covered, end)
    return gaps


def _plausible_rate(rate: float | None) -> float | None:
    """A frame rate, or None when the value is a time base artefact: WebM from a
    browser's MediaRecorder has no frame rate and ffmpeg shows its 1 ms time base
    as "1k" fps/tbr."""
    return rate if rate and rate < 1000 else None


def _check_duration(duration: float, limits: ProbeLimits) -> None:
    if not math.isfinite(duration) or duration < limits.min_duration:
        raise ProbeRejected(
            "too_short",
            f"This video is only {max(duration, 0):.1f} seconds long; Tutti needs at least "
            f"{limits.min_duration:g} seconds. Please record your whole part and upload it again.",
        )
    if duration > limits.max_duration:
        raise ProbeRejected(
            "too_long",
            f"This video is {_human_duration(duration)} long; the limit is "
            f"{_human_duration(limits.max_duration)}. Please trim it to your performance "
            "and upload it again.",
        )


def _human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, secs = divmod(seconds, 60)
    if minutes and secs:
        return f"{minutes} min {secs} s"
    if minutes:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{secs} seconds"


def _unreadable(cause: FFmpegError | bool) -> ProbeRejected:
    """The rejection of a file ffmpeg could not read (``cause``: its error, or whether it
    timed out). An ffmpeg stopped as starved (:attr:`FFmpegError.starved`: it got too
    little CPU time, the worker was stopped or overloaded) says nothing of the file:
    that error is raised again as it is, for the work to be tried again."""
    if isinstance(cause, FFmpegError) and cause.starved:
        raise cause
    timed_out = cause.timed_out if isinstance(cause, FFmpegError) else cause
    if timed_out:
        return ProbeRejected("unreadable", "Tutti took too long to read this video; the file "
                             "may be damaged. Please export it again from your phone or editor "
                             "and upload the new file.")
    return ProbeRejected("unreadable", "This video file is damaged or incomplete, so Tutti "
                         "cannot play it. The upload may have been cut short: please upload "
                         "it again, or export it again from your phone or editor.")


def decoder_pixel_cap(width: int, height: int) -> int:
    """A decoder's ``-max_pixels`` for pictures up to ``width``×``height`` (coded
    pixels): what a decoder allocates for such a picture passes, a larger one is
    refused. Coded frames are padded to whole macroblocks and strides are aligned; the
    MPEG-4 Part 2 / H.263 / FLV1 decoders also allocate an edge buffer of (line size +
    64) × 280 (a 176×144 QCIF picture asks for 320×280), so small pictures get a floor
    of 320 rows and 256 columns of margin."""
    return (width + 256) * max(height + 64, 320)


#: ffmpeg's line for a decoder that cannot start: "[aist#0:1/opus @ 0x..] [dec:opus @
#: 0x..] Error while opening decoder: Not yet implemented in FFmpeg, patches welcome"
_DECODER_NOT_OPENED = re.compile(r"^\[aist#0:(?P<index>\d+)/(?P<codec>[^ \]]+)[^\]]*\] "
                                 r"\[dec:[^\]]*\] Error while opening decoder", re.M)


def _decode_one_frame(path: str, video: StreamInfo, *, timeout: float,
                      audio: StreamInfo | None = None) -> None:
    """Decode the first video frame (to a 4x4 grey thumbnail on stdout) to prove that
    the stream plays, and with ``audio`` the sound's first frame in the same run. A
    decoder pixel cap stops a forged header from allocating more. Raises
    :class:`ProbeRejected` (``unsupported_audio``) when the sound's decoder cannot
    start (an Opus track with a demixing matrix, mapping family 3: ffmpeg shows it as
    "4.0" and then cannot decode it), :class:`FFmpegError` for anything else."""
    max_pixels = decoder_pixel_cap(video.width or 0, video.height or 0)
    # one decoder thread: frame threads would each decode a frame before the first is
    # out (4K HEVC: 0.44 -> 0.29 CPU s, 270 -> 205 MB)
    args = ["-v", "error", "-threads", "1", "-max_pixels", str(max_pixels),
            *safe_input(path, VIDEO_DEMUXERS),
            "-map", f"0:{video.index}", "-frames:v", "1", "-vf", "scale=4:4",
            "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1"]
    if audio is not None:
        args += ["-map", f"0:{audio.index}", "-frames:a", "1", "-f", "null", "-"]
    try:
        out = run_ffmpeg(args, timeout=timeout, stdout=None)
    except FFmpegError as exc:
        failed = _DECODER_NOT_OPENED.search(exc.stderr_tail)
        if audio is not None and failed and int(failed["index"]) == audio.index:
            raise ProbeRejected(
                "unsupported_audio",
                "Tutti cannot play this video's sound: it is stored in a form our "
                "converter does not decode (for example 360° ambisonic sound with a "
                "demixing matrix, as some VR cameras save it). Please export the video "
                "with ordinary stereo sound and upload it again.") from exc
        raise
    if len(out) != 16:
        raise FFmpegError("no video frame could be decoded", args, 0, "")
