"""A sync corpus synthesised in numpy, with known offsets.

Every clip is built the way a virtual-choir take happens: a guide (piano accompaniment and
melody after a 4-click count-in) plays in the participant's headphones; the participant sings
or plays one part of the harmony in another timbre, with human timing jitter; the room adds
reverb and noise; the phone band-limits, changes the gain and runs on its own clock (drift);
the recording starts before (or after) the guide. Depending on the case the guide also leaks
into the mic, or the participant claps the count-in. Negatives are unrelated music, speech-like
babble and silence.

Convention (as in the engine): ``offset`` is the clip time at which the guide's t=0 occurs,
``drift_ppm`` the clip clock's rate error: guide time t is heard at clip time
``offset + t * (1 + drift_ppm * 1e-6)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

SR = 16000
JITTER_S = 0.015  # human timing jitter per note (uniform +-)


@dataclass
class Note:
    start: float
    dur: float
    midi: float
    vel: float = 1.0


@dataclass
class Song:
    tempo: float
    beat: float
    count_in: list[float]
    music_start: float
    duration: float
    guide_notes: list[Note] = field(default_factory=list)
    parts: dict[str, list[Note]] = field(default_factory=dict)
    root: int = 60
    scale: tuple[int, ...] = (0, 2, 4, 5, 7, 9, 11)
    timbre: str = "piano"  # the guide's: "piano" (chords, melody, count-in) or "sine"


@dataclass
class Clip:
    name: str
    case: str
    guide_id: int
    audio: np.ndarray
    offset: float | None  # None for negatives (no true offset)
    drift_ppm: float
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- composition

MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
RHYTHMS = [  # onsets within a 4/4 bar in beats, with durations
    [(0, 1), (1, 1), (2, 1), (3, 1)],
    [(0, 2), (2, 1), (3, 1)],
    [(0, 1.5), (1.5, 0.5), (2, 2)],
    [(0, 1), (1, 0.5), (1.5, 0.5), (2, 1), (3, 1)],
    [(0, 3), (3, 1)],
    [(0, 0.5), (0.5, 0.5), (1, 1), (2, 0.5), (2.5, 0.5), (3, 1)],
    [(0, 2), (2, 2)],
]


def compose(rng: np.random.Generator, seconds: float, *, periodic: bool = False,
            lead_in: float | None = None, min_bars: int = 4, tempo: float | None = None,
            root: int | None = None, scale: list[int] | None = None) -> Song:
    """A song of about ``seconds``; tempo, root and scale can be imposed (same-key negatives)."""
    tempo_drawn = float(rng.uniform(72, 138))
    tempo = tempo_drawn if tempo is None else tempo
    beat = 60.0 / tempo
    bar = 4 * beat
    lead_in = float(rng.uniform(0.3, 1.5)) if lead_in is None else lead_in
    count_in = [lead_in + k * beat for k in range(4)]
    music_start = lead_in + 4 * beat
    n_bars = max(min_bars, int((seconds - music_start) / bar))
    root_drawn = int(rng.integers(55, 67))
    root = root_drawn if root is None else root
    scale_drawn = MAJOR if rng.random() < 0.6 else MINOR
    scale = scale_drawn if scale is None else scale
    degrees = [0, 3, 4, 5, 1, 2]
    if periodic:
        loop = [int(rng.choice(degrees)) for _ in range(int(rng.choice([1, 2])))]
        chords = [loop[i % len(loop)] for i in range(n_bars)]
        loop_rhythm = [RHYTHMS[int(rng.integers(len(RHYTHMS)))] for _ in range(len(loop))]
        rhythms = [loop_rhythm[i % len(loop)] for i in range(n_bars)]
        mel_loop = [[int(rng.integers(0, 7)) for _ in range(8)] for _ in range(len(loop))]
    else:
        chords = [0] + [int(rng.choice(degrees)) for _ in range(n_bars - 2)] + [0]
        rhythms = [RHYTHMS[int(rng.integers(len(RHYTHMS)))] for _ in range(n_bars)]
        mel_loop = None

    def pitch(deg: int, octave_base: int) -> int:
        o, d = divmod(deg, 7)
        return octave_base + 12 * o + scale[d]

    guide: list[Note] = []
    parts: dict[str, list[Note]] = {"S": [], "A": [], "T": [], "B": []}
    ranges = {"S": (60, 79), "A": (55, 72), "T": (48, 67), "B": (40, 60)}
    for i, (deg, rhythm) in enumerate(zip(chords, rhythms, strict=True)):
        t_bar = music_start + i * bar
        triad = [pitch(deg, root), pitch(deg + 2, root), pitch(deg + 4, root)]
        # piano accompaniment: chord on the bar's rhythm, bass on beat 1 and 3
        for on, du in rhythm:
            for p in triad:
                guide.append(Note(t_bar + on * beat, du * beat, p - 12, 0.5))
        for b in (0, 2):
            guide.append(Note(t_bar + b * beat, 2 * beat, triad[0] - 24, 0.6))
        # melody (S): a chord or scale tone per onset of the bar's rhythm
        for k, (on, du) in enumerate(rhythm):
            if mel_loop is not None:
                step = mel_loop[i % len(mel_loop)][k % 8]
            else:
                step = int(rng.integers(0, 7))
            m = pitch(deg + [0, 2, 4, 7, 1, 3, 5][step], root)
            while m < ranges["S"][0]:
                m += 12
            while m > ranges["S"][1]:
                m -= 12
            guide.append(Note(t_bar + on * beat, du * beat, m, 0.8))
            parts["S"].append(Note(t_bar + on * beat, du * beat, m))
        # inner voices: chord tones on a simpler rhythm (half notes or the bar rhythm)
        inner_rhythm = rhythm if (periodic or rng.random() < 0.5) else [(0, 2), (2, 2)]
        for v, tone in (("A", 2), ("T", 1), ("B", 0)):
            lo, hi = ranges[v]
            m = triad[tone]
            while m < lo:
                m += 12
            while m > hi:
                m -= 12
            rest = (not periodic) and rng.random() < 0.08
            if rest:
                continue
            for on, du in inner_rhythm:
                parts[v].append(Note(t_bar + on * beat, du * beat, m))
    end = music_start + n_bars * bar + 1.5
    return Song(tempo, beat, count_in, music_start, end, guide, parts, root, tuple(scale))


def compose_melody(rng: np.random.Generator, seconds: float, *, root: int | None = None,
                   scale: tuple[int, ...] | None = None) -> Song:
    """A synth-style monophonic line of pure tones: random notes of one scale over two octaves,
    0.15-0.5 s long with 0.02-0.2 s gaps, no count-in (what a short test jingle looks like).
    Two of these on the same root and scale share every pitch: the hardest unrelated pair."""
    root = int(rng.integers(52, 64)) if root is None else root
    scale = tuple(MAJOR if rng.random() < 0.6 else MINOR) if scale is None else scale
    pitches = [root + 12 * o + d for o in (0, 1) for d in scale] + [root + 24]
    notes, t = [], 0.3
    while t < seconds - 0.3:
        length = float(rng.uniform(0.15, 0.5))
        notes.append(Note(t, length, float(rng.choice(pitches))))
        t += length + float(rng.uniform(0.02, 0.2))
    # the performed "parts": the line itself and transpositions of it (a sixth, an octave down)
    parts = {v: [Note(n.start, n.dur, n.midi + sh) for n in notes]
             for v, sh in (("S", 0), ("A", -3), ("T", -12), ("B", -15))}
    return Song(0.0, 0.5, [], 0.3, seconds, notes, parts, root, scale, "sine")


# --------------------------------------------------------------------------- synthesis

def _midi_hz(m: float) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


def render_piano(notes: list[Note], seconds: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(int(seconds * SR) + SR)
    for n in notes:
        f0 = _midi_hz(n.midi)
        length = int(min(n.dur + 0.6, 3.0) * SR)
        t = np.arange(length) / SR
        tone = np.zeros(length)
        for h in range(1, 9):
            fh = f0 * h * np.sqrt(1 + 0.0004 * h * h)
            if fh > SR / 2 - 200:
                break
            tone += (0.8 ** h) * np.exp(-t * (1.5 + 0.9 * h)) * np.sin(2 * np.pi * fh * t
                                                                          + rng.uniform(0, 6.28))
        tone *= np.minimum(1.0, t / 0.003)
        off = int(n.dur * SR)
        if off < length:
            tone[off:] *= np.exp(-(np.arange(length - off) / SR) / 0.08)
        i = int(n.start * SR)
        seg = out[i:i + length]
        seg += n.vel * tone[:len(seg)]
    return out[:int(seconds * SR)]


def render_sines(notes: list[Note], seconds: float) -> np.ndarray:
    """Pure sines from phase 0 at the onset, exponential decay, cut off at the note's end."""
    out = np.zeros(int(seconds * SR) + SR)
    for n in notes:
        length = int(n.dur * SR)
        t = np.arange(length) / SR
        i = int(n.start * SR)
        seg = out[i:i + length]
        seg += (np.sin(2 * np.pi * _midi_hz(n.midi) * t) * np.exp(-6 * t))[:len(seg)]
    return out[:int(seconds * SR)]


def render_clicks(times: list[float], seconds: float) -> np.ndarray:
    out = np.zeros(int(seconds * SR))
    t = np.arange(int(0.03 * SR)) / SR
    click = np.sin(2 * np.pi * 1800 * t) * np.exp(-t / 0.006) + 0.5 * np.sin(
        2 * np.pi * 3500 * t) * np.exp(-t / 0.003)
    for k, s in enumerate(times):
        i = int(s * SR)
        seg = out[i:i + len(click)]
        seg += (1.0 if k == 0 else 0.7) * click[:len(seg)]
    return out


def _formant_filter(x: np.ndarray, formants: list[tuple[float, float]]) -> np.ndarray:
    y = np.zeros_like(x)
    for fc, bw in formants:
        b, a = signal.iirpeak(fc, fc / bw, fs=SR)
        y += signal.lfilter(b, a, x)
    return y


TIMBRES = ("voice", "strings", "clarinet", "flute")


def render_part(notes: list[Note], seconds: float, rng: np.random.Generator, timbre: str,
                jitter: float = JITTER_S) -> np.ndarray:
    """One performed part: another timbre than the guide, slow attacks, vibrato, jitter."""
    out = np.zeros(int(seconds * SR) + 2 * SR)
    attack = float(rng.uniform(0.02, 0.07))
    for n in notes:
        start = n.start + rng.uniform(-jitter, jitter)
        if start < 0:
            continue
        f0 = _midi_hz(n.midi) * 2 ** (rng.normal(0, 0.15) / 12)  # a little out of tune
        dur = n.dur * rng.uniform(0.8, 0.97)  # re-articulated: each note ends before the next
        length = int(dur * SR)
        t = np.arange(length) / SR
        vib = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1.0, t / 0.4)
        phase = 2 * np.pi * np.cumsum(f0 * vib) / SR
        if timbre in ("voice", "strings"):
            nh = int(min(20, (SR / 2 - 300) / f0))
            x = sum(np.sin(h * phase) / h for h in range(1, nh + 1))
        elif timbre == "clarinet":
            nh = int(min(15, (SR / 2 - 300) / f0))
            x = sum(np.sin(h * phase) / h for h in range(1, nh + 1, 2))
        else:  # flute: nearly sine plus breath
            x = np.sin(phase) + 0.2 * np.sin(2 * phase) + 0.05 * rng.standard_normal(length)
        release = min(0.08, 0.3 * dur)
        env = np.minimum(1.0, t / attack) * np.clip((dur - t) / release, 0, 1)
        x = x * env * rng.uniform(0.7, 1.0)
        i = int(start * SR)
        seg = out[i:i + length]
        seg += x[:len(seg)]
    if timbre == "voice":
        vowel = [(700, 110), (1220, 120), (2600, 160)] if rng.random() < 0.5 else \
            [(400, 80), (2000, 150), (2800, 200)]
        out = _formant_filter(out, vowel)
    elif timbre == "strings":
        out = _formant_filter(out, [(500, 200), (1500, 400), (3000, 600)])
    out = out[:int(seconds * SR)]
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-9) * 0.1


def render_claps(times: list[float], seconds: float, rng: np.random.Generator,
                 jitter: float = JITTER_S) -> np.ndarray:
    out = np.zeros(int(seconds * SR))
    b, a = signal.butter(2, [800, 5000], btype="band", fs=SR)
    for s in times:
        s = s + rng.uniform(-jitter, jitter)
        n = int(0.05 * SR)
        t = np.arange(n) / SR
        burst = signal.lfilter(b, a, rng.standard_normal(n)) * np.exp(-t / 0.008)
        burst *= np.minimum(1.0, t / 0.001)
        i = int(s * SR)
        if i < 0:
            continue
        seg = out[i:i + n]
        seg += rng.uniform(0.6, 1.0) * burst[:len(seg)]
    return out


def render_babble(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like: voiced syllables with a wandering pitch and formants, and pauses."""
    out = np.zeros(int(seconds * SR))
    t0 = 0.0
    f_base = rng.uniform(100, 220)
    while t0 < seconds - 0.5:
        dur = rng.uniform(0.08, 0.3)
        length = int(dur * SR)
        t = np.arange(length) / SR
        f = f_base * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6)))
        ph = 2 * np.pi * np.cumsum(f) / SR
        x = sum(np.sin(h * ph) / h for h in range(1, 25))
        x = x * np.hanning(length) + 0.3 * rng.standard_normal(length) * np.hanning(length) * (
            rng.random() < 0.3)
        x = _formant_filter(x, [(rng.uniform(300, 900), 100), (rng.uniform(900, 2500), 150)])
        i = int(t0 * SR)
        seg = out[i:i + length]
        seg += x[:len(seg)]
        t0 += dur + (rng.uniform(0.2, 0.8) if rng.random() < 0.2 else rng.uniform(0.0, 0.06))
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-9) * 0.1


def render_guide(song: Song, rng: np.random.Generator) -> np.ndarray:
    if song.timbre == "sine":
        g = render_sines(song.guide_notes, song.duration)
        return (0.4 * g / (np.abs(g).max() + 1e-9)).astype(np.float32)
    g = render_piano(song.guide_notes, song.duration, rng)
    g = g / (np.sqrt(np.mean(g ** 2)) + 1e-9) * 0.12
    g += 0.25 * render_clicks(song.count_in, song.duration)
    return np.clip(g, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------- degradations

def room_reverb(x: np.ndarray, rng: np.random.Generator, rt60: float) -> np.ndarray:
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.003 * SR)] = 0
    ir /= np.sqrt(np.sum(ir ** 2))
    wet = signal.fftconvolve(x, ir)[: len(x)]
    direct_to_reverb = rng.uniform(0.5, 2.0)
    return direct_to_reverb * x + wet


def phone_chain(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if rng.random() < 0.5:
        lo, hi, label = 300, 3400, "300-3400"
    else:
        lo, hi, label = 100, 7000, "100-7000"
    sos = signal.butter(4, [lo, hi], btype="band", fs=SR, output="sos")
    return signal.sosfilt(sos, x), label


def apply_clock(perf_fn_samples: np.ndarray, perf_t0: float, offset: float, drift_ppm: float,
                clip_seconds: float) -> np.ndarray:
    """Sample the performance (rendered on guide time from perf_t0) on the clip's clock."""
    tau = np.arange(int(clip_seconds * SR)) / SR
    t_guide = (tau - offset) / (1 + drift_ppm * 1e-6)
    idx = (t_guide - perf_t0) * SR
    return np.interp(idx, np.arange(len(perf_fn_samples)), perf_fn_samples, left=0, right=0)


def make_clip(name: str, case: str, guide_id: int, song: Song, guide: np.ndarray,
              rng: np.random.Generator, *, mode: str, offset: float, drift_ppm: float,
              leak_db: float = -20.0, other: np.ndarray | None = None) -> Clip:
    """mode: leak, clap, part, unrelated, speech, silence."""
    pre = max(0.0, offset) + 0.5
    post = float(rng.uniform(0.5, 3.0))
    perf_t0 = -pre
    span = pre + song.duration + post
    n_span = int(span * SR)
    timbre = str(rng.choice(TIMBRES))
    voice = str(rng.choice(["S", "A", "T", "B"]))
    meta: dict = {"timbre": timbre, "voice": voice, "tempo": round(song.tempo, 1)}

    def on_span(x: np.ndarray) -> np.ndarray:
        buf = np.zeros(n_span)
        i = int(pre * SR)
        m = min(len(x), n_span - i)
        buf[i:i + m] = x[:m]
        return buf

    if mode in ("leak", "clap", "part"):
        perf = on_span(render_part(song.parts[voice], song.duration, rng, timbre))
        if mode == "clap":
            perf += on_span(0.5 * render_claps(song.count_in, song.duration, rng))
        if mode == "leak":
            rms_part = np.sqrt(np.mean(perf ** 2)) + 1e-12
            sos = signal.butter(2, [200, 6000], btype="band", fs=SR, output="sos")
            lk = on_span(signal.sosfilt(sos, guide.astype(np.float64)))
            lk *= rms_part * 10 ** (leak_db / 20) / (np.sqrt(np.mean(lk ** 2)) + 1e-12)
            perf += lk
            meta["leak_db"] = round(leak_db, 1)
    elif mode == "unrelated":
        perf = np.zeros(n_span)
        perf[: min(n_span, len(other))] = other[:n_span]
    elif mode == "speech":
        perf = render_babble(span, rng)[:n_span]
    else:
        perf = np.zeros(n_span)

    rt60 = float(rng.uniform(0.15, 0.8))
    clip_seconds = max(5.0, offset + song.duration + post)
    if mode in ("unrelated", "speech", "silence"):
        clip_seconds = float(rng.uniform(0.6, 1.2)) * song.duration + max(0.0, offset)
    x = apply_clock(perf, perf_t0, offset, drift_ppm, clip_seconds)
    if mode != "silence":
        x = room_reverb(x, rng, rt60)
    x, band = phone_chain(x, rng)
    rms = np.sqrt(np.mean(x ** 2)) + 1e-12
    if mode == "silence":
        x = np.zeros_like(x)
        rms = 0.05
    snr_db = float(rng.uniform(15, 35))
    noise = rng.standard_normal(len(x))
    noise = signal.lfilter([1.0], [1.0, -0.9], noise)  # reddish room noise
    noise *= rms * 10 ** (-snr_db / 20) / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
    if mode == "silence":
        noise *= float(rng.uniform(0.01, 0.2))
    x = x + noise
    gain_db = float(rng.uniform(-10, 10))
    x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * 0.08 * 10 ** (gain_db / 20)
    if mode == "silence":
        x *= 0.05
    meta.update(rt60=round(rt60, 2), band=band, snr_db=round(snr_db, 1),
                gain_db=round(gain_db, 1))
    true_offset = offset if mode in ("leak", "clap", "part") else None
    return Clip(name, case, guide_id, np.clip(x, -1, 1).astype(np.float32), true_offset,
                drift_ppm, meta)


# --------------------------------------------------------------------------- the corpus

CASES = [  # (case, mode, count, seconds, style)
    ("leak", "leak", 12, (30, 60), "song"),
    ("clap", "clap", 10, (30, 60), "song"),
    ("part", "part", 16, (30, 60), "song"),
    ("periodic-part", "part", 6, (30, 60), "periodic"),
    ("periodic-clap", "clap", 6, (30, 60), "periodic"),
    ("long-leak", "leak", 1, (180, 180), "song"),
    ("long-clap", "clap", 1, (180, 180), "song"),
    ("long-part", "part", 2, (180, 180), "song"),
    ("short-leak", "leak", 8, (5, 15), "song"),
    ("short-clap", "clap", 6, (5, 15), "song"),
    ("short-part", "part", 8, (5, 15), "song"),
    ("sine-leak", "leak", 6, (5, 15), "sine"),
    ("unrelated", "unrelated", 6, (30, 60), "song"),
    ("speech", "speech", 4, (30, 60), "song"),
    ("silence", "silence", 4, (30, 60), "song"),
    ("short-unrelated", "unrelated", 6, (5, 15), "song"),
    ("short-speech", "speech", 3, (5, 15), "song"),
    ("short-silence", "silence", 3, (5, 15), "song"),
    ("samekey-piano", "unrelated", 6, (5, 15), "samekey-piano"),
    ("samekey-sine", "unrelated", 8, (5, 15), "samekey-sine"),
    ("samekey-long", "unrelated", 4, (30, 60), "samekey-mix"),
    ("sametempo", "unrelated", 6, (30, 60), "sametempo"),
    ("short-sametempo", "unrelated", 6, (5, 15), "sametempo"),
]
"""``samekey-*``: another song on the guide's own root and scale (so the same pitch set) in the
guide's own timbre: piano chords and melody at a tempo of its own,
or a pure-sine line against a pure-sine guide; ``samekey-long`` has both at 30-60 s.
``*sametempo``: another song at exactly the guide's tempo, its beats on the guide's beats (from
the guide's first bar or a few beats later), half of them in the guide's key: a part of it
performed like a take, sometimes with its own piano accompaniment."""


def sametempo_take(rng: np.random.Generator, song: Song,
                   offset: float) -> tuple[np.ndarray, dict]:
    """Another song performed on the guide's own beat grid, as ``make_clip`` lays it out.

    ``make_clip`` puts an unrelated take's t=0 at guide time ``-(max(0, offset) + 0.5)``; the
    other song's lead-in is chosen so that its beats land on the guide's beats there, and its
    music starts with the guide's or 1-3 beats later. Its melody and harmony are its own,
    in the guide's key half of the time. Returns the take and what to note in the clip's meta
    (``grid_offset``: the offset at which its beats sit on the guide's).
    """
    pre = max(0.0, offset) + 0.5
    late_beats = int(rng.integers(0, 4))
    lead_in = pre + song.count_in[0] + late_beats * song.beat
    same_key = rng.random() < 0.5
    osong = compose(rng, song.duration + pre + 25, tempo=song.tempo, lead_in=lead_in,
                    root=song.root if same_key else None,
                    scale=list(song.scale) if same_key else None, min_bars=2)
    voice = str(rng.choice(["S", "A", "T", "B"]))
    other = render_part(osong.parts[voice], osong.duration, rng, str(rng.choice(TIMBRES)))
    if rng.random() < 0.5:  # its own accompaniment, without a count-in click
        acc = render_piano(osong.guide_notes, osong.duration, rng)
        acc = acc / (np.sqrt(np.mean(acc ** 2)) + 1e-9) * 0.12
        other = other + 0.3 * acc[: len(other)]
    return other, {"grid_offset": round(offset, 4), "late_beats": late_beats,
                   "same_key": bool(same_key)}


def build_corpus(seed: int = 1, scale: float = 1.0):
    """Yield (guide_id, guide, clips) groups; each guide serves a few clips of one case."""
    rng = np.random.default_rng(seed)
    gid = 0
    for case, mode, count, (lo, hi), style in CASES:
        count = max(1, int(round(count * scale)))
        short = hi <= 15
        done = 0
        while done < count:
            per_guide = min(2, count - done)
            seconds = float(rng.uniform(lo, hi))
            sine = style in ("sine", "samekey-sine") or (
                style == "samekey-mix" and done // 2 % 2 == 1)  # samekey-long: piano, then sine
            if sine:
                song = compose_melody(rng, seconds)
            else:
                song = compose(rng, seconds, periodic=style == "periodic",
                               min_bars=2 if short else 4)
            guide = render_guide(song, rng)
            clips = []
            for _ in range(per_guide):
                late, early = (1.0, 3.0) if short else (2.0, 20.0)
                if mode == "clap":
                    offset = float(rng.uniform(0.2, early))
                elif rng.random() < 0.25:
                    offset = float(rng.uniform(-late, -0.045))
                else:
                    offset = float(rng.uniform(0.0, early))
                drift = float(rng.uniform(-150, 150))
                other, extra = None, {}
                if mode == "unrelated" and style == "song":
                    osong = compose(rng, song.duration + 25)
                    rv = str(rng.choice(["S", "A", "T", "B"]))
                    other = render_part(osong.parts[rv], osong.duration, rng,
                                        str(rng.choice(TIMBRES)))
                    if rng.random() < 0.5:  # sometimes the unrelated take has its own accompaniment
                        acc = render_guide(osong, rng).astype(np.float64)
                        other = other + 0.3 * acc[: len(other)]
                elif mode == "unrelated" and style == "sametempo":
                    other, extra = sametempo_take(rng, song, offset)
                elif mode == "unrelated" and sine:
                    osong = compose_melody(rng, song.duration + 25, root=song.root,
                                           scale=song.scale)
                    other = render_guide(osong, rng).astype(np.float64)
                elif mode == "unrelated":  # same key, same piano, its own tempo
                    osong = compose(rng, song.duration + 25, root=song.root,
                                    scale=list(song.scale), min_bars=2)
                    # the song's piano alone: a metronome click of the same sample at the
                    # same tempo would be a count-in the clap evidence rightly matches
                    other = render_piano(osong.guide_notes, osong.duration, rng)
                clip = make_clip(f"{case}-{done:02d}", case, gid, song, guide, rng, mode=mode,
                                 offset=offset, drift_ppm=drift,
                                 leak_db=float(rng.uniform(-20, -5) if sine
                                               else rng.uniform(-30, -10)), other=other)
                clip.meta.update(extra)
                clips.append(clip)
                done += 1
            yield gid, guide, clips
            gid += 1
