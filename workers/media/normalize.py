"""Normalize a participant's clip to the campaign's clip format; thumbnails; contact
sheets; loudness.

Every accepted clip becomes the same kind of file, so alignment and rendering never
meet a surprise: MP4, H.264 yuv420p BT.709 limited range at a constant frame rate, the
picture as a standard player shows it (display matrix turned, anamorphic pixels made
square, HDR in HLG or PQ tone-mapped to SDR, wide-gamut SDR converted to BT.709
primaries, BT.601 and full-range pictures converted),
fitted inside the campaign canvas and padded to its aspect; the sound of the track a
player plays (the default, enabled one) as AAC 48 kHz stereo (silence when the clip had
none); no user metadata (phones store GPS there).

The clip keeps the canvas size when the source is that large, so a performer shown full
frame in a spotlight or montage is scaled once, by the render; smaller sources are not
blown up here (never below the grid tile size). The cell-size proxies of
:mod:`workers.media.proxies` serve grids.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from .ffmpeg import (
    Fence,
    FFmpegError,
    ffmpeg_report,
    input_url,
    remove_quietly,
    replace_atomically,
    run_ffmpeg,
    temp_path_for,
)
from .probe import (
    MEDIA_DEMUXERS,
    Colour,
    MediaInfo,
    ProbeLimits,
    ProbeRejected,
    decoder_pixel_cap,
    media_duration,
    parse_framecrc,
    safe_input,
)

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
AUDIO_BITRATE = "160k"
#: width of one frame of a contact sheet (3×3 frames)
SHEET_CELL_WIDTH = 320


@dataclass(frozen=True)
class TileFormat:
    """The normalized clip format. ``width``×``height`` is the largest picture (the
    campaign canvas); a smaller source gets a picture of the same aspect at its own size,
    but never smaller than ``min_width``×``min_height`` (default: always the full size)."""

    width: int = 640
    height: int = 360
    fps: int = 30
    sample_rate: int = AUDIO_RATE
    crf: int = 23
    preset: str = "veryfast"
    min_width: int | None = None
    min_height: int | None = None

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"tile size must be positive and even, not {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"tile fps must be 1..120, not {self.fps}")
        for side in (self.min_width, self.min_height):
            if side is not None and (side <= 0 or side % 2):
                raise ValueError(f"minimum tile sides must be positive and even, not {side}")

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """The normalized frame size for a displayed ``width``×``height`` source: the
        canvas when the source fills it, else the canvas-shaped frame in which the source
        is shown at its own size (even sides, at least the minimum)."""
        scale = min(self.width / width, self.height / height)
        if scale <= 1.0:
            return self.width, self.height
        w = min(self.width, _even(self.width / scale))
        h = min(self.height, _even(self.height / scale))
        min_w = self.min_width or self.width
        min_h = self.min_height or self.height
        if w < min_w or h < min_h:
            return min_w, min_h
        return w, h


def _even(value: float) -> int:
    return max(2, int(math.floor(value / 2 + 1e-6)) * 2)


def picture_size(info: MediaInfo, frame: tuple[int, int]) -> tuple[int, int]:
    """The displayed picture fitted inside ``frame`` (even sides)."""
    fw, fh = frame
    scale = min(fw / info.width, fh / info.height)
    return min(fw, _even(info.width * scale)), min(fh, _even(info.height * scale))


def _picture_size_expr(info: MediaInfo, frame: tuple[int, int]) -> tuple[str, str]:
    """:func:`picture_size` as scale/zscale expressions: the probed size for frames of
    the probed coded size, and for frames of any other size (a browser's recording
    changes size mid-stream, even to portrait: ffmpeg then rebuilds the graph) the
    displayed aspect (``dar``: the coded aspect times the sample aspect) fitted inside
    ``frame`` too, as a player shows it, never stretched."""
    fw, fh = frame
    pw, ph = picture_size(info, frame)
    cw, ch = info.coded_width, info.coded_height
    if info.rotation in (90, 270):  # the player's turn comes before the graph
        cw, ch = ch, cw
    wide = f"gte(dar,{fw}/{fh})"
    same = f"eq(iw,{cw})*eq(ih,{ch})"
    width = f"if({wide},{fw},max(2,trunc({fh}*dar/2+1e-6)*2))"
    height = f"if({wide},max(2,trunc({fw}/dar/2+1e-6)*2),{fh})"
    return (f"'if({same},{pw},{width})'", f"'if({same},{ph},{height})'")


#: swscale's names for the matrices ffmpeg reports
_SWS_MATRIX = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601", "fcc": "fcc",
               "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}


def source_matrix(info: MediaInfo) -> str:
    """The YCbCr matrix a player reads the source with (swscale's name): the tagged one,
    else, as players guess, BT.709 for HD pictures and BT.601 for smaller ones."""
    tagged = _SWS_MATRIX.get(info.colour.matrix or "")
    if tagged:
        return tagged
    return "bt709" if max(info.coded_width, info.coded_height) >= 1280 or min(
        info.coded_width, info.coded_height) >= 720 else "bt601"


#: today's exact HDR -> SDR chain after the tags: zscale linearises and converts to BT.709
#: primaries in float, tonemap (mobius: keeps saturated colours saturated) brings it into
#: SDR, zscale applies the BT.709 transfer and matrix
_HDR_EXACT = ("t=linear:npl=100:p=bt709,format=gbrpf32le,tonemap=mobius:desat=0,"
              "zscale=t=bt709:m=bt709:r=tv")
#: knots of the neutral tone curve (10-bit codes); the piecewise-linear curve through
#: them is within 0.2 of 255 of the exact chain on HLG and PQ
_CURVE_KNOTS = 40


def _hdr_tags(colour: Colour) -> str:
    # zscale needs every property known: fill in what an HDR file leaves untagged
    return (f"setparams=color_trc={colour.transfer}:"
            f"color_primaries={colour.primaries or 'bt2020'}:"
            f"colorspace={colour.matrix or 'bt2020nc'}:range={colour.range or 'tv'}")


@lru_cache(maxsize=8)
def neutral_curve(transfer: str, timeout: float = 60) -> str:
    """The exact HDR chain's tone curve on neutral (grey) pixels of the ``transfer``
    ("arib-std-b67" or "smpte2084"), as a ``lut`` expression of ``val``: a 10-bit
    limited-range luma code in, the 10-bit BT.709 luma code out (piecewise linear, a sum
    of hinges). Measured once per process by running the chain on a ramp of every code
    (a 1024x2 picture, a few tens of milliseconds). Raises :class:`FFmpegError`."""
    colour = Colour(matrix="bt2020nc", primaries="bt2020", transfer=transfer, range="tv")
    raw = run_ffmpeg(["-v", "error", "-f", "lavfi", "-i", "nullsrc=s=1024x2:d=1",
                      "-vf", f"format=yuv444p10le,geq=lum='X':cb=512:cr=512,"
                      f"{_hdr_tags(colour)},zscale={_HDR_EXACT},format=yuv444p16le",
                      "-frames:v", "1", "-f", "rawvideo", "pipe:1"],
                     timeout=timeout, stdout=None)
    if len(raw) < 1024 * 2 * 2:
        raise FFmpegError(f"no tone curve measured for {transfer}")
    luma = [int.from_bytes(raw[2 * k:2 * k + 2], "little") / 65535 * 1020 for k in range(1024)]
    step = (940 - 64) / (_CURVE_KNOTS - 1)
    knots = sorted({0, 1023, *(round(64 + step * k) for k in range(_CURVE_KNOTS))})
    slopes = [(luma[b] - luma[a]) / (b - a) for a, b in pairwise(knots)]
    terms = [f"{luma[knots[0]]:.3f}+{slopes[0]:.6f}*val"]
    terms += [f"{slopes[k] - slopes[k - 1]:+.6f}*max(0\\,val-{knots[k]})"
              for k in range(1, len(slopes))]
    return f"clip({''.join(terms)}\\,0\\,1023)"


def colour_filter(info: MediaInfo, picture: tuple[int | str, int | str], *,
                  exact: bool = False) -> str:
    """Scale to ``picture`` and convert to SDR BT.709 limited range, as a player shows it
    (a filtergraph fragment: one input, one output, yuv420p). The fast HDR chain is
    meant for pictures kept at their size or made smaller.

    SDR pictures take swscale's matrix and range conversion within the scale. HDR (HLG
    or PQ) with ``exact``: one zscale resizes, linearises and converts to BT.709
    primaries in float, tonemap (mobius) brings it into SDR, a second zscale applies the
    BT.709 transfer and matrix (:data:`_HDR_EXACT`; about 40 ms a 1080p frame on one
    core). Without ``exact`` (the default) the exact chain runs at the chroma's size
    only, a quarter of the pixels: swscale brings the picture to its size in 10 bits;
    the chroma of 4:2:0 comes from the exact chain run at half size; the luma is the
    neutral tone curve (:func:`neutral_curve`, a 1D table) at full size, corrected by
    the half-size difference between the exact luma and the curve (saturated colours
    come out darker than greys of the same luma), upsampled bilinearly. On the bench's
    4K HLG pattern (saturated colour bars, the worst case) it is within 1.6 of 255 of
    the exact chain on average (SSIM 0.987; the error sits on sharp edges between
    saturated colours, whose chroma 4:2:0 halves anyway), at about 10 ms a frame."""
    pw, ph = picture
    colour: Colour = info.colour
    if colour.hdr and exact:
        return f"{_hdr_tags(colour)},zscale=w={pw}:h={ph}:{_HDR_EXACT},format=yuv420p"
    if colour.hdr:
        curve = neutral_curve(colour.transfer or "arib-std-b67")
        grey = "extractplanes=y,format=gray10le,format=gray"
        return (f"{_hdr_tags(colour)},scale={pw}:{ph},format=yuv420p10le,split[hf][hh];"
                f"[hf]lutyuv=y='{curve}',{grey}[hy];"
                "[hh]scale=iw/2:ih/2,format=yuv444p10le,split[hx][hn];"
                f"[hx]zscale={_HDR_EXACT},format=yuv444p,extractplanes=y+u+v[hxy][hu][hv];"
                f"[hn]lutyuv=y='{curve}',{grey}[hny];"
                "[hxy][hny]lut2=c0='x-y+128',scale=iw*2:ih*2:flags=bilinear[hc];"
                "[hy][hc]lut2=c0='clip(x+y-128\\,0\\,255)'[hl];"
                "[hl][hu][hv]mergeplanes=map0s=0:map0p=0:map1s=1:map1p=0:map2s=2:map2p=0:"
                "format=yuv420p")
    in_range = "pc" if colour.range == "pc" else "tv"
    if needs_gamut_conversion(colour):
        # zscale reads the frame's tags: fill in what is untagged, then linearise with
        # the source's curve, convert the primaries to BT.709 and apply the same curve
        curve = _SAME_CURVE.get(colour.transfer or "", "bt709")
        matrix = colour.matrix or _SETPARAMS_MATRIX[source_matrix(info)]
        return (f"setparams=color_trc={curve}:color_primaries={colour.primaries}:"
                f"colorspace={matrix}:range={in_range},"
                f"zscale=w={pw}:h={ph}:p=bt709:t={curve}:m=bt709:r=tv,format=yuv420p")
    return (f"scale={pw}:{ph}:in_color_matrix={source_matrix(info)}:out_color_matrix=bt709:"
            f"in_range={in_range}:out_range=tv,format=yuv420p")


#: primaries zscale converts from (ffmpeg's names); BT.709's own and untagged need nothing
GAMUT_PRIMARIES = ("bt2020", "smpte432", "smpte431", "bt470bg", "smpte170m", "smpte240m",
                   "bt470m", "film", "jedec-p22", "ebu3213")
#: the tone curve kept through a primaries conversion: these transfers' own curve, every
#: other SDR one (BT.709, BT.2020 10/12-bit, BT.601: the same curve) as BT.709
_SAME_CURVE = {"iec61966-2-1": "iec61966-2-1", "gamma22": "gamma22", "gamma28": "gamma28"}
#: setparams' names for the matrices :func:`source_matrix` guesses
_SETPARAMS_MATRIX = {"bt709": "bt709", "bt601": "smpte170m", "fcc": "fcc",
                     "smpte240m": "smpte240m", "bt2020": "bt2020nc"}


def needs_gamut_conversion(colour: Colour) -> bool:
    """Whether an SDR picture's primaries are not BT.709's, so that a colour-managed
    player converts them (wide-gamut SDR: BT.2020 from 10-bit phone modes and editors,
    Display P3 (``smpte432``) from iPhone screen recordings; BT.601's 525/625-line
    primaries, which differ a little). HDR (HLG, PQ) is tone-mapped to BT.709 anyway."""
    return not colour.hdr and colour.primaries in GAMUT_PRIMARIES


def tile_video_filter(fmt: TileFormat, duration: float, info: MediaInfo | None = None,
                      frame: tuple[int, int] | None = None) -> str:
    """Constant frame rate from t=0, the picture as a player shows it fitted inside the
    frame and padded black to its size, tagged BT.709; the last frame is held if the
    sound runs longer than the picture (``-t`` ends it)."""
    w, h = frame or (fmt.width, fmt.height)
    head = (f"fps=fps={fmt.fps}:start_time=0,"
            f"tpad=stop_mode=clone:stop_duration={duration:.6f},")
    if info is None:
        fit = (f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
               "format=yuv420p")
    else:
        # a picture blown up takes the exact chain: the fast one's half-size part would
        # hold less detail than the source has, and small pictures are cheap anyway
        pw, ph = picture_size(info, (w, h))
        fit = colour_filter(info, _picture_size_expr(info, (w, h)),
                            exact=pw * ph > info.width * info.height)
    return (f"{head}{fit},pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,"
            "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709")


def thumbnail_time(duration: float, fps: int | None = None) -> float:
    """Where the thumbnail is taken (s): at 1 s, or a third into a shorter clip; with
    ``fps``, the time of the first frame at or after it (see :func:`frame_time`)."""
    at = min(1.0, duration / 3)
    return frame_time(at, fps) if fps else at


def sheet_times(duration: float, fps: int | None = None) -> list[float]:
    """The nine moments (s) of a contact sheet, spread over ``duration`` seconds from 0;
    with ``fps``, each the time of the first frame at or after it (:func:`frame_time`)."""
    times = [duration * k / 9 for k in range(9)]
    return [frame_time(t, fps) for t in times] if fps else times


def frame_time(at: float, fps: int) -> float:
    """The time (s, rounded down to the microsecond, as ffmpeg's ``-ss`` reads it) of the
    first frame at or after ``at`` s of a constant ``fps`` clip whose frames start at 0.
    A seek to it keeps exactly that frame (frames before ``-ss`` are dropped)."""
    frame = math.ceil(at * fps - 1e-6)
    return math.floor(frame / fps * 1e6) / 1e6


def still_keyframes(duration: float, fps: int) -> str:
    """``-force_key_frames`` times (s) for the normalize encode: the frames of the
    contact sheet and of the thumbnail become keyframes, so each seek there decodes one
    frame instead of up to a GOP (two seconds). Each time is half a frame before its
    frame, so the encoder's "first frame at or after" lands on it."""
    times = sorted({*sheet_times(duration, fps), thumbnail_time(duration, fps)})
    return ",".join(f"{max(0.0, t - 0.5 / fps):.6f}" for t in times)


#: the sound's statistics: astats (sample peak and how often it is reached) and ebur128
#: (integrated loudness, true peak), logged at the end of the run
SOUND_METER = "astats=metadata=0:measure_perchannel=none,ebur128=peak=true:framelog=verbose"
#: then, for two channels or more, the level of the first two mixed to one (volumedetect's
#: mean_volume): left and right in opposite phase cancel there
MONO_METER = "pan=mono|c0=0.5*c0+0.5*c1,volumedetect"


def ambisonic_stereo(order: int, extra: int = 0) -> str:
    """A ``pan`` filter that decodes 360° ambisonic sound of ``order`` (ACN channel
    order, SN3D normalization: Opus channel mapping family 2, RFC 8486 section 3.1,
    YouTube's and VR cameras' spatial audio) to stereo: two virtual cardioid microphones
    pointing left and right (azimuth ±90°), the classic first-order stereo decode (the
    Ambisonic Toolkit's ``FoaDecoderMatrix.newStereo`` defaults: angle π/2, cardioid).
    A virtual first-order microphone of pattern p aimed at azimuth θ on the horizon
    hears ``p·W + (1 − p)·(cos θ·X + sin θ·Y)`` with SN3D's unit-gain W; p = ½ and
    θ = ±90° give L = ½W + ½Y, R = ½W − ½Y (ACN: W is channel 0, Y channel 1, pointing
    left). A source ahead reaches both sides at half its level, one at the left only
    the left. Higher orders are decoded by their first order (their first four
    channels are the same in SN3D). With ``extra`` = 2 the head-locked stereo pair
    after the ambisonic channels (RFC 8486: "non-diegetic", e.g. narration or music
    that does not turn with the head) is added to left and right as it is."""
    left, right = "0.5*c0+0.5*c1", "0.5*c0-0.5*c1"
    if extra == 2:
        first = (order + 1) ** 2
        left, right = f"{left}+c{first}", f"{right}+c{first + 1}"
    return f"pan=stereo|c0={left}|c1={right}"


def source_sound_filter(info: MediaInfo) -> str:
    """The filter (with a trailing comma, or "") that makes the played track's sound
    something the rest of a chain can take: 360° ambisonic sound decoded to stereo
    (:func:`ambisonic_stereo`; the resampler cannot mix it down itself); ordinary
    channels pass as they are."""
    if info.ambisonic_order is None:
        return ""
    return ambisonic_stereo(info.ambisonic_order, info.ambisonic_extra) + ","


def meter_channels(info: MediaInfo) -> int | None:
    """How many channels the meter of :func:`sound_meter` reads for ``info``'s sound
    after :func:`source_sound_filter`."""
    return 2 if info.ambisonic_order is not None else info.channels


def sound_meter(channels: int | None) -> str:
    """The meter chain (audio in, audio out: end it with a sink) for a sound of
    ``channels`` channels: :data:`SOUND_METER`, and with two or more channels
    :data:`MONO_METER` after it."""
    return f"{SOUND_METER},{MONO_METER}" if channels and channels >= 2 else SOUND_METER


def decode_pixel_cap(info: MediaInfo, limits: ProbeLimits = ProbeLimits()) -> int:  # noqa: B008
    """The normalize decode's ``-max_pixels``: pictures up to the probe's caps pass
    (``limits.max_width`` × ``max_height``, and no more pixels a frame than the pixel
    rate cap allows at the clip's frame rate), and the probed picture always does, with
    the decoders' padding (:func:`~workers.media.probe.decoder_pixel_cap`)."""
    rate = info.measured_fps or info.fps or 30.0
    allowed = min(limits.max_width * limits.max_height, limits.max_pixel_rate / max(rate, 1.0))
    return max(decoder_pixel_cap(info.coded_width, info.coded_height),
               int(allowed) + decoder_pixel_cap(limits.max_width, 0))


#: what a decoder logs when a picture is larger than ``-max_pixels``
_TOO_MANY_PIXELS = re.compile(r"exceeds specified max pixel count")


#: ffmpeg's line for a packet its decoder refused: "[vist#0:0/h264 @ 0x..] [dec:h264 @
#: 0x..] Error submitting packet to decoder: ..." (or "Decoding error: ...")
_DECODE_ERROR = re.compile(r"^\[(?P<kind>[va])ist#0:(?P<index>\d+)/[^\]]*\] \[dec:[^\]]*\] "
                           r"(?:Error submitting packet to decoder|Decoding error)", re.M)
#: an audio packet's length when it cannot be read: AAC's 1024 samples
_AUDIO_PACKET_SAMPLES = 1024


def undecodable_seconds(log_text: str, info: MediaInfo) -> float:
    """How much of the played streams (seconds, the larger of picture and sound) a
    decode's log shows as packets its decoder refused: a file whose packets are all
    there but whose tail is zeros or garbage (an interrupted copy, a pre-allocated
    upload) reads whole, and only decoding tells. A video packet counts one frame
    (1 / the measured frame rate), an audio packet 1024 samples."""
    video = audio = 0
    for m in _DECODE_ERROR.finditer(log_text):
        index = int(m["index"])
        if m["kind"] == "v" and index == info.video_stream:
            video += 1
        elif m["kind"] == "a" and index == info.audio_stream:
            audio += 1
    rate = info.measured_fps or info.fps or 30.0
    seconds = video / rate
    if audio and info.sample_rate:
        seconds = max(seconds, audio * _AUDIO_PACKET_SAMPLES / info.sample_rate)
    return seconds


def undecodable_rejection(missing: float) -> ProbeRejected:
    """The rejection (``incomplete``) of a video of which ``missing`` seconds do not
    decode (:func:`undecodable_seconds`)."""
    return ProbeRejected(
        "incomplete",
        f"About {missing:.1f} seconds of this video cannot be played: the file is "
        "damaged or did not arrive whole (the upload was probably cut short). "
        "Please upload the video again (on a steady connection).")


def decode_check(info: MediaInfo, *, timeout: float = 1800,
                 limits: ProbeLimits = ProbeLimits()) -> float:  # noqa: B008 - frozen
    """Decode the streams a player plays of a probed file, to nothing, as the normalize
    pass does, and return how many seconds of them do not decode
    (:func:`undecodable_seconds`); raise :class:`ProbeRejected` (``incomplete``) when
    that is more than ``limits.max_missing_seconds``, (``frame_too_large``) when the
    picture grows partway past the caps. The probe reads packets and decodes one frame
    only: a file whose packets are all there but whose tail is zeros passes it, and only
    this (or the normalize pass) tells. A whole decode: about the normalize pass's
    decoding time. Raises :class:`FFmpegError` when ffmpeg cannot run or times out."""
    args = ["-v", "info", "-nostats"]
    if info.coded_width * info.coded_height > 2 * 1920 * 1080:
        args += ["-threads", "2", "-thread_type", "slice"]  # as normalize_argv
    args += ["-max_pixels", str(decode_pixel_cap(info, limits)), *safe_input(info.path),
             "-map", f"0:{info.video_stream}"]
    if info.has_audio:
        args += ["-map", f"0:{info.audio_stream}" if info.audio_stream is not None else "0:a:0"]
    args += ["-f", "null", "-"]
    status, text = ffmpeg_report(args, timeout=timeout, max_lines=400,
                                 duration=info.duration)
    if _TOO_MANY_PIXELS.search(text):
        raise too_large_partway(limits)
    missing = undecodable_seconds(text, info)
    if missing > limits.max_missing_seconds:
        raise undecodable_rejection(missing)
    if status != 0:
        raise FFmpegError(f"ffmpeg exited with status {status}", args, status,
                          "\n".join(text.splitlines()[-20:]))
    return missing


#: the normalized sound may decode this much longer or shorter than its picture (s): the
#: AAC encoder's priming and last frame add up to 2048 samples (43 ms at 48 kHz), and the
#: async resampler lets the sound drift 0.1 s before it corrects it (pieces joined with
#: ``cat`` overlap by a few AAC frames: 0.09 s measured on 44.1 kHz + 48 kHz TS)
MAX_SOUND_EXCESS = 0.2
#: samples in an AAC frame, the normalized sound's packets
_AAC_FRAME = 1024


def sound_excess(path: str, sample_rate: int = AUDIO_RATE, *, timeout: float = 300) -> float:
    """How much longer (seconds; negative: shorter) the sound of a normalized clip decodes
    than its picture lasts: its AAC packets × 1024 samples at ``sample_rate`` against the
    end of its last picture. A player goes by the time stamps, a decode (the render's
    mixer, the aligner) by the samples: when the two disagree, the sound after the
    disagreement is out of step with the picture (a sound graph rebuilt partway writes
    packets 1 tick long). Reads the packets without decoding. Raises :class:`FFmpegError`."""
    out = run_ffmpeg(["-v", "error", *safe_input(path, MEDIA_DEMUXERS), "-map", "0:v:0",
                      "-map", "0:a:0", "-c", "copy", "-f", "framecrc", "pipe:1"],
                     timeout=timeout, stdout=None)
    ends = parse_framecrc(out.decode("ascii", "replace"), audio=True)
    packets = sum(1 for line in out.decode("ascii", "replace").splitlines()
                  if line.startswith("1,"))
    return packets * _AAC_FRAME / sample_rate - ends.video_end


def too_large_partway(limits: ProbeLimits = ProbeLimits()) -> ProbeRejected:  # noqa: B008
    """The rejection of a video whose picture grows partway past the caps."""
    return ProbeRejected(
        "frame_too_large",
        "Partway through, this video's picture becomes larger than Tutti accepts "
        f"({limits.max_width}×{limits.max_height}, and at most 4K at 60 frames per second). "
        "Please export it at 4K or less and upload it again.")


def normalize_argv(src: str, dst: str, info: MediaInfo, fmt: TileFormat, *,
                   meter: bool = False, stills: bool = False,
                   sound_from_zero: bool = True) -> list[str]:
    """ffmpeg arguments (without the binary) that turn ``src`` into ``dst``; with ``meter``
    the source's sound statistics are logged from the same decode
    (:func:`parse_sound_stats`); with ``stills`` the frames of the contact sheet and the
    thumbnail are made keyframes (:func:`still_keyframes`). Without ``sound_from_zero``
    the sound is not padded from t=0 (``first_pts``): ffmpeg rebuilds the sound's graph
    when the sample rate or the channels change partway, and the rebuilt resampler would
    pad from 0 again, writing the rest of the sound after as much silence
    (:func:`sound_excess`)."""
    duration = f"{info.duration:.6f}"
    args: list[str] = []
    large = info.coded_width * info.coded_height > 2 * 1920 * 1080
    if large:
        # no frame threads: each holds 4K frames (peak RSS 601 -> 544 MB on 4K HEVC).
        # Slice threads share one picture: HEVC in wavefronts (x265's default; iPhones
        # too) decodes on two cores at no extra memory; other streams on one, as before
        args += ["-threads", "2", "-thread_type", "slice"]
    if info.odd_rotation is not None:
        # ffmpeg would turn the picture by that angle inside its frame (corners cut,
        # black corners); players show it as stored, and so does the probe's size
        args += [f"-display_rotation:{info.video_stream}", "0"]
    # the decoder is capped for the whole pass: a picture that grows partway (a new
    # H.264 SPS in-band) past what the probe admits is refused, not decoded
    args += ["-max_pixels", str(decode_pixel_cap(info))]
    args += [*safe_input(src)]
    graph: list[str] = []
    if info.has_audio:
        stream = f"0:{info.audio_stream}" if info.audio_stream is not None else "0:a:0"
        # async resampling fills gaps and starts the sound at t=0, as the picture does,
        # and apad + -t makes the sound exactly as long as the clip. Pads are always
        # finite: an endless pad cut by -t or atrim sometimes hangs ffmpeg 9.
        start = ":first_pts=0" if sound_from_zero else ""
        decode = source_sound_filter(info)
        sound = (f"aresample={fmt.sample_rate}:async=1{start},"
                 f"aformat=sample_fmts=fltp:channel_layouts=stereo,"
                 f"apad=whole_dur={duration}[a]")
        if meter:  # measured as the source has it (its own channels and rate)
            graph.append(f"[{stream}]{decode}asplit=2[am][au]")
            graph.append(f"[am]{sound_meter(meter_channels(info))},anullsink")
            graph.append(f"[au]{sound}")
        else:
            graph.append(f"[{stream}]{decode}{sound}")
    else:
        args += ["-f", "lavfi", "-t", duration,
                 "-i", f"anullsrc=channel_layout=stereo:sample_rate={fmt.sample_rate}"]
        graph.append("[1:a:0]anull[a]")
    frame = fmt.frame_size(info.width, info.height)
    picture = (f"[0:{info.video_stream}]{tile_video_filter(fmt, info.duration, info, frame)}"
               "[v]")
    args += [
        # two graphs: when the picture size changes mid-stream (a browser's MediaRecorder
        # adapting to bandwidth), ffmpeg rebuilds the graph of the picture, and a sound
        # in the same graph would restart with a gap of silence
        "-filter_complex", ";".join(graph), "-filter_complex", picture,
        "-map", "[v]", "-map", "[a]",
        "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn",
        "-t", duration,
        "-c:v", "libx264", "-preset", fmt.preset, "-crf", str(fmt.crf),
        "-pix_fmt", "yuv420p", "-profile:v", "high", "-g", str(2 * fmt.fps),
        *(["-force_key_frames:v", still_keyframes(info.duration, fmt.fps)] if stills else []),
        "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
        "-color_range", "tv",
        *(["-threads:v", "2"] if large else []),
        "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(fmt.sample_rate), "-ac", "2",
        "-movflags", "+faststart", "-f", "mp4", input_url(dst),
    ]
    return args


def contact_sheet_argv(src: str, dst: str, duration: float,
                       cell_width: int = SHEET_CELL_WIDTH, fps: int | None = None) -> list[str]:
    """ffmpeg arguments for a 3×3 contact sheet JPEG of ``src`` (a normalized clip, short
    keyframe intervals): nine seeks spread over ``duration`` seconds
    (:func:`sheet_times`), one frame each; with ``fps`` (the clip's constant rate) the
    seeks go to the frames themselves, which a normalize with ``stills`` made
    keyframes."""
    args: list[str] = []
    graph: list[str] = []
    for k, at in enumerate(sheet_times(duration, fps)):
        args += ["-ss", f"{at:.6f}", *safe_input(src)]
        graph.append(f"[{k}:v:0]trim=end_frame=1,setpts=PTS-STARTPTS,"
                     f"scale={cell_width}:-2,setsar=1[c{k}]")
    graph.append("".join(f"[c{k}]" for k in range(9)) + "concat=n=9:v=1:a=0,"
                 "tile=3x3:padding=2:color=black,format=yuvj420p[sheet]")
    return [*args, "-filter_complex", ";".join(graph), "-map", "[sheet]", "-frames:v", "1",
            "-c:v", "mjpeg", "-q:v", "4", "-f", "image2", "-update", "1", input_url(dst)]


def make_contact_sheet(src: str, dst: str, duration: float, *, timeout: float = 120,
                       fps: int | None = None, fence: Fence | None = None) -> None:
    """Write a 3×3 contact sheet JPEG of ``src`` to ``dst`` atomically (``fps``: see
    :func:`contact_sheet_argv`), published through ``fence`` when given. Raises
    :class:`FFmpegError` (:class:`~workers.media.ffmpeg.WorkTakenOver` from the fence);
    nothing is left behind on failure."""
    tmp = temp_path_for(dst)
    try:
        run_ffmpeg(contact_sheet_argv(src, tmp, duration, fps=fps), timeout=timeout)
        if not _nonempty(tmp):
            raise FFmpegError(f"no contact sheet could be made of {src}")
        _publish(tmp, dst, fence)
    except BaseException:
        remove_quietly(tmp)
        raise


@dataclass(frozen=True)
class SoundStats:
    """The sound of a clip as measured: integrated loudness (LUFS, -inf for silence),
    true peak (dBTP), sample peak (dBFS) and how often the signal reached that peak
    (astats' "Peak count"); the RMS level of all channels (dBFS, astats) and of the first
    two mixed to mono (dBFS, None when not measured: one channel)."""

    integrated: float
    true_peak: float
    peak_level: float
    peak_count: int
    rms_level: float = -math.inf
    mono_rms_level: float | None = None


def parse_sound_stats(status: int, text: str) -> SoundStats:
    """The :class:`SoundStats` of a log with ebur128's summary and astats' overall lines
    (:data:`SOUND_METER`). Raises :class:`FFmpegError` when the summary is missing."""
    loud = parse_ebur128_summary(status, text)
    start = text.rfind("Overall")
    part = text[start:] if start >= 0 else text
    level = re.search(r"Peak level dB:\s*(-?inf|-?[\d.]+)", part)
    count = re.search(r"Peak count:\s*(\d+(?:\.\d+)?)", part)
    peak = float(level.group(1)) if level else -math.inf
    # no sample above zero (no samples at all, or digital silence): ebur128 reports a true
    # peak of 0 dBTP for a track with no samples, which would read as clipping
    true_peak = loud.true_peak if math.isfinite(peak) else -math.inf
    rms = re.search(r"RMS level dB:\s*(-?inf|-?[\d.]+)", part)
    mono = re.search(r"mean_volume:\s*(-?inf|-?[\d.]+) dB", text)
    return SoundStats(loud.integrated, true_peak, peak,
                      int(float(count.group(1))) if count else 0,
                      float(rms.group(1)) if rms else -math.inf,
                      float(mono.group(1)) if mono else None)


@dataclass(frozen=True)
class Normalized:
    """What normalizing wrote and measured: the contact sheet and thumbnail paths (None
    when none was asked for or made) and the sound's statistics (None without sound or
    ``meter``)."""

    path: str
    sheet: str | None = None
    thumbnail: str | None = None
    sound: SoundStats | None = None


def normalize_clip(
    src: str,
    dst: str,
    info: MediaInfo,
    fmt: TileFormat,
    *,
    timeout: float = 1800,
    progress: Callable[[float], None] | None = None,
    sheet: str | None = None,
    thumbnail: str | None = None,
    meter: bool = False,
    fence: Fence | None = None,
) -> Normalized:
    """Write the normalized clip to ``dst`` atomically (never a half-written ``dst``),
    with ``meter`` the sound's statistics from the same decode, then optionally its 3×3
    contact sheet (``sheet``) and a thumbnail (``thumbnail``), JPEGs taken from the
    normalized clip. Raises :class:`FFmpegError` when the clip cannot be made, and
    :class:`ProbeRejected` (``frame_too_large``) when its picture grows partway past the
    probe's caps (:func:`decode_pixel_cap`), (``incomplete``) when more than half a
    second of it does not decode (:func:`undecodable_seconds`), or (``sound_changes``)
    when its sound still decodes more than :data:`MAX_SOUND_EXCESS` longer or shorter
    than its picture after a second pass that does not pad the sound from 0
    (:func:`sound_excess`: a sample rate changing partway); nothing is left behind on
    failure. With ``fence`` (the pipeline's lease) the work is checked to be still ours
    before each conversion pass, and every file is published through it: work taken
    over by another worker raises :class:`~workers.media.ffmpeg.WorkTakenOver` instead
    of converting again or publishing over the new owner's files."""
    tmp = temp_path_for(dst)
    try:
        for sound_from_zero in (True, False):
            if fence is not None:
                fence.check()
            args = normalize_argv(src, tmp, info, fmt, meter=meter,
                                  stills=bool(sheet or thumbnail),
                                  sound_from_zero=sound_from_zero)
            status, text = ffmpeg_report(["-v", "info", "-nostats", *args], timeout=timeout,
                                         max_lines=400, duration=info.duration,
                                         progress=progress)
            if _TOO_MANY_PIXELS.search(text):
                raise too_large_partway()
            missing = undecodable_seconds(text, info)
            if missing > ProbeLimits().max_missing_seconds:
                raise undecodable_rejection(missing)
            if status != 0:
                raise FFmpegError(f"ffmpeg exited with status {status}", args, status,
                                  "\n".join(text.splitlines()[-20:]))
            if not info.has_audio:
                break
            excess = sound_excess(tmp, fmt.sample_rate, timeout=min(timeout, 300))
            if abs(excess) <= MAX_SOUND_EXCESS:
                break
            log.warning("normalized %s: its sound lasts %+.3f s beyond its picture%s", src,
                        excess, "; once more without padding from 0" if sound_from_zero
                        else "")
        else:
            raise ProbeRejected(
                "sound_changes",
                "The sound of this video changes its format partway (for example its "
                "sample rate, where two recordings were joined), so Tutti cannot keep it "
                "in step with the picture. Please export the video again as one file from "
                "your phone or editor (MP4) and upload the new file.")
        sound = None
        if meter and info.has_audio:
            try:
                sound = parse_sound_stats(status, text)
            except FFmpegError as exc:  # a measurement that helps; the clip is fine
                log.warning("no sound statistics for %s: %s", src, exc)
        _publish(tmp, dst, fence)
    except BaseException:
        remove_quietly(tmp)
        raise
    # the stills come from the normalized clip (small, their frames made keyframes): nine
    # seeks of one decoded frame each cost less than a branch of the full-size decode
    made: dict[str, str | None] = {"sheet": None, "thumbnail": None}
    for key, final in (("sheet", sheet), ("thumbnail", thumbnail)):
        if not final:
            continue
        try:
            if key == "sheet":
                make_contact_sheet(dst, final, info.duration, timeout=min(timeout, 300),
                                   fps=fmt.fps, fence=fence)
            else:
                make_thumbnail(dst, final, at=thumbnail_time(info.duration, fmt.fps),
                               timeout=min(timeout, 120), fence=fence)
            made[key] = final
        except FFmpegError as exc:  # pictures that help; the clip itself is fine
            log.warning("no %s for %s: %s", key, src, exc)
    w, h = fmt.frame_size(info.width, info.height)
    log.info("normalized %s -> %s (%dx%d@%d)", src, dst, w, h, fmt.fps)
    return Normalized(dst, made["sheet"], made["thumbnail"], sound)


def thumbnail_argv(src: str, dst: str, at: float, width: int) -> list[str]:
    return [
        "-ss", f"{max(0.0, at):.6f}", *safe_input(src),
        "-map", "0:v:0", "-frames:v", "1",
        "-vf", f"scale={width}:-2,format=yuvj420p",
        "-c:v", "mjpeg", "-q:v", "3", "-f", "image2", "-update", "1", input_url(dst),
    ]


def make_thumbnail(src: str, dst: str, *, at: float | None = None, width: int = 320,
                   timeout: float = 60, fence: Fence | None = None) -> None:
    """A JPEG still of ``src`` at ``at`` seconds (default: min(1 s, a third of the clip)),
    published through ``fence`` when given."""
    if width <= 0 or width % 2:
        raise ValueError(f"thumbnail width must be positive and even, not {width}")
    if at is None:
        at = min(1.0, media_duration(src, timeout=timeout) / 3)
    tmp = temp_path_for(dst)
    try:
        try:
            run_ffmpeg(thumbnail_argv(src, tmp, at, width), timeout=timeout)
        except FFmpegError as exc:
            if exc.timed_out:
                raise
        if not _nonempty(tmp):  # a seek past the last frame gives nothing: take the first
            run_ffmpeg(thumbnail_argv(src, tmp, 0.0, width), timeout=timeout)
        if not _nonempty(tmp):
            raise FFmpegError(f"no frame to make a thumbnail from {src}")
        _publish(tmp, dst, fence)
    except BaseException:
        remove_quietly(tmp)
        raise


def _publish(tmp: str, dst: str, fence: Fence | None) -> None:
    """``tmp`` published as ``dst``: through ``fence`` when given (the module's
    :func:`replace_atomically` otherwise, looked up when called)."""
    if fence is None:
        replace_atomically(tmp, dst)
        return
    with fence.holding():
        replace_atomically(tmp, dst)


def _nonempty(path: str) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0


@dataclass(frozen=True)
class Loudness:
    """EBU R128 measurement: integrated loudness (LUFS), true peak (dBTP), range (LU)."""

    integrated: float
    true_peak: float
    lra: float
    threshold: float


def measure_loudness(path: str, *, timeout: float = 600) -> Loudness:
    """Measure a file's sound with ffmpeg's loudnorm analysis (EBU R128).

    Silence measures as -inf integrated loudness."""
    args = ["-v", "info", *safe_input(path, MEDIA_DEMUXERS), "-map", "0:a:0", "-vn",
            "-af", "loudnorm=print_format=json", "-f", "null", "-"]
    return parse_loudnorm_json(*ffmpeg_report(args, timeout=timeout))


def parse_loudnorm_json(status: int, text: str) -> Loudness:
    match = re.search(r"\{[^{}]*\"input_i\"[^{}]*\}", text)
    if status != 0 or match is None:
        raise FFmpegError("loudness measurement failed", [], status, text[-2000:])
    data = json.loads(match.group(0))

    def number(key: str) -> float:
        try:
            value = float(data[key])
        except (KeyError, ValueError):
            return -math.inf
        return value if math.isfinite(value) else -math.inf

    return Loudness(number("input_i"), number("input_tp"), max(0.0, number("input_lra")),
                    number("input_thresh"))


def parse_ebur128_summary(status: int, text: str) -> Loudness:
    """The summary that ffmpeg's ``ebur128=peak=true`` filter logs at the end (the same
    EBU R128 measurement as loudnorm's analysis, at a third of its cost: it measures
    only, where loudnorm also normalises, at 192 kHz, into the void)."""
    start = text.rfind("Summary:")
    if status != 0 or start < 0:
        raise FFmpegError("loudness measurement failed", [], status, text[-2000:])
    summary = text[start:]

    def number(label: str, section: str) -> float:
        at = summary.find(section)
        match = re.search(rf"{label}:\s+(-?inf|-?[\d.]+)", summary[at:]) if at >= 0 else None
        if match is None:
            raise FFmpegError(f"loudness measurement has no {section} {label}", [], status,
                              summary[:2000])
        value = float(match.group(1))
        return value if math.isfinite(value) else -math.inf

    return Loudness(number("I", "Integrated loudness"), number("Peak", "True peak"),
                    max(0.0, number("LRA", "Loudness range")),
                    number("Threshold", "Integrated loudness"))
