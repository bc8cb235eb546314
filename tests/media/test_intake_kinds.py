"""Every kind of file a phone, camera or browser makes, checked on the normalized output:
what a standard player shows and plays (square pixels, SDR BT.709 colour, the default
audio track, the length that really plays), the caps on what a header claims, and the
checks a participant reads. Each kind is generated tiny by ffmpeg here; the real-world
examples in ``../shared/cases/media`` are in ``test_shared_cases.py``."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from workers.media.checks import (
    Check,
    SoundStats,
    intake_checks,
    length_checks,
    measure_sound,
    merge,
    orientation_checks,
    sound_checks,
    sync_checks,
)
from workers.media.ffmpeg import ffmpeg_path
from workers.media.normalize import TileFormat, colour_filter, normalize_clip
from workers.media.probe import (
    ProbeLimits,
    ProbeRejected,
    _ogg_crc,
    parse_input_report,
    probe,
)

from .conftest import _run
from .measures import (
    decode_sound,
    dominant_frequency,
    mean_saturation_and_luma,
    ssim,
    white_box,
)

TILE = TileFormat(width=320, height=180, fps=30)
#: outputs are probed as they are (a tile may be smaller than an upload may be)
ANY = ProbeLimits(min_side=2)


@pytest.fixture(scope="module")
def kinds(media_dir: Path, ffmpeg_exe: str) -> Callable[[str], str]:
    """Files of each kind by name, made once per module."""
    made: dict[str, str] = {}
    ff = [ffmpeg_exe, "-hide_banner", "-nostdin", "-y"]
    pattern = "testsrc2=s=192x108:r=30:d=2"
    tone = "sine=frequency={f}:sample_rate=48000:duration={d}"
    x264 = ["-c:v", "libx264", "-preset", "ultrafast"]

    def whole_faststart_mp4(out: str) -> bytes:
        """4 s of picture and a 440 Hz tone, index at the front: the bytes of the
        whole file that the cut kinds then damage."""
        full = out + "-full.mp4"
        _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=4", "-f", "lavfi",
              "-i", tone.format(f=440, d=4), *x264, "-c:a", "aac",
              "-movflags", "+faststart", full])
        return Path(full).read_bytes()

    def make(kind: str) -> str:
        if kind in made:
            return made[kind]
        out = str(media_dir / f"kind-{kind}")
        if kind == "sdr":  # the SDR twin of the HDR kinds
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", pattern, *x264, "-pix_fmt", "yuv420p",
                  "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
                  out])
        elif kind in ("hlg", "pq"):
            trc = {"hlg": "arib-std-b67", "pq": "smpte2084"}[kind]
            out += ".mov"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-vf",
                  "setparams=color_trc=bt709:color_primaries=bt709:colorspace=bt709:range=tv,"
                  "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt2020,"
                  f"zscale=t={trc}:m=bt2020nc:r=tv:npl=100,format=yuv420p10le",
                  "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                  "-tag:v", "hvc1", "-colorspace", "bt2020nc", "-color_primaries", "bt2020",
                  "-color_trc", trc, out])
        elif kind == "bt601":  # SD camera: BT.601 matrix, full-range JPEG-style pixels
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-vf",
                  "scale=out_color_matrix=bt601:out_range=pc,format=yuvj420p",
                  *x264, "-colorspace", "smpte170m", "-color_range", "pc", out])
        elif kind == "bt601_tv":
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-vf",
                  "scale=out_color_matrix=bt601:out_range=tv,format=yuv420p",
                  *x264, "-colorspace", "smpte170m", out])
        elif kind == "anamorphic":  # a white square on a 192x108 display, stored squeezed
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", "color=c=black:s=192x108:r=30:d=1", "-vf",
                  "drawbox=x=66:y=24:w=60:h=60:c=white:t=fill,scale=96:108,setsar=2/1",
                  *x264, "-pix_fmt", "yuv420p", out])
        elif kind == "two_tracks":  # first track disabled (300 Hz), second default (1 kHz)
            out += ".mov"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i",
                  tone.format(f=300, d=2), "-f", "lavfi", "-i", tone.format(f=1000, d=2),
                  "-map", "0:v", "-map", "1:a", "-map", "2:a", *x264, "-c:a", "aac",
                  "-disposition:a:0", "0", "-disposition:a:1", "default", out])
        elif kind == "cut":  # index at the front, the upload stopped at half the file
            data = whole_faststart_mp4(out)
            out += ".mp4"
            Path(out).write_bytes(data[: len(data) // 2])
        elif kind in ("picture_short", "sound_short"):
            v, a = (1, 3) if kind == "picture_short" else (3, 1)
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", f"testsrc2=s=192x108:r=30:d={v}", "-f", "lavfi",
                  "-i", tone.format(f=440, d=a), *x264, "-c:a", "aac", out])
        elif kind == "fps_bomb":  # a few KB declaring 1,000 frames per second
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", "color=s=128x128:r=1000:d=2", *x264, out])
        elif kind == "fps_bomb_mkv":  # Matroska has no frame rate field: measured only
            out += ".mkv"
            _run([*ff, "-f", "lavfi", "-i", "color=s=128x128:r=1000:d=2", *x264, out])
        elif kind == "tiny":
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=64x64:r=30:d=1", *x264, out])
        elif kind == "low_rate":
            out += ".mkv"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i",
                  "sine=frequency=440:sample_rate=4000:duration=2", *x264, "-c:a", "pcm_s16le",
                  out])
        elif kind == "many_channels":
            out += ".mkv"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i",
                  tone.format(f=440, d=2), "-af", "pan=10c|" + "|".join(
                      f"c{i}=c0" for i in range(10)), *x264, "-c:a", "pcm_s16le", out])
        elif kind == "hd":  # fills a 1280x720 canvas
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=30:d=1", *x264,
                  "-pix_fmt", "yuv420p", out])
        elif kind in ("loud", "quiet", "silent"):
            audio = {"loud": tone.format(f=440, d=2) + ",volume=24dB",
                     "quiet": tone.format(f=440, d=2) + ",volume=-36dB",
                     "silent": "anullsrc=sample_rate=48000:channel_layout=stereo:d=2"}[kind]
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i", audio, *x264,
                  "-c:a", "aac", "-t", "2", out])
        elif kind in ("antiphase", "wide_stereo"):  # left = -right; two unrelated tones
            right = "-1*c0" if kind == "antiphase" else "c1"
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i",
                  f"{tone.format(f=440, d=2)},volume=-12dB", "-f", "lavfi", "-i",
                  f"{tone.format(f=660, d=2)},volume=-12dB", "-filter_complex",
                  f"[1:a][2:a]amerge=inputs=2,pan=stereo|c0=c0|c1={right}[a]",
                  "-map", "0:v", "-map", "[a]", *x264, "-c:a", "aac", "-t", "2", out])
        elif kind == "odd_rotation":  # a white square, its display matrix turned by 30°
            square = out + "-square.mp4"
            _run([*ff, "-f", "lavfi", "-i", "color=c=black:s=192x108:r=30:d=1", "-vf",
                  "drawbox=x=66:y=24:w=60:h=60:c=white:t=fill", *x264, "-pix_fmt",
                  "yuv420p", square])
            out += ".mp4"
            _run([*ff, "-display_rotation:v:0", "30", "-i", square, "-c", "copy", out])
        elif kind == "portrait":
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=108x192:r=30:d=2", "-f", "lavfi",
                  "-i", tone.format(f=440, d=2), *x264, "-c:a", "aac", out])
        elif kind in ("size_change", "size_change_portrait"):
            # a browser's recording that changes picture size partway (bandwidth, a
            # turned phone): two 1 s parts joined without re-encoding, one tone throughout
            box = "drawbox=x=(iw-40)/2:y=(ih-40)/2:w=40:h=40:c=white:t=fill"
            second = "108x192" if kind.endswith("portrait") else "128x72"
            webm = kind.endswith("portrait")
            codecs = (["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"] if webm
                      else [*x264, "-c:a", "aac"])
            parts = []
            for k, size in enumerate(("192x108", second)):
                part = f"{out}-{k}.{'webm' if webm else 'ts'}"
                _run([*ff, "-f", "lavfi", "-i", f"color=c=0x606060:s={size}:r=30:d=1,{box}",
                      "-f", "lavfi", "-i", tone.format(f=440, d=1), *codecs, part])
                parts.append(part)
            listing = Path(out + ".txt")
            listing.write_text("".join(f"file '{p}'\n" for p in parts))
            out += ".webm" if webm else ".mkv"
            _run([*ff, "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", out])
        elif kind == "preview_track_first":  # a disabled 160x90 preview, then the video
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", "color=c=blue:s=160x90:r=30:d=2", "-f", "lavfi",
                  "-i", pattern, "-f", "lavfi", "-i", tone.format(f=440, d=2),
                  "-map", "0:v", "-map", "1:v", "-map", "2:a", *x264, "-pix_fmt", "yuv420p",
                  "-c:a", "aac", "-disposition:v:0", "0", "-disposition:v:1", "default", out])
        elif kind == "mpeg_ps":  # DVD-style MPEG-2 program stream: few packets have a pts
            out += ".mpg"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i",
                  tone.format(f=440, d=2), "-c:v", "mpeg2video", "-c:a", "mp2", out])
        elif kind == "pixel_bomb":  # 8K at 30 fps: a few KB, minutes to convert
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", "color=s=7680x4320:r=30:d=0.1", *x264,
                  "-pix_fmt", "yuv420p", out])
        elif kind in ("display_aspect_mkv", "display_aspect_mp4"):
            # H.264 whose VUI says square pixels (SAR 1:1) and whose container says 16:9
            # (Matroska DisplayWidth/Height, MP4 pasp), as `-aspect 16:9 -c copy` or
            # mkvpropedit make it: a white square shown on 192x108, stored 144x108
            stored = out + "-stored.mkv"
            _run([*ff, "-f", "lavfi", "-i", "color=c=black:s=192x108:r=30:d=1", "-vf",
                  "drawbox=x=66:y=24:w=60:h=60:c=white:t=fill,scale=144:108,setsar=1",
                  *x264, "-pix_fmt", "yuv420p", stored])
            out += "." + kind[-3:]
            _run([*ff, "-i", stored, "-c", "copy", "-aspect", "16:9", out])
        elif kind in ("bt2020_sdr", "p3_sdr"):
            # wide-gamut SDR: the twin's colours converted exactly to BT.2020 primaries
            # (10-bit HEVC, BT.2020-10 transfer) or Display P3 (SMPTE 432), the tone
            # curve kept
            primaries, matrix = (("bt2020", "bt2020nc") if kind == "bt2020_sdr"
                                 else ("smpte432", "bt709"))
            codec = (["-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                      "log-level=error", "-tag:v", "hvc1", "-pix_fmt", "yuv420p10le"]
                     if kind == "bt2020_sdr" else [*x264, "-pix_fmt", "yuv420p"])
            trc = "bt2020-10" if kind == "bt2020_sdr" else "bt709"
            out += ".mp4"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-vf",
                  "setparams=color_trc=bt709:color_primaries=bt709:colorspace=bt709:range=tv,"
                  f"zscale=p={primaries}:t=bt709:m={matrix}:r=tv,format=yuv444p16le",
                  *codec, "-colorspace", matrix, "-color_primaries", primaries,
                  "-color_trc", trc, out])
        elif kind in ("cut_avi", "cut_fragmented"):
            # an AVI whose index (at the end) is gone but whose header counts 120 frames;
            # a fragmented MP4 (no total length in its moov) stopped inside a fragment
            full = out + ("-full.avi" if kind == "cut_avi" else "-full.mp4")
            extra = (["-c:a", "pcm_s16le"] if kind == "cut_avi" else
                     ["-c:a", "aac", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
                      "-g", "15"])
            _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=4", "-f", "lavfi",
                  "-i", tone.format(f=440, d=4), *x264, *extra, full])
            out += Path(full).suffix
            data = Path(full).read_bytes()
            Path(out).write_bytes(data[: len(data) * 6 // 10])
        elif kind == "zero_tail":
            # every packet there, the second half of the bytes zeros (an interrupted copy,
            # a pre-allocated upload): only decoding tells
            data = whole_faststart_mp4(out)
            out += ".mp4"
            Path(out).write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
        elif kind == "grows_past_cap":
            # a picture that changes size partway (as a MediaRecorder clip does) to 8K
            # at 30 fps, past the pixel rate cap: a new SPS in-band, a few KB
            parts = []
            for k, (size, seconds) in enumerate((("192x108", 1), ("7680x4320", 0.1))):
                part = f"{out}-{k}.ts"
                _run([*ff, "-f", "lavfi", "-i", f"color=c=0x606060:s={size}:r=30:d={seconds}",
                      *x264, "-pix_fmt", "yuv420p", part])
                parts.append(part)
            listing = Path(out + ".txt")
            listing.write_text("".join(f"file '{p}'\n" for p in parts))
            out += ".mkv"
            _run([*ff, "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", out])
        elif kind in ("h263_qcif", "xvid_qvga", "flv_qcif"):
            # old phones (H.263 QCIF in 3GP), Xvid AVI, Flash video: small pictures whose
            # decoders allocate padded edges
            size, codec, ext = {"h263_qcif": ("176x144", "h263", ".3gp"),
                                "xvid_qvga": ("320x240", "mpeg4", ".avi"),
                                "flv_qcif": ("176x144", "flv", ".flv")}[kind]
            out += ext
            _run([*ff, "-f", "lavfi", "-i", f"testsrc2=s={size}:r=15:d=2", "-f", "lavfi",
                  "-i", "sine=frequency=440:sample_rate=8000:duration=2", "-c:v", codec,
                  "-c:a", "aac" if ext == ".3gp" else "pcm_s16le" if ext == ".avi"
                  else "adpcm_swf", out])
        elif kind in ("live_webm", "live_webm_zero_middle"):
            # a browser's recording (MediaRecorder: no duration, no cues), and the same
            # bytes with 30-70 % zeros (a broken chunk of a resumed upload): the Matroska
            # demuxer skips the zeros to the next cluster, and no decoder refuses a packet
            full = out + "-full.webm"
            if not os.path.exists(full):
                _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=4", "-f", "lavfi",
                      "-i", tone.format(f=440, d=4), "-c:v", "libvpx", "-deadline",
                      "realtime", "-g", "30", "-c:a", "libopus", "-live", "1", "-f", "webm",
                      full])
            data = bytearray(Path(full).read_bytes())
            if kind.endswith("zero_middle"):
                data[len(data) * 3 // 10:len(data) * 7 // 10] = bytes(
                    len(data) * 7 // 10 - len(data) * 3 // 10)
            out += ".webm"
            Path(out).write_bytes(bytes(data))
        elif kind in ("ambisonic_mp4", "ambisonic_webm", "ambisonic_headlocked",
                      "ambisonic_family3"):
            # 360° sound as VR cameras and YouTube store it: first-order ambisonics (ACN
            # order W, Y, Z, X; SN3D) in Opus with channel mapping family 2. A 440 Hz
            # tone at the left (W = Y = a) and a 1 kHz tone at the right (W = -Y = b);
            # "headlocked" has the 440 Hz tone ahead (W only) and a head-locked stereo
            # pair after the four channels with the 1 kHz tone on its left;
            # "family3" is the same sound declared with a demixing matrix (mapping
            # family 3), which ffmpeg cannot decode (its OpusHead rewritten in an Ogg)
            if kind == "ambisonic_headlocked":
                mix = "pan=6c|c0=c0|c1=0*c0|c2=0*c0|c3=0*c0|c4=c1|c5=0*c0"
            else:
                mix = "pan=4c|c0=0.5*c0+0.5*c1|c1=0.5*c0-0.5*c1|c2=0*c0|c3=0*c0"
            video, ext = {"ambisonic_webm": (["-c:v", "libvpx", "-deadline", "realtime"],
                                             ".webm"),
                          "ambisonic_family3": (["-c:v", "libtheora"], ".ogg")}.get(
                kind, (x264, ".mp4"))
            out += ext
            _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=2", "-f", "lavfi",
                  "-i", tone.format(f=440, d=2), "-f", "lavfi", "-i", tone.format(f=1000, d=2),
                  "-filter_complex", f"[1:a][2:a]amerge=inputs=2,{mix}[a]", "-map", "0:v",
                  "-map", "[a]", *video, "-c:a", "libopus", "-mapping_family", "2", out])
            if kind == "ambisonic_family3":
                Path(out).write_bytes(_opus_family3(Path(out).read_bytes()))
        elif kind.startswith("abrupt_"):
            # containers that state no length, cut off: an MPEG-TS (H.264 + AAC) and a live
            # WebM (MediaRecorder: no duration, no cues) cut at 60 % of their bytes, inside
            # a packet or a block; an Ogg (Theora + Vorbis) cut inside a page, cut between
            # pages (no end-of-stream page), and whole but with its last page damaged (a
            # bad CRC). Each whole "-full" file ends cleanly
            ext = {"ts": ".ts", "webm": ".webm"}.get(kind.split("_")[1], ".ogg")
            codecs = {".ts": [*x264, "-c:a", "aac", "-f", "mpegts"],
                      ".webm": ["-c:v", "libvpx", "-deadline", "realtime", "-g", "30",
                                "-c:a", "libopus", "-live", "1", "-f", "webm"],
                      ".ogg": ["-c:v", "libtheora", "-q:v", "5", "-c:a", "libvorbis",
                               "-f", "ogg"]}[ext]
            full = str(media_dir / f"kind-abrupt-full{ext}")
            if not os.path.exists(full):
                _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=4", "-f", "lavfi",
                      "-i", tone.format(f=440, d=4), *codecs, full])
            data = bytearray(Path(full).read_bytes())
            if kind == "abrupt_ogg_page":
                at, pages = 0, []
                while at < len(data):
                    pages.append(at)
                    at += 27 + data[at + 26] + sum(data[at + 27:at + 27 + data[at + 26]])
                data = data[:next(p for p in pages if p >= len(data) * 6 // 10)]
            elif kind == "abrupt_ogg_crc":
                data[-10] ^= 0xFF
            else:
                data = data[:len(data) * 6 // 10 + 7]
            out += ext
            Path(out).write_bytes(bytes(data))
        elif kind in ("still_screenrec", "still_screenrec_silent"):
            # a screen recording (MediaRecorder WebM) that sends no frame for 2 s while
            # nothing moves: the picture's packets have a gap, the sound goes on (or
            # there is no sound)
            sound = ([] if kind.endswith("silent") else
                     ["-f", "lavfi", "-i", tone.format(f=440, d=4), "-c:a", "libopus"])
            out += ".webm"
            _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=2", *sound, "-vf",
                  "setpts='if(gte(N,30),PTS+2/TB,PTS)'", "-fps_mode", "passthrough",
                  "-c:v", "libvpx", "-deadline", "realtime", "-live", "1", "-f", "webm", out])
        elif kind == "paused":  # live Matroska whose picture and sound both jump 3 s at 1 s
            out += ".mkv"
            _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=2", "-f", "lavfi",
                  "-i", tone.format(f=440, d=2), "-vf", "setpts='if(gte(N,30),PTS+3/TB,PTS)'",
                  "-af", "asetpts='if(gte(T,1),PTS+3/TB,PTS)'", "-fps_mode", "passthrough",
                  *x264, "-c:a", "libopus", "-live", "1", "-f", "matroska", out])
        elif kind == "rate_change":
            # two camcorder pieces joined with cat: AAC at 44.1 kHz, then at 48 kHz, the
            # second piece's time stamps following the first's
            parts = []
            for k, rate in enumerate((44100, 48000)):
                part = f"{out}-{k}.ts"
                _run([*ff, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=30:d=1", "-f", "lavfi",
                      "-i", f"sine=frequency=440:sample_rate={rate}:duration=1", *x264,
                      "-c:a", "aac", "-output_ts_offset", str(k), "-f", "mpegts", part])
                parts.append(Path(part).read_bytes())
            out += ".ts"
            Path(out).write_bytes(b"".join(parts))
        elif kind == "empty_audio":  # a sound track with no samples at all
            out += ".mkv"
            _run([*ff, "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i",
                  tone.format(f=440, d=2), "-af", "atrim=end_sample=0", *x264, "-c:a", "aac",
                  out])
        else:
            raise KeyError(kind)
        made[kind] = out
        return out

    return make


def _opus_family3(ogg: bytes) -> bytes:
    """An Ogg file whose Opus head (channel mapping family 2) is rewritten to family 3:
    the channel mapping table replaced by an identity demixing matrix (RFC 8486 section
    3.2: (streams + coupled) × channels 16-bit gains), its page's CRC made again."""
    out, at = bytearray(), 0
    while at < len(ogg):
        count = ogg[at + 26]
        length = 27 + count + sum(ogg[at + 27:at + 27 + count])
        page = bytearray(ogg[at:at + length])
        body = page[27 + count:]
        if body.startswith(b"OpusHead"):
            channels, streams, coupled = body[9], body[19], body[20]
            matrix = b"".join(struct.pack("<h", 32767 if row == column else 0)
                              for column in range(channels)
                              for row in range(streams + coupled))
            head = bytes(body[:18]) + bytes([3, streams, coupled]) + matrix
            page = bytearray(page[:26]) + bytes([1, len(head)]) + head
            page[22:26] = struct.pack("<I", _ogg_crc(bytes(page[:22]) + b"\0" * 4
                                                     + bytes(page[26:])))
        out += page
        at += length
    return bytes(out)


def _stereo_tones(path: str) -> tuple[dict[int, float], dict[int, float]]:
    """The energy (dB) of the 440 Hz and the 1 kHz tone in the left and in the right
    channel of ``path``'s sound."""
    raw = subprocess.run([ffmpeg_path(), "-v", "error", "-i", path, "-map", "0:a:0",
                          "-ac", "2", "-f", "f32le", "-"], capture_output=True,
                         check=True).stdout
    samples = np.frombuffer(raw, np.float32).reshape(-1, 2)
    freqs = np.fft.rfftfreq(samples.shape[0], 1 / 48000)
    sides = []
    for channel in (0, 1):
        spectrum = np.abs(np.fft.rfft(samples[:, channel] * np.hanning(samples.shape[0])))
        sides.append({f: 20 * np.log10(spectrum[np.abs(freqs - f) < 5].max() + 1e-9)
                      for f in (440, 1000)})
    return sides[0], sides[1]


def _normalize(src: str, dst: Path, fmt: TileFormat = TILE, **kwargs) -> str:
    normalize_clip(src, str(dst), probe(src), fmt, **kwargs)
    return str(dst)


# --- what a player shows ------------------------------------------------------------------------

@pytest.mark.parametrize("kind,coded,sar", [
    # stored 96 wide with 2:1 pixels: shown 192 wide
    ("anamorphic", (96, 108), "2:1"),
    # the VUI says square pixels, the container (Matroska display size, MP4 pasp) says
    # 16:9: players, like av_guess_sample_aspect_ratio, show the container's (the square
    # came out 3/4 as wide when the VUI's was taken)
    ("display_aspect_mkv", (144, 108), "4:3"),
    ("display_aspect_mp4", (144, 108), "4:3"),
])
def test_anamorphic_square_stays_square(kinds, tmp_path, read_frame, kind, coded, sar):
    src = kinds(kind)
    info = probe(src)
    assert ((info.coded_width, info.coded_height), info.sar) == (coded, sar)
    assert (info.width, info.height) == (192, 108)
    frame = read_frame(_normalize(src, tmp_path / "a.mp4"), 0.5)
    w, h = white_box(frame)
    assert frame.shape[:2] == (180, 320)
    assert w == pytest.approx(h, rel=0.06)  # shown square
    assert h == pytest.approx(100, abs=4)  # 60 of 108 rows, scaled to 180


def test_the_containers_sample_aspect_is_read_after_the_bitstreams():
    line = ("Input #0, matroska,webm, from 'x.mkv':\n  Duration: 00:00:03.02, start: 0.000000\n"
            "  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(tv, progressive), "
            "480x360 [SAR 4:3 DAR 16:9], SAR 1:1 DAR 4:3, 30 fps, 30 tbr, 1k tbn\n")
    assert parse_input_report(line).video.sar == (1, 1)
    assert parse_input_report(line.replace(", SAR 1:1 DAR 4:3", "")).video.sar == (4, 3)


def test_a_turn_that_is_not_a_right_angle_is_shown_as_stored(kinds, tmp_path, read_frame):
    """A display matrix turned by 30°: browsers and phones show the picture as stored;
    ffmpeg alone would turn it inside its frame (corners cut, the square 136 px wide)."""
    info = probe(kinds("odd_rotation"))
    assert (info.rotation, info.odd_rotation, info.width, info.height) == (0, 330, 192, 108)
    frame = read_frame(_normalize(info.path, tmp_path / "r.mp4"), 0.5)
    w, h = white_box(frame)
    assert w == pytest.approx(100, abs=4) and h == pytest.approx(100, abs=4)


@pytest.mark.parametrize("kind", ["hlg", "pq"])
def test_hdr_is_tone_mapped_to_sdr_bt709(kinds, tmp_path, read_frame, kind):
    src = kinds(kind)
    info = probe(src)
    assert info.colour.hdr == kind and info.colour.primaries == "bt2020"
    out = _normalize(src, tmp_path / "hdr.mp4")
    twin = _normalize(kinds("sdr"), tmp_path / "sdr.mp4")
    assert _colour_tags(out) == ("bt709", "bt709", "bt709", "tv")
    sat, luma = mean_saturation_and_luma(read_frame(out, 1.0))
    twin_sat, twin_luma = mean_saturation_and_luma(read_frame(twin, 1.0))
    # made smaller (as 4K is for a 1080p canvas) the fast chain runs (exact at the
    # chroma's size, a tone curve on the luma): against the exact chain at full size
    small = TileFormat(width=160, height=90, fps=30)
    fast, exact = tmp_path / "fast.mp4", tmp_path / "exact.mp4"
    _normalize(src, fast, small)
    with mock.patch("workers.media.normalize.colour_filter",
                    lambda info, picture, exact=False: colour_filter(info, picture, exact=True)):
        _normalize(src, exact, small)
    fast_frame, exact_frame = read_frame(str(fast), 1.0), read_frame(str(exact), 1.0)
    # the same colour on average; a 160x90 test pattern is nearly all sharp edges between
    # saturated colours, where the half-size part shows (the bench's 4K pattern: SSIM
    # 0.987, 1.6 of 255 off on average)
    for got, want in zip(mean_saturation_and_luma(fast_frame),
                         mean_saturation_and_luma(exact_frame), strict=True):
        assert got == pytest.approx(want, rel=0.03)
    assert ssim(str(fast), str(exact), at=1.0) > 0.9
    # untreated (no tone mapping, BT.2020 read as BT.709) it is a third paler
    assert sat == pytest.approx(twin_sat, rel=0.2)
    assert luma == pytest.approx(twin_luma, rel=0.25)


def _probe_cmd(path: str) -> list[str]:
    from workers.media.ffmpeg import ffmpeg_path

    return [ffmpeg_path(), "-hide_banner", "-i", path]


def _colour_tags(path: str) -> tuple:
    """The (matrix, primaries, transfer, range) a file's video stream is tagged with."""
    colour = parse_input_report(subprocess.run(
        [*_probe_cmd(path)], capture_output=True, text=True).stderr).video.colour
    return (colour.matrix, colour.primaries, colour.transfer, colour.range)


@pytest.mark.parametrize("kind", ["bt2020_sdr", "p3_sdr"])
def test_wide_gamut_sdr_is_converted_to_bt709_primaries(kinds, tmp_path, read_frame, kind):
    """BT.2020 or Display P3 primaries without an HDR transfer: converted as a
    colour-managed player shows them, not read as BT.709 (washed out: BT.2020 lost a third
    of the twin's saturation, P3 a quarter)."""
    src = kinds(kind)
    info = probe(src)
    assert info.colour.hdr is None
    assert info.colour.primaries == ("bt2020" if kind == "bt2020_sdr" else "smpte432")
    out = _normalize(src, tmp_path / "w.mp4")
    assert _colour_tags(out) == ("bt709", "bt709", "bt709", "tv")
    sat, luma = mean_saturation_and_luma(read_frame(out, 1.0))
    twin_sat, twin_luma = mean_saturation_and_luma(
        read_frame(_normalize(kinds("sdr"), tmp_path / "sdr.mp4"), 1.0))
    # read as BT.709, BT.2020 came out at 0.65 of the twin's saturation and 1.22 of its
    # luma; converted, testsrc2's pure colours lose a little at their 4:2:0 edges
    assert sat == pytest.approx(twin_sat, rel=0.1)
    assert luma == pytest.approx(twin_luma, rel=0.05)


@pytest.mark.parametrize("kind", ["bt601", "bt601_tv"])
def test_bt601_and_full_range_look_like_the_bt709_twin(kinds, tmp_path, read_frame, kind):
    src = kinds(kind)
    info = probe(src)
    assert info.colour.matrix == "smpte170m"
    assert info.colour.range == ("pc" if kind == "bt601" else "tv")
    out = read_frame(_normalize(src, tmp_path / "601.mp4"), 1.0).astype(int)
    twin = read_frame(_normalize(kinds("sdr"), tmp_path / "709.mp4"), 1.0).astype(int)
    # read as BT.709 limited range, BT.601 full-range pixels are off by 15+ on average
    assert np.abs(out - twin).mean() < 6


@pytest.mark.parametrize("kind", ["ambisonic_mp4", "ambisonic_webm"])
def test_360_ambisonic_sound_is_decoded_to_stereo_left_stays_left(kinds, tmp_path, kind):
    """A VR camera's 4-channel first-order ambisonic Opus (mapping family 2) failed with
    a vague "could not convert" (the resampler cannot mix ambisonics down: red team F1).
    It is decoded to stereo as two virtual cardioids aimed left and right: the tone at
    the left plays on the left (the other at least 30 dB under it), the one at the
    right on the right, and the sound is measured after the decode."""
    info = probe(kinds(kind))
    assert (info.ambisonic_order, info.channels) == (1, 4)
    out = _normalize(info.path, tmp_path / "amb.mp4", meter=True)
    left, right = _stereo_tones(out)
    assert left[440] - left[1000] > 30 and right[1000] - right[440] > 30
    assert left[440] == pytest.approx(right[1000], abs=3)  # (Opus shares its bits unevenly)


def test_a_head_locked_stereo_pair_after_the_ambisonics_is_added_as_it_is(kinds, tmp_path):
    """Six channels: first-order ambisonics with a tone ahead, then a head-locked stereo
    pair (RFC 8486's non-diegetic channels) with a tone on its left only: the one ahead
    plays on both sides, the head-locked one on the left only."""
    info = probe(kinds("ambisonic_headlocked"))
    assert (info.ambisonic_order, info.ambisonic_extra, info.channels) == (1, 2, 6)
    left, right = _stereo_tones(_normalize(info.path, tmp_path / "h.mp4"))
    assert left[440] == pytest.approx(right[440], abs=1)
    assert left[1000] - right[1000] > 30


@pytest.mark.parametrize("layout, order, extra, channels", [
    ("ambisonic 1", 1, 0, 4), ("ambisonic 1+stereo", 1, 2, 6), ("ambisonic 3", 3, 0, 16),
    ("ambisonic 4", 4, 0, 25)])
def test_ambisonic_layouts_are_read_and_capped_by_their_order(layout, order, extra, channels):
    """ffmpeg names an ambisonic track by its order (and a head-locked pair after it): the
    channels are counted from it, and a higher order than Tutti decodes gets one reason
    (the plain channel cap of 8 does not apply: the sound is decoded to stereo)."""
    from workers.media.probe import _check_sound

    report = parse_input_report(
        "Input #0, ogg, from 'x.ogg':\n  Duration: 00:00:02.00, start: 0.000000\n"
        f"  Stream #0:0: Audio: opus, 48000 Hz, {layout}, fltp\n")
    audio = report.audio
    assert (audio.ambisonic_order, audio.ambisonic_extra, audio.channels) == (
        order, extra, channels)
    if order <= ProbeLimits().max_ambisonic_order:
        _check_sound(audio, ProbeLimits())
    else:
        with pytest.raises(ProbeRejected) as caught:
            _check_sound(audio, ProbeLimits())
        assert caught.value.code == "unsupported_audio" and "stereo" in caught.value.reason


def test_ambisonics_ffmpeg_cannot_decode_gets_a_plain_reason(kinds):
    """Opus with a demixing matrix (mapping family 3): ffmpeg shows it as "4.0" and
    cannot open its decoder. Refused at the probe with a reason that names the sound and
    says what to do, not "damaged" nor a conversion failure."""
    with pytest.raises(ProbeRejected) as caught:
        probe(kinds("ambisonic_family3"))
    assert caught.value.code == "unsupported_audio"
    assert "sound" in caught.value.reason and "stereo" in caught.value.reason
    assert "ffmpeg" not in caught.value.reason.lower()


def test_default_audio_track_is_played_not_a_disabled_first_one(kinds, tmp_path):
    src = kinds("two_tracks")
    report = parse_input_report(subprocess.run(_probe_cmd(src), capture_output=True,
                                               text=True).stderr)
    first, second = [s for s in report.streams if s.kind == "audio"]
    assert not first.default and second.default
    info = probe(src)
    assert info.audio_stream == second.index
    out = _normalize(src, tmp_path / "t.mp4")
    assert dominant_frequency(out) == pytest.approx(1000, abs=15)


def _sound_holes(path: str, window: float = 0.05) -> list[float]:
    """Where (seconds) the sound of ``path`` is silent for a ``window`` or more."""
    samples = decode_sound(path)
    n = int(48000 * window)
    rms = [float(np.sqrt(np.mean(samples[i:i + n] ** 2)))
           for i in range(0, samples.size - n + 1, n)]
    return [k * window for k, level in enumerate(rms) if level < 0.02]


@pytest.mark.parametrize("kind", ["size_change", "size_change_portrait"])
def test_a_picture_that_changes_size_keeps_its_sound_and_its_shape(kinds, tmp_path,
                                                                   read_frame, kind):
    """Chrome's MediaRecorder changes the picture size when the bandwidth changes: the
    sound stays continuous (no silence inserted at the change, so nothing after it goes
    out of sync) and each part is shown with its own shape, fitted into the frame."""
    src = kinds(kind)
    info = probe(src)
    assert (info.width, info.height) == (192, 108)  # what the header says: the first part
    out = _normalize(src, tmp_path / "n.mp4")
    normalized = probe(out, ANY)
    assert normalized.duration == pytest.approx(info.duration, abs=0.1)
    assert normalized.audio_end == pytest.approx(info.duration, abs=0.1)
    assert _sound_holes(out) == []
    assert dominant_frequency(out) == pytest.approx(440, abs=10)
    for t in (0.5, 1.5):  # the first part, then the second
        frame = read_frame(out, t)
        assert frame.shape[:2] == (180, 320)
        w, h = white_box(frame)
        assert w == pytest.approx(h, abs=4), f"the square is {w}x{h} at {t} s"
    picture = read_frame(out, 1.5).mean(axis=(0, 2)) > 40  # grey picture, black bars
    expected = 320 if kind == "size_change" else round(180 * 108 / 192)
    assert picture.sum() == pytest.approx(expected, abs=6)


def test_the_default_video_track_is_shown_not_a_disabled_preview(kinds, tmp_path, read_frame):
    src = kinds("preview_track_first")
    info = probe(src)  # the 160x90 preview alone would be refused as too small
    assert (info.video_stream, info.width, info.height) == (1, 192, 108)
    frame = read_frame(_normalize(src, tmp_path / "v.mp4"), 1.0).astype(int)
    red, green, blue = frame.reshape(-1, 3).mean(axis=0)
    assert not (blue > 150 and red < 60 and green < 60)  # not the blue preview
    assert frame.std() > 30  # testsrc2's colour bars and moving shapes


def test_mpeg_program_stream_ends_where_it_plays(kinds, tmp_path):
    """Most MPEG-PS packets carry no pts; their ends come from the dts (once read as
    -2^63 ticks, a video end of 1e14 s)."""
    info = probe(kinds("mpeg_ps"))
    assert info.video_end == pytest.approx(2.0, abs=0.1)
    assert info.audio_end == pytest.approx(2.0, abs=0.1)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    out = probe(_normalize(info.path, tmp_path / "ps.mp4"), ANY)
    assert out.duration == pytest.approx(2.0, abs=0.1)


# --- length from what plays -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cut", "cut_avi", "cut_fragmented"])
def test_cut_off_upload_is_rejected_as_incomplete(kinds, kind):
    """Cut at 60 %: an MP4 by its stated length; an AVI without its index by the frame
    count of its header; a fragmented MP4 (no total length) by its last fragment's box
    running past the end of the file. Whole, each is accepted."""
    with pytest.raises(ProbeRejected) as caught:
        probe(kinds(kind))
    assert caught.value.code in (("incomplete", "unreadable") if kind == "cut"
                                 else ("incomplete",))
    assert "upload" in caught.value.reason.lower() and "again" in caught.value.reason
    whole = probe(kinds(kind).rsplit(".", 1)[0] + "-full." + kinds(kind).rsplit(".", 1)[1])
    assert whole.duration == pytest.approx(4.0, abs=0.1)


@pytest.mark.parametrize("kind", ["abrupt_ts", "abrupt_webm", "abrupt_ogg", "abrupt_ogg_page",
                                  "abrupt_ogg_crc"])
def test_a_file_that_states_no_length_and_ends_abruptly_is_a_check(kinds, tmp_path, kind):
    """An MPEG-TS, a live WebM and an Ogg state no length: cut at 60 %, each plays about
    2.4 of its 4 s and nothing says more was sent, so they were kept at that with no
    word (red team F2). Their broken end tells (a TS packet or a WebM block cut, an Ogg
    page cut, missing its end-of-stream page, or failing its CRC): the clip is kept at
    the length that decodes, and the participant is told to upload again if the
    performance went on. The whole files end cleanly and get no such check."""
    src = kinds(kind)
    info = probe(src)
    assert info.ends_abruptly
    assert info.stated_duration is None or info.stated_duration == pytest.approx(
        info.duration, abs=0.5)
    out = probe(_normalize(src, tmp_path / "n.mp4"), ANY)
    assert out.duration == pytest.approx(info.duration, abs=0.1)  # what decodes
    if kind != "abrupt_ogg_crc":
        assert info.duration < 3.0
    found = intake_checks(info, canvas=(320, 180), guide_duration=None, measure=False)
    abrupt = [c for c in found if c.code == "ends_abruptly"]
    assert len(abrupt) == 1 and abrupt[0].severity == "warning"
    assert "upload the video again" in abrupt[0].message
    assert f"0:0{round(info.duration)}" in abrupt[0].message
    whole = probe(str(Path(src).parent / f"kind-abrupt-full{Path(src).suffix}"))
    assert not whole.ends_abruptly
    assert whole.duration == pytest.approx(4.0, abs=0.1)
    assert "ends_abruptly" not in [c.code for c in length_checks(whole, None)]


def test_a_browser_recording_that_ends_cleanly_has_no_abrupt_end_check(kinds):
    """A MediaRecorder WebM ends after whole blocks (a take cut off by a crash keeps its
    whole chunks): nothing is broken, nothing is said."""
    info = probe(kinds("live_webm"))
    assert not info.ends_abruptly
    assert length_checks(info, None) == []


def test_a_file_whose_tail_does_not_decode_is_rejected_as_incomplete(kinds, tmp_path):
    """Its packets are all there (zeros), so the probe's packet count says 4 s; the
    normalize decode refuses two seconds of them: rejected with "upload again", not kept
    with a frozen picture and silence."""
    src = kinds("zero_tail")
    info = probe(src)
    assert info.duration == pytest.approx(4.0, abs=0.1)
    with pytest.raises(ProbeRejected) as caught:
        normalize_clip(src, str(tmp_path / "n.mp4"), info, TILE)
    assert caught.value.code == "incomplete"
    assert "upload the video again" in caught.value.reason
    assert os.listdir(tmp_path) == []


def test_a_damaged_middle_the_demuxer_skips_is_rejected_as_incomplete(kinds):
    """A MediaRecorder WebM (no stated length) with zeros in its middle: the demuxer
    skips to the next cluster, so every packet left decodes, and the picture and the
    sound both jump 1.9 s (a frozen picture and silence once normalized). The gap in the
    sound's packets is missing, as a cut tail is: rejected with "upload again"."""
    assert probe(kinds("live_webm")).duration == pytest.approx(4.0, abs=0.1)
    with pytest.raises(ProbeRejected) as caught:
        probe(kinds("live_webm_zero_middle"))
    assert caught.value.code == "incomplete"
    assert "both the picture and the sound stop" in caught.value.reason
    assert "upload the video again" in caught.value.reason


def test_a_recording_paused_without_closing_the_gap_is_rejected(kinds):
    """Picture and sound both jump 3 s at 1 s (a recorder paused and resumed, a tab
    throttled in the background): 3 s of a frozen picture and silence, not a take."""
    with pytest.raises(ProbeRejected) as caught:
        probe(kinds("paused"))
    assert caught.value.code == "incomplete"
    assert "about 3.0 seconds (from 1.0 seconds on)" in caught.value.reason
    assert "without pausing" in caught.value.reason


@pytest.mark.parametrize("kind", ["still_screenrec", "still_screenrec_silent"])
def test_a_screen_recording_with_still_parts_is_kept_whole(kinds, tmp_path, kind):
    """No frame for 2 s while nothing moves is how screen recorders save space: a gap in
    the picture's packets alone (the sound goes on, or there is none) is not damage. The
    last frame is held, and the sound plays on."""
    info = probe(kinds(kind))
    assert info.duration == pytest.approx(4.0, abs=0.1)
    out = _normalize(info.path, tmp_path / "still.mp4")
    assert probe(out, ANY).duration == pytest.approx(4.0, abs=0.1)
    if info.has_audio:
        assert _sound_holes(out) == []


def test_a_sample_rate_that_changes_partway_stays_one_continuous_sound(kinds, tmp_path,
                                                                       ffmpeg_exe):
    """44.1 kHz then 48 kHz (pieces joined with cat): ffmpeg rebuilds the sound's graph at
    the change, and a resampler padding from t=0 wrote the second piece after 1 s of
    silence, in packets 1 tick long (3 s of samples for 2 s of picture). The sound is
    one continuous 48 kHz track, as long as the picture, whose time stamps agree with its
    samples (the joined pieces overlap by a few AAC frames, under 0.1 s)."""
    src = kinds("rate_change")
    info = probe(src)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    out = _normalize(src, tmp_path / "rate.mp4")
    samples = decode_sound(out)
    assert samples.size / 48000 == pytest.approx(probe(out, ANY).video_end, abs=0.1)
    assert _sound_holes(out)[:-1] == []  # (the last window may be the encoder's padding)
    listing = subprocess.run(
        [ffmpeg_exe, "-v", "error", "-i", out, "-map", "0:a", "-c", "copy", "-f", "framecrc",
         "-"], capture_output=True, text=True, check=True).stdout
    durations = [int(line.split(",")[3]) for line in listing.splitlines()
                 if line and not line.startswith("#")]
    skipped = sum(1024 - d for d in durations[:-1])  # samples the time stamps pass over
    assert skipped / 48000 < 0.1


@pytest.mark.parametrize("kind, code", [("picture_short", "picture_stops_early"),
                                        ("sound_short", "sound_stops_early")])
def test_picture_or_sound_stopping_early_is_a_check(kinds, tmp_path, kind, code):
    src = kinds(kind)
    info = probe(src)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    out = probe(_normalize(src, tmp_path / "s.mp4"), ANY)
    assert out.duration == pytest.approx(info.duration, abs=0.1)  # the length that plays
    codes = [c.code for c in length_checks(info, None)]
    assert codes == [code]


# --- caps on what a header claims -------------------------------------------------------------

def test_pixel_rate_cap_refuses_8k30_before_decoding_and_admits_4k60():
    """8K at 30 fps took minutes to convert; 4K60 phone clips (and DCI 4K, 1080p240)
    stay within the cap."""
    cap = ProbeLimits().max_pixel_rate
    for width, height, fps in ((3840, 2160, 60), (4096, 2160, 60), (1920, 1080, 240)):
        assert width * height * fps <= cap
    assert 7680 * 4320 * 30 > cap


def test_pixel_bomb_gets_one_readable_reason(kinds):
    path = kinds("pixel_bomb")
    assert os.path.getsize(path) < 200_000
    with pytest.raises(ProbeRejected) as caught:
        probe(path)
    assert caught.value.code == "too_many_pixels"
    reason = caught.value.reason
    assert "7680×4320" in reason and "30 frames per second" in reason
    assert "upload it again" in reason


@pytest.mark.parametrize("kind, code, words", [
    ("fps_bomb", "unsupported_format", "frames per second"),
    ("fps_bomb_mkv", "unsupported_format", "frames per second"),
    ("tiny", "frame_too_small", "96 pixels"),
    ("low_rate", "unsupported_audio", "4000 Hz"),
    ("many_channels", "unsupported_audio", "10 channels"),
])
def test_caps_give_one_readable_reason_each(kinds, kind, code, words):
    path = kinds(kind)
    if kind.startswith("fps_bomb"):
        assert os.path.getsize(path) < 200_000
    with pytest.raises(ProbeRejected) as caught:
        probe(path)
    assert caught.value.code == code
    assert words in caught.value.reason and "upload it again" in caught.value.reason


def test_a_picture_that_grows_past_the_caps_partway_is_refused_not_decoded(kinds, tmp_path):
    """The caps hold for the whole stream, not only its first picture: a clip that
    changes size to 8K at 30 fps partway (a new SPS in-band) is refused with the size
    reason by the capped decoder, and nothing is left behind."""
    src = kinds("grows_past_cap")
    assert os.path.getsize(src) < 200_000
    info = probe(src)  # the header shows the first, small picture
    assert (info.width, info.height) == (192, 108)
    with pytest.raises(ProbeRejected) as caught:
        normalize_clip(src, str(tmp_path / "n.mp4"), info, TILE)
    assert caught.value.code == "frame_too_large"
    assert "7680×4320" in caught.value.reason and "upload it again" in caught.value.reason
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["h263_qcif", "xvid_qvga", "flv_qcif"])
def test_small_mpeg4_h263_and_flv_pictures_play(kinds, tmp_path, read_frame, kind):
    """Their decoders allocate padded edges (a QCIF picture asks for 320×280): the
    probe's capped decode leaves room for that, and they are normalized."""
    info = probe(kinds(kind))
    out = probe(_normalize(info.path, tmp_path / "o.mp4"), ANY)
    assert out.duration == pytest.approx(2.0, abs=0.15)
    assert read_frame(str(tmp_path / "o.mp4"), 1.0).std() > 30  # testsrc2, not black


# --- the detail a layout can show -------------------------------------------------------------

def test_a_large_source_keeps_the_canvas_size_a_small_one_is_not_blown_up(kinds, tmp_path):
    fmt = TileFormat(width=1280, height=720, fps=30, min_width=640, min_height=360)
    hd = probe(_normalize(kinds("hd"), tmp_path / "hd.mp4", fmt), ANY)
    assert (hd.width, hd.height) == (1280, 720)
    small = probe(_normalize(kinds("sdr"), tmp_path / "small.mp4", fmt), ANY)
    assert (small.width, small.height) == (640, 360)  # 192x108: at least the tile
    assert fmt.frame_size(960, 540) == (960, 540)  # shown at its own size
    assert fmt.frame_size(540, 960) == (1280, 720)  # a tall one fills the height
    assert fmt.frame_size(3840, 2160) == (1280, 720)


def test_a_full_frame_spotlight_keeps_the_detail(kinds, tmp_path):
    """A performer shown full frame is scaled once (normalized at the canvas size), not
    shrunk to a tile and blown up again: SSIM >= 0.95 against the source scaled once."""
    from workers.media.render import render
    from workers.media.spec import parse_spec

    src = kinds("hd")  # 1280x720, a 640x360 canvas here (1080p in bench/intake)
    scores = {}
    for label, fmt in (("canvas", TileFormat(width=640, height=360, fps=30, min_width=320,
                                             min_height=180)),
                       ("old tile", TileFormat(width=320, height=180, fps=30))):
        clip = _normalize(src, tmp_path / f"{label}.mp4", fmt)
        spec = parse_spec({"version": 1, "canvas": {"width": 640, "height": 360, "fps": 30},
                           "layout": {"type": "spotlight", "gap": 0,
                                      "featured": [{"clip": "a", "start": 0, "end": 60}]},
                           "audio": {"mode": "mix"}, "video": {"preset": "ultrafast",
                                                               "crf": 18},
                           "clips": [{"id": "a", "path": clip}]})
        out = str(tmp_path / f"spot-{label}.mp4")
        render(spec, out)
        scores[label] = ssim(out, src, size="640x360", at=0.5)
    assert scores["canvas"] >= 0.95
    assert scores["canvas"] > scores["old tile"] + 0.01


def test_contact_sheet_has_nine_frames_from_the_same_pass(kinds, tmp_path):
    sheet = tmp_path / "sheet.jpg"
    _normalize(kinds("sdr"), tmp_path / "c.mp4", sheet=str(sheet))
    from PIL import Image

    with Image.open(sheet) as image:
        assert image.format == "JPEG"
        assert image.size == (3 * 320 + 2 * 2, 3 * 180 + 2 * 2)
        cells = np.asarray(image.convert("L")).astype(int)
    # testsrc2 moves: the nine cells are different moments
    tiles = [cells[r * 182:r * 182 + 180, c * 322:c * 322 + 320] for r in range(3)
             for c in range(3)]
    assert all(t.mean() > 20 for t in tiles)
    assert np.abs(tiles[0] - tiles[8]).mean() > 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "sheet.jpg"]


def test_the_stills_are_keyframes_so_each_seek_decodes_one_frame(kinds, tmp_path):
    """The frames of the contact sheet and the thumbnail are made keyframes in the
    normalize encode (each seek then decodes one frame, not up to a two-second GOP), and
    the seeks go to exactly those frames."""
    from workers.media.ffmpeg import run_ffmpeg
    from workers.media.normalize import sheet_times, thumbnail_time

    src = kinds("sdr")
    clip = _normalize(src, tmp_path / "c.mp4", sheet=str(tmp_path / "s.jpg"),
                      thumbnail=str(tmp_path / "t.jpg"))
    listing = run_ffmpeg(["-v", "error", "-i", clip, "-map", "0:v", "-c", "copy",
                          "-f", "framecrc", "pipe:1"], stdout=None).decode()
    # framecrc: stream, dts, pts, duration, size, crc[, F=flags]; the flags are written
    # only when they are not "keyframe" alone
    tb = next(line for line in listing.splitlines() if line.startswith("#tb 0:"))
    num, den = (int(v) for v in tb.split(": ")[1].split("/"))
    keys = set()
    for row in listing.splitlines():
        fields = [f.strip() for f in row.split(",")]
        if row.startswith("#") or len(fields) < 6:
            continue
        flags = int(fields[6][2:], 16) if len(fields) > 6 else 1
        if flags & 1:
            keys.add(round(int(fields[2]) * num / den * 30))
    duration = probe(src).duration
    wanted = {round(t * 30) for t in (*sheet_times(duration, 30), thumbnail_time(duration, 30))}
    assert len(wanted) >= 9 and wanted <= keys
    # times on the frame grid, never after the frame they name
    assert all(abs(t * 30 - round(t * 30)) < 1e-3 and t <= round(t * 30) / 30
               for t in sheet_times(duration, 30))


# --- checks for the participant ---------------------------------------------------------------

@pytest.mark.parametrize("kind, expected", [("loud", {"clipping"}), ("quiet", {"too_quiet"}),
                                            ("silent", {"silent"}), ("sdr", {"silent"})])
def test_sound_checks(kinds, kind, expected):
    info = probe(kinds(kind))
    codes = {c.code for c in intake_checks(info, canvas=(1280, 720), guide_duration=None)}
    assert codes == expected


def test_a_sound_track_with_no_samples_is_silent_not_clipping(kinds, tmp_path):
    """The true peak of no samples is not 0 dBTP: no clipping advice beside "silent"."""
    info = probe(kinds("empty_audio"))
    assert info.has_audio
    codes = {c.code for c in intake_checks(info, canvas=(1280, 720), guide_duration=None)}
    assert "silent" in codes and "clipping" not in codes
    done = normalize_clip(info.path, str(tmp_path / "n.mp4"), info, TILE, meter=True)
    assert done.sound is not None and done.sound.true_peak == float("-inf")
    assert "clipping" not in {c.code for c in sound_checks(done.sound, True)}


def test_left_and_right_cancelling_in_mono_is_a_check(kinds, tmp_path):
    """Left = -right sums to silence in mono: said in plain words, measured alone and in
    the normalize pass; two unrelated channels (3 dB less in mono) are not flagged."""
    info = probe(kinds("antiphase"))
    assert info.channels == 2
    checks = intake_checks(info, canvas=(1280, 720), guide_duration=None)
    assert [c.code for c in checks] == ["antiphase"]
    assert "cancel each other" in checks[0].message and "mono" in checks[0].message
    done = normalize_clip(info.path, str(tmp_path / "n.mp4"), info, TILE, meter=True)
    assert done.sound is not None and done.sound.mono_rms_level is not None
    assert done.sound.rms_level - done.sound.mono_rms_level > 30
    assert [c.code for c in intake_checks(info, canvas=(1280, 720), guide_duration=None,
                                          sound=done.sound)] == ["antiphase"]
    wide = probe(kinds("wide_stereo"))
    assert intake_checks(wide, canvas=(1280, 720), guide_duration=None) == []


def test_sound_measure_reads_the_played_track(kinds):
    info = probe(kinds("loud"))
    stats = measure_sound(info.path, info.audio_stream)
    assert stats.true_peak >= -0.1 and stats.peak_level >= -0.01


@pytest.mark.parametrize("kind", ["loud", "quiet", "two_tracks"])
def test_the_normalize_pass_measures_the_sound_and_takes_the_thumbnail(kinds, tmp_path, kind):
    src = kinds(kind)
    info = probe(src)
    thumb = tmp_path / "thumb.jpg"
    done = normalize_clip(src, str(tmp_path / "n.mp4"), info, TILE, thumbnail=str(thumb),
                          meter=True)
    alone = measure_sound(src, info.audio_stream)
    assert done.sound is not None
    assert done.sound.integrated == pytest.approx(alone.integrated, abs=0.5)
    assert done.sound.true_peak == pytest.approx(alone.true_peak, abs=0.5)
    assert done.thumbnail == str(thumb) and thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.mp4", "thumb.jpg"]


def test_portrait_in_a_landscape_campaign_is_a_warning(kinds):
    info = probe(kinds("portrait"))
    checks = orientation_checks(info, (1280, 720))
    assert [(c.code, c.severity) for c in checks] == [("portrait", "warning")]
    assert orientation_checks(info, (720, 1280)) == []


def test_length_against_the_guide(kinds):
    info = probe(kinds("portrait"))  # 2 s
    assert [c.code for c in length_checks(info, 10.0)] == ["shorter_than_guide"]
    assert length_checks(info, 2.2) == []
    assert [c.code for c in length_checks(info, 0.5)] == []  # 1.5 s over: fine
    long_info = type(info)(**{**info.__dict__, "duration": 200.0, "video_end": 200.0,
                              "audio_end": 200.0})
    assert [(c.code, c.severity) for c in length_checks(long_info, 60.0)] == [
        ("longer_than_guide", "info")]


def test_song_not_heard_and_merging():
    assert [c.code for c in sync_checks("none", 0.0)] == ["song_not_heard"]
    assert sync_checks("leak", 0.8) == []
    stored = [{"code": "portrait", "severity": "warning", "message": "m"},
              {"code": "song_not_heard", "severity": "warning", "message": "old"}]
    merged = merge(stored, sync_checks("clap", 0.9), replace=["song_not_heard"])
    assert merged == stored[:1]
    assert merge([], [Check("x", "info", "y")]) == [{"code": "x", "severity": "info",
                                                     "message": "y"}]


def test_sound_check_rules_on_numbers():
    assert sound_checks(SoundStats(-20.0, -3.0, -3.0, 1), True) == []
    assert [c.code for c in sound_checks(SoundStats(-20.0, -3.0, 0.0, 50), True)] == [
        "clipping"]
    assert [c.code for c in sound_checks(None, False)] == ["silent"]
    assert all(c.message.endswith(".") and c.severity in ("warning", "info")
               for c in sound_checks(SoundStats(float("-inf"), float("-inf"), float("-inf"),
                                                0), True))


# --- bad input: a reason each, no hang, nothing left behind -----------------------------------

def _children() -> set[int]:
    kids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                kids |= {int(k) for k in f.read().split()}
        except OSError:  # a thread that has just ended
            continue
    return kids


@pytest.mark.parametrize("kind", ["cut", "cut_avi", "cut_fragmented", "fps_bomb",
                                  "fps_bomb_mkv", "tiny", "low_rate", "many_channels",
                                  "pixel_bomb", "ambisonic_family3"])
def test_bad_input_leaves_no_process_and_no_temp_file(kinds, tmp_path, kind):
    src = tmp_path / ("upload" + Path(kinds(kind)).suffix)
    src.write_bytes(Path(kinds(kind)).read_bytes())
    before = _children()
    with pytest.raises(ProbeRejected) as caught:
        probe(str(src), ProbeLimits(timeout=30))
    assert caught.value.reason.endswith(".") and len(caught.value.reason) > 40
    assert _children() - before == set()
    assert os.listdir(tmp_path) == [src.name]
