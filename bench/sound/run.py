"""Sound benchmark: what the sound editor's mix costs beside today's mix, and what the
clean-up does to each take's noise floor and hum, on the same generated takes.

    .venv/bin/python -m bench.sound [--takes 16,75] [--seconds 90] [--repeat 1]
        [--cache DIR] [--engines ffmpeg,numpy]

Takes (bench/out/sound-takes, cached): numpy voices, one note sequence per part, each take
with its own level (up to 12 dB off), noise floor and, one take in three, mains hum at
50 or 60 Hz with its harmonics; muxed as the normalized clips are (AAC 48 kHz stereo,
a small H.264 picture). Two mixes of the same takes by ``render_audio``:

- **today**: every take at 0 dB, summed, mastered (what the renders did before);
- **sound editor**: loudness match per part (gains from the measured loudness), a time map
  on every take (:func:`bench_time_map`: tempo and shifts as a fit gives a take that rushes
  and drags), pan spread over the stage, clean-up on every take (hum notches where hum was
  found, afftdn), one shared room (1.5 s) on the sum, mastered;
- **floor**: the takes only decoded and summed, one ffmpeg per core (no mix costs less).

Each mix by both engines (``--engines``, ``render.MIX_ENGINE``): **ffmpeg**, the
filtergraphs (before), and **numpy**, :mod:`workers.media.mixdown` (after).
For each, wall time, CPU seconds of the ffmpeg processes (getrusage of the children) and
the seconds per minute of music. Measuring the takes (loudness, hum, noise floor: done
once per take at intake) is timed apart. Then a table of the takes with hum or the most
noise: noise floor and hum (relative to the notes) before and after the clean-up.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import time
import wave

import numpy as np

from workers.media.audio import decode_audio
from workers.media.ffmpeg import ffmpeg_path
from workers.media.plan import plan_render
from workers.media.render import render_audio
from workers.media.sound import (
    ANALYSIS_RATE,
    analyze_take,
    clean_take,
    hum_level_db,
    match_levels,
    noise_floor_db,
)
from workers.media.spec import parse_spec

RATE = 48000
PARTS = ("soprano", "alto", "tenor", "bass")
ROOTS = {"soprano": 523.25, "alto": 392.0, "tenor": 261.63, "bass": 130.81}
STEPS = (0, 2, 4, 5, 7, 9, 11, 12)


def _take(index: int, seconds: float) -> tuple[np.ndarray, dict]:
    """Take ``index``: its part's melody (one note a second, vibrato, an envelope), at a
    level, with noise and maybe hum. Returns (mono samples, facts)."""
    rng = np.random.default_rng(1000 + index)
    part = PARTS[index % len(PARTS)]
    t = np.arange(int(RATE * seconds)) / RATE
    note = np.floor(t).astype(int)
    freqs = ROOTS[part] * 2 ** (np.array(STEPS)[note % len(STEPS)] / 12)
    vibrato = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(freqs * vibrato) / RATE
    within = t - note
    envelope = np.clip(within / 0.05, 0, 1) * np.clip((0.85 - within) / 0.1, 0, 1)
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * envelope
    level_db = rng.uniform(-12, 0)
    x = 0.15 * 10 ** (level_db / 20) * voice
    noise_db = rng.uniform(-70, -45)
    x += 10 ** (noise_db / 20) * rng.standard_normal(t.size)
    hum_hz = (50.0, 60.0)[index % 2] if index % 3 == 0 else 0.0
    if hum_hz:
        for k in range(1, 11):
            x += 10 ** (rng.uniform(-48, -38) / 20) / k * np.sin(2 * np.pi * hum_hz * k * t + k)
    return x, {"part": part, "level_db": level_db, "noise_db": noise_db, "hum_hz": hum_hz}


def _facts(index: int) -> dict:
    """The facts :func:`_take` gives take ``index``, without making its samples (the
    same first draws of the same generator)."""
    rng = np.random.default_rng(1000 + index)
    rng.uniform(0, 6)  # the vibrato's phase
    level_db = rng.uniform(-12, 0)
    noise_db = rng.uniform(-70, -45)
    hum_hz = (50.0, 60.0)[index % 2] if index % 3 == 0 else 0.0
    return {"part": PARTS[index % len(PARTS)], "level_db": level_db, "noise_db": noise_db,
            "hum_hz": hum_hz}


def make_takes(count: int, seconds: float, folder: str) -> list[dict]:
    """The takes as MP4 files (cached by index and length) and their facts."""
    os.makedirs(folder, exist_ok=True)
    takes = []
    for i in range(count):
        facts = _facts(i)
        path = os.path.join(folder, f"take-{i:03d}-{seconds:g}s.mp4")
        if not os.path.exists(path):
            x, facts = _take(i, seconds)
            wav = path + ".wav"
            with wave.open(wav, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
            subprocess.run([ffmpeg_path(), "-y", "-v", "error", "-f", "lavfi", "-i",
                            f"color=c=gray:s=64x36:r=5:d={seconds}", "-i", wav,
                            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                            "-b:a", "160k", "-ac", "2", "-shortest", path + ".tmp.mp4"],
                           check=True, capture_output=True)
            os.replace(path + ".tmp.mp4", path)
            os.remove(wav)
        takes.append({"path": path, **facts})
    return takes


def _timed(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children) of ``work()``."""
    before = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.monotonic()
    work()
    wall = time.monotonic() - start
    after = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime
              for a, b in zip(after, before, strict=True))
    return wall, cpu


def bench_time_map(index: int, seconds: float) -> list[list[float]]:
    """A time map such as a fit gives a take that rushes and drags (its cost is what
    counts here, the takes are not really off): a steady tempo within ±1 %, and every
    2 s a new local shift within ±60 ms reached at 2.5 % of tempo at most; a knot every
    0.25 s of guide time."""
    rng = np.random.default_rng(2000 + index)
    tempo = 1 + rng.uniform(-0.01, 0.01)
    knots, shift, target = [], 0.0, 0.0
    for k in range(int(seconds / 0.25) + 1):
        g = k * 0.25
        if k % 8 == 0 and k:
            target = float(rng.uniform(-0.06, 0.06))
        shift += max(-0.025 * 0.25, min(0.025 * 0.25, target - shift))
        knots.append([round(g, 5), round(0.05 + tempo * g + shift, 5)])
    return knots


def _spec(takes: list[dict], measured: list, seconds: float, editor: bool) -> dict:
    clips = []
    levels = match_levels((f"t{i}", take["part"], sound.loudness_lufs)
                          for i, (take, sound) in enumerate(zip(takes, measured, strict=True)))
    for i, (take, sound) in enumerate(zip(takes, measured, strict=True)):
        clip = {"id": f"t{i}", "path": take["path"], "part": take["part"]}
        if editor:
            knots = bench_time_map(i, seconds)
            clip.update(offset=knots[0][1], time_map=knots)
            clip.update(gain_db=levels[f"t{i}"],
                        pan=round(-0.8 + 1.6 * (i % 9) / 8, 3),
                        hum_hz=sound.hum_hz, denoise=True,
                        noise_floor_db=round(sound.noise_floor_db, 2))
        clips.append(clip)
    audio = {"mode": "mix"}
    if editor:
        audio.update(reverb_seconds=1.5, reverb_wet_db=-14.0)
    return {"version": 1, "canvas": {"width": 1280, "height": 720, "fps": 5},
            "audio": audio, "clips": clips, "duration": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sound", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", default="16,75")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cache", default="bench/out/sound-takes")
    parser.add_argument("--engines", default="ffmpeg,numpy",
                        help="mix engines to time (render.MIX_ENGINE): ffmpeg, the "
                        "filtergraphs (before); numpy, workers.media.mixdown (after)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.takes.split(",")]
    seconds = args.seconds
    print(f"bench.sound: takes {sizes}, {seconds:g} s each, cores {os.cpu_count()}",
          file=sys.stderr)
    takes = make_takes(max(sizes), seconds, args.cache)

    measured, wall, cpu, when = _measured(takes, seconds, args.cache)
    print(f"\nMeasuring {len(takes)} takes (loudness, hum, noise floor; once per take at "
          f"intake{when}): {wall:.1f} s wall, {cpu:.1f} s CPU, {wall / len(takes):.2f} s "
          "per take\n")

    from workers.media import render as engine

    engines = [e for e in args.engines.split(",") if e]
    rows = []
    out = os.path.join(args.cache, "mix.wav")
    for n in sizes:
        rows.append((n, "floor", "", *_timed(lambda n=n: _floor(takes[:n], seconds))))
        for name, editor in (("today", False), ("sound editor", True)):
            spec = parse_spec(_spec(takes[:n], measured[:n], seconds, editor))
            plan = plan_render(spec)
            for kind in engines:
                engine.MIX_ENGINE = kind
                best = None
                for _ in range(args.repeat):
                    run = _timed(lambda spec=spec, plan=plan: render_audio(spec, plan, out))
                    best = run if best is None or run[0] < best[0] else best
                rows.append((n, name, kind, *best))
                print(f"  {n} {name} {kind}: {best[0]:.1f} s wall, {best[1]:.1f} s CPU, "
                      f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
            if editor and "numpy" in engines:
                # a re-render with the cleaned takes kept (render_audio's cache_dir, the
                # proxies' folder in production): the first render fills it (not timed)
                import shutil
                import tempfile

                engine.MIX_ENGINE = "numpy"
                kept = tempfile.mkdtemp(prefix="kept-", dir=args.cache)
                try:
                    render_audio(spec, plan, out, cache_dir=kept)
                    run = _timed(lambda spec=spec, plan=plan, kept=kept: render_audio(
                        spec, plan, out, cache_dir=kept))
                finally:
                    shutil.rmtree(kept, ignore_errors=True)
                rows.append((n, "re-render", "numpy", *run))
                print(f"  {n} re-render numpy: {run[0]:.1f} s wall, {run[1]:.1f} s CPU",
                      file=sys.stderr)
    engine.MIX_ENGINE = "numpy"
    print(f"{'takes':>5}  {'mix':<13} {'engine':<7} {'wall s':>7} {'CPU s':>7} "
          f"{'s/min music':>11}")
    for n, name, kind, wall, cpu in rows:
        print(f"{n:>5}  {name:<13} {kind:<7} {wall:7.1f} {cpu:7.1f} "
              f"{wall * 60 / seconds:11.1f}")
    print("(floor: the takes only decoded and summed, no filter, no mastering, one ffmpeg "
          "per core; engine ffmpeg: the filtergraph mix (before), numpy: mixdown.py; "
          "re-render: the sound editor's mix again with the cleaned takes kept)")
    print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for n in sizes:
        for kind in engines:
            today = next(r for r in rows if r[0] == n and r[1] == "today" and r[2] == kind)
            editor = next(r for r in rows
                          if r[0] == n and r[1] == "sound editor" and r[2] == kind)
            print(f"{n:>5}  {kind}: added by the sound editor: {editor[3] - today[3]:+.1f} s "
                  f"wall ({(editor[3] - today[3]) * 60 / seconds:+.1f} s per minute of music)")
    biggest = max(sizes)
    for kind in engines:
        editor = next(r for r in rows
                      if r[0] == biggest and r[1] == "sound editor" and r[2] == kind)
        print(f"goal: the whole mix of 75 takes x 90 s under 60 s on 2 cores; {kind}, "
              f"{biggest} x {seconds:g} s: {editor[3]:.1f} s wall, {editor[4]:.1f} CPU-s "
              f"(on two free cores at least {editor[4] / 2:.1f} s)")

    print("\nClean-up by take (noise floor: RMS of the quietest 10 % of 50 ms frames; hum: "
          "the hum's harmonics against the notes)")
    print(f"{'take':>4} {'part':<8} {'hum':>4} {'floor before':>12} {'after':>7} "
          f"{'hum before':>10} {'after':>7} {'hum cut':>7}")
    chosen = [i for i, t in enumerate(takes) if t["hum_hz"]][:6]
    chosen += sorted((i for i in range(len(takes)) if i not in chosen),
                     key=lambda i: -takes[i]["noise_db"])[:4]
    cuts = []
    for i in chosen:
        take, sound = takes[i], measured[i]
        cleaned = clean_take(take["path"], os.path.join(args.cache, "clean.wav"),
                             hum_hz=sound.hum_hz, denoise=True,
                             noise_floor_db=sound.noise_floor_db)
        before = decode_audio(take["path"], sample_rate=ANALYSIS_RATE)
        after = decode_audio(cleaned, sample_rate=ANALYSIS_RATE)
        hz = take["hum_hz"] or 50.0
        voice = _voice_db(before)
        hb = hum_level_db(before, ANALYSIS_RATE, hz) - voice
        ha = hum_level_db(after, ANALYSIS_RATE, hz) - _voice_db(after)
        if take["hum_hz"]:
            cuts.append(hb - ha)
        print(f"{i:>4} {take['part']:<8} {int(sound.hum_hz) or '-':>4} "
              f"{noise_floor_db(before, ANALYSIS_RATE):12.1f} "
              f"{noise_floor_db(after, ANALYSIS_RATE):7.1f} {hb:10.1f} {ha:7.1f} "
              f"{hb - ha if take['hum_hz'] else math.nan:7.1f}")
    found = sum(1 for t, s in zip(takes, measured, strict=True) if t["hum_hz"] == s.hum_hz)
    print(f"hum found right (50/60/none) on {found} of {len(takes)} takes; "
          f"hum cut at least {min(cuts):.1f} dB (goal 20)" if cuts else "")
    return 0


def _measured(takes: list[dict], seconds: float, cache: str) -> tuple[list, float, float, str]:
    """The takes' measurements (TakeSound), and the wall and CPU seconds they took: kept
    in the cache folder beside the takes (they are made once per take, at intake), so a
    second run only mixes."""
    import json

    from workers.media.sound import TakeSound

    path = os.path.join(cache, f"measured-{len(takes)}-{seconds:g}s.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        return ([TakeSound(**t) for t in kept["takes"]], kept["wall"], kept["cpu"],
                ", timed in an earlier run")
    measured: list = []
    wall, cpu = _timed(lambda: measured.extend(analyze_take(t["path"]) for t in takes))
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"wall": wall, "cpu": cpu, "takes": [m.__dict__ for m in measured]}, f)
    return measured, wall, cpu, ""


def _floor(takes: list[dict], seconds: float) -> None:
    """The least any mix of these takes costs: each decoded and summed (amix, nothing
    else), in groups side by side, one ffmpeg per core, to nowhere."""
    from concurrent.futures import ThreadPoolExecutor

    from workers.media.render import usable_cores

    jobs = usable_cores()
    groups = [takes[j::jobs] for j in range(jobs) if takes[j::jobs]]

    def run(group: list[dict]) -> None:
        args = [ffmpeg_path(), "-v", "error"]
        for t in group:
            args += ["-i", t["path"]]
        graph = "".join(f"[{k}:a:0]" for k in range(len(group)))
        graph += f"amix=inputs={len(group)}:normalize=0:duration=longest[m]"
        subprocess.run([*args, "-filter_complex", graph, "-map", "[m]", "-t", f"{seconds}",
                        "-f", "null", "-"], check=True, capture_output=True)

    with ThreadPoolExecutor(len(groups)) as pool:
        list(pool.map(run, groups))


def _voice_db(samples: np.ndarray) -> float:
    """Total power (dB) of a take: the notes dominate it."""
    return 10 * math.log10(float(np.mean(samples.astype(np.float64) ** 2)) + 1e-30)
