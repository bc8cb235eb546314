"""A realistic sync corpus: Bach chorales played by sampled instruments, takes in simulated rooms.

Where ``bench/sync/corpus.py`` synthesises everything in numpy, this corpus is built from real
material, the way a virtual-choir take is made:

- **music**: four-part Bach chorales from the ``music21`` corpus (``CHORALES``), at 60-100
  quarter notes per minute, one or more verses;
- **guide**: all four parts on one sampled instrument (piano, church organ, strings or choir
  "aahs"), rendered by FluidSynth with Debian's ``fluid-soundfont-gm`` from MIDI that music21
  writes; with a clicked count-in (4 wood-block clicks at the chorale's tempo, a real sample from
  Debian's ``hydrogen-drumkits``), with none, or with an instrumental introduction (the first
  phrase on organ, or on piano for an organ guide, before all start); beginning and ending in
  exact digital silence as notation software exports, or over a faint noise floor; 44.1 kHz;
- **take**: one part (S, A, T or B) played on another sampled instrument (choir aahs, voice
  oohs, violin, viola, cello, flute, clarinet, oboe, trumpet, bassoon, trombone), with human
  timing: per-note jitter (uniform +-15 to +-30 ms per take), a slow tempo curve (rubato of 1-3 %
  over 4-12 s) and velocity swells; sung and bowed notes legato;
- **room**: ``pyroomacoustics`` image-source rooms (RT60 0.2-0.8 s) between the performer, the
  headphones (the guide leaking 10-30 dB under the part), the clapping hands and the phone;
  real hand claps (hydrogen-drumkits' "Gimme A Hand" and "Millo" kits) on the count-in beats,
  +-15 ms each;
- **phone**: its own clock (+-150 ppm, by resampling), room noise (pink, sometimes mains hum) at
  15-35 dB SNR, a phone band (300-3400 or 100-7000 Hz), +-10 dB of gain, 16 kHz;
- **starts** from 2 s late to 20 s early; excerpts that start mid-piece at a phrase; short takes
  (10-20 s) and 3-minute ones;
- **negatives**: another chorale, the same chorale at another tempo, speech (espeak-ng), room tone.

Convention (as in the engine and ``corpus.py``): ``offset`` is the clip time at which the guide's
t=0 occurs; guide time t is heard at clip time ``offset + t * (1 + drift_ppm * 1e-6)``. The true
offset is that of the score: a note the guide plays at t is performed at t plus its jitter and
the tempo curve, and the tempo curve is shifted to mean zero over the notes the take performs
(so the best single offset for the take is the true one). The truth is that of the direct sound:
the room's propagation delay from the performer to the phone (and pyroomacoustics' fractional
delay filter) is taken out of every path. FluidSynth starts a note within its 64-sample block,
about 1.5 ms at 44.1 kHz, in the guide and the take alike.

Rendered chorales, takes and speech are cached under ``bench/out/sync-real-cache`` (keyed by
what was rendered), so a second run of the same seed renders nothing again.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from bench.sync.corpus import Clip
from workers.media.ffmpeg import ffmpeg_path

SR = 16000  # takes (a phone's speech-band recording)
GUIDE_SR = 44100  # guides, as notation software exports them
CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "out",
                     "sync-real-cache")
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
DRUMKITS = "/usr/share/hydrogen/data/drumkits"
CLAP_GLOBS = ("Gimme A Hand 1.0/HandClap-*.wav", "Millo_MultiLayered2/clap_0*.flac",
              "Millo-Drums_v.1/clap_Dry_c.flac", "The Black Pearl 1.0/HandClap.wav")
CLICK_FILES = ("Gimme A Hand 1.0/WoodBlock-Hardest.wav", "Gimme A Hand 1.0/WoodBlock-Med.wav")
SPEED_OF_SOUND = 343.0

CHORALES = (
    "bwv20.7", "bwv24.6", "bwv244.10", "bwv244.15", "bwv244.17", "bwv244.37", "bwv244.40",
    "bwv245.11", "bwv245.14", "bwv245.15", "bwv245.26", "bwv245.5", "bwv248.12-2",
    "bwv248.46-5", "bwv25.6", "bwv259", "bwv262", "bwv263", "bwv267", "bwv275", "bwv277",
    "bwv278", "bwv280", "bwv283", "bwv284", "bwv288", "bwv289", "bwv294",
)
"""Four-part (S, A, T, B) chorales in 4/4 of 40-68 quarter notes with fermatas at the phrase
ends, from music21's Bach corpus."""

GUIDE_PROGRAMS = {"piano": 0, "organ": 19, "strings": 48, "choir": 52}  # General MIDI, 0-based
TAKE_PROGRAMS = {  # timbre: (GM program, legato, voices it can play)
    "choir-aahs": (52, True, "SATB"), "voice-oohs": (53, True, "SATB"),
    "violin": (40, True, "SA"), "viola": (41, True, "AT"), "cello": (42, True, "TB"),
    "flute": (73, False, "S"), "oboe": (68, False, "SA"), "clarinet": (71, False, "SAT"),
    "trumpet": (56, False, "S"), "bassoon": (70, False, "TB"), "trombone": (57, False, "TB"),
}
VOICES = "SATB"

SPEECH = (
    ("en", "Good evening everyone, thank you for joining the rehearsal tonight. Please check "
           "that your microphone is on and that you can hear the piano in your headphones."),
    ("en-us", "We will start with the second verse, then go back to the beginning. Basses, "
              "your entry is after the fermata, so breathe early and watch the conductor."),
    ("de", "Liebe Sängerinnen und Sänger, bitte nehmt die Aufnahme in einem ruhigen Raum auf "
           "und tragt dabei Kopfhörer, damit die Begleitung nicht mit aufgenommen wird."),
    ("fr", "Bonjour à tous. Pour cette vidéo, chantez votre voix seule, avec le guide dans les "
           "oreilles, et commencez l'enregistrement quelques secondes avant la musique."),
    ("it", "Grazie a tutti per la pazienza. Registrate la vostra parte con calma, senza fretta, "
           "e ricordate di tenere il telefono fermo durante tutta la registrazione."),
    ("es", "Hola a todos, esta semana grabamos el coral completo. Escuchad bien la entrada del "
           "órgano y respirad juntos antes de cada frase."),
)


class ToolsMissing(RuntimeError):
    """Something the realistic corpus renders with is not installed; the message says what."""


def check_tools() -> None:
    """Raise ToolsMissing naming what to install (``make bench-sync`` installs all of it)."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("fluidsynth (Debian package fluidsynth)")
    if not os.path.exists(SOUNDFONT):
        missing.append(f"{SOUNDFONT} (Debian package fluid-soundfont-gm)")
    if not glob.glob(os.path.join(DRUMKITS, CLAP_GLOBS[0])):
        missing.append(f"hand claps under {DRUMKITS} (Debian package hydrogen-drumkits)")
    if shutil.which("espeak-ng") is None:
        missing.append("espeak-ng (Debian package espeak-ng)")
    for module, package in (("music21", "music21"), ("pyroomacoustics", "pyroomacoustics")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"Python package {package} (pip install -e '.[bench]')")
    if missing:
        raise ToolsMissing("the realistic sync corpus needs: " + "; ".join(missing)
                           + ". Run `make bench-sync` (it installs all of them).")


# --------------------------------------------------------------------------- audio helpers

def decode(path: str, sr: int) -> np.ndarray:
    """Any audio file as mono float32 at ``sr`` (through the project's ffmpeg)."""
    out = subprocess.run([ffmpeg_path(), "-v", "error", "-i", path, "-ac", "1", "-ar", str(sr),
                          "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(out, np.float32).copy()


def trim_onset(x: np.ndarray, sr: int) -> np.ndarray:
    """A one-shot sample from 1 ms before it first reaches 10 % of its peak."""
    i = int(np.argmax(np.abs(x) >= 0.1 * np.abs(x).max()))
    return x[max(0, i - sr // 1000):]


def to_sr(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    if sr_from == sr_to:
        return x
    g = np.gcd(sr_from, sr_to)
    return signal.resample_poly(x, sr_to // g, sr_from // g)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def active_rms(x: np.ndarray, sr: int = SR) -> float:
    """RMS over the 50 ms frames within 30 dB of the loudest: the level of a sound where it
    sounds (a part's rests and a guide's silences left out); 0 for silence."""
    n = int(0.05 * sr)
    m = len(x) // n
    if m == 0:
        return rms(x)
    frames = np.mean(np.square(x[: m * n].reshape(m, n), dtype=np.float64), axis=1)
    if frames.max() <= 0:
        return 0.0
    return float(np.sqrt(np.mean(frames[frames >= frames.max() * 1e-3])))


@functools.cache
def clap_samples() -> tuple[np.ndarray, ...]:
    """Real recorded hand claps (16 kHz, onset-trimmed, peak 1)."""
    out = []
    for pattern in CLAP_GLOBS:
        for path in sorted(glob.glob(os.path.join(DRUMKITS, pattern))):
            x = trim_onset(decode(path, SR), SR)[: int(0.4 * SR)]
            out.append(x / np.abs(x).max())
    return tuple(out)


@functools.cache
def click_samples() -> tuple[np.ndarray, np.ndarray]:
    """The count-in click (accented, plain): a real wood block, 44.1 kHz, peak 1."""
    out = []
    for name in CLICK_FILES:
        x = trim_onset(decode(os.path.join(DRUMKITS, name), GUIDE_SR), GUIDE_SR)
        out.append(x[: int(0.3 * GUIDE_SR)] / np.abs(x).max())
    return out[0], out[1]


def place(buf: np.ndarray, x: np.ndarray, t: float, sr: int, gain: float = 1.0) -> None:
    """Add ``x`` into ``buf`` starting at ``t`` seconds (fractional samples by interpolation)."""
    pos = t * sr
    i = int(np.floor(pos))
    frac = pos - i
    if frac > 1e-6:  # linear fractional delay of the sample (keeps sub-sample timing)
        y = np.zeros(len(x) + 1)
        y[:-1] += (1 - frac) * x
        y[1:] += frac * x
        x = y
    lo = max(0, i)
    hi = min(len(buf), i + len(x))
    if hi > lo:
        buf[lo:hi] += gain * x[lo - i:hi - i]


# --------------------------------------------------------------------------- the music

@dataclass(frozen=True)
class ScoreNote:
    q: float  # onset in quarter notes from the first note
    dur: float  # quarter notes
    midi: int
    fermata: bool


@dataclass(frozen=True)
class Chorale:
    name: str
    parts: dict[str, tuple[ScoreNote, ...]]
    length_q: float
    phrase_starts: tuple[float, ...]  # quarter notes where a phrase begins (after a fermata)
    phrase_ends: tuple[float, ...]  # quarter notes where a fermata note ends


@functools.cache
def load_chorale(name: str) -> Chorale:
    """A chorale of music21's Bach corpus as four monophonic note lists (ties merged)."""
    from music21 import corpus, expressions

    score = corpus.parse(f"bach/{name}")
    parts = {}
    for voice, part in zip(VOICES, score.parts, strict=True):
        notes = []
        for n in part.stripTies().flatten().notes:
            midi = n.pitches[-1].midi if voice == "S" else n.pitches[0].midi
            fermata = any(isinstance(e, expressions.Fermata) for e in n.expressions)
            notes.append(ScoreNote(float(n.offset), float(n.quarterLength), int(midi), fermata))
        parts[voice] = tuple(notes)
    length = max(n.q + n.dur for ns in parts.values() for n in ns)
    ends = sorted({n.q + n.dur for n in parts["S"] if n.fermata})
    starts = [0.0] + [e for e in ends if e < length - 1e-6]
    return Chorale(name, parts, length, tuple(starts), tuple(ends))


@dataclass(frozen=True)
class Event:
    t: float  # seconds
    dur: float
    midi: int
    vel: int


def write_midi(tracks: list[tuple[int, list[Event]]], path: str) -> None:
    """A MIDI file by music21: one part per (GM program, events), at 60 bpm (1 quarter = 1 s)."""
    from music21 import instrument, midi, note, stream, tempo

    score = stream.Score()
    for program, events in tracks:
        part = stream.Part()
        ins = instrument.Instrument()
        ins.midiProgram = program
        part.insert(0, ins)
        part.insert(0, tempo.MetronomeMark(number=60))
        for e in events:
            n = note.Note(e.midi)
            n.quarterLength = max(0.02, round(e.dur, 4))
            n.volume.velocity = int(np.clip(e.vel, 1, 127))
            part.coreInsert(round(e.t, 5), n)  # music21's bulk insert ...
        part.coreElementsChanged()  # ... and its one update after it
        score.insert(0, part)
    mf = midi.translate.music21ObjectToMidiFile(score)
    mf.open(path, "wb")
    try:
        mf.write()
    finally:
        mf.close()


def render_events(tracks: list[tuple[int, list[Event]]], *, reverb: bool) -> np.ndarray:
    """FluidSynth render of the tracks (44.1 kHz mono float32, t=0 at the file's start).

    Cached as FLAC of the 16-bit stereo WAV FluidSynth writes (lossless: a third of the size of
    float32 mono), keyed by what was rendered. (FluidSynth's own FLAC output converts its
    samples otherwise than its WAV output: not used, so that cached and fresh renders agree.)"""
    key = hashlib.sha1(repr((tracks, reverb, SOUNDFONT)).encode()).hexdigest()[:20]
    path = os.path.join(CACHE, "fluid", f"{key}.flac")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tutti-fluid-") as tmp:
            mid, wav = os.path.join(tmp, "x.mid"), os.path.join(tmp, "x.wav")
            out = os.path.join(tmp, "x.flac")
            write_midi(tracks, mid)
            flag = "1" if reverb else "0"
            subprocess.run(["fluidsynth", "-ni", "-q", "-R", flag, "-C", flag, "-g", "0.4",
                            "-r", str(GUIDE_SR), "-F", wav, SOUNDFONT, mid],
                           check=True, capture_output=True)
            subprocess.run([ffmpeg_path(), "-v", "error", "-i", wav, "-c:a", "flac", out],
                           check=True, capture_output=True)
            shutil.move(out, path)
    pcm = subprocess.run([ffmpeg_path(), "-v", "error", "-i", path, "-f", "s16le", "-"],
                         check=True, capture_output=True).stdout
    x = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    return x.reshape(-1, 2).mean(axis=1).astype(np.float32)


# --------------------------------------------------------------------------- guides

@dataclass
class Guide:
    """A rendered guide and where its music is: ``t(q, verse)`` is the guide time of quarter q."""
    gid: int
    chorale: Chorale
    bpm: float
    instrument: str
    count_in: str  # click | none | intro
    edges: str  # digital (exact zeros before and after) | floor (a faint noise floor)
    verses: int
    music_start: float
    verse_len: float
    clicks: list[float]
    audio: np.ndarray  # GUIDE_SR, float32
    audio16: np.ndarray = field(repr=False, default=None)  # SR, for the leaks

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    def t(self, q: float, verse: int = 0) -> float:
        return self.music_start + verse * self.verse_len + q * self.beat

    @property
    def end(self) -> float:
        return self.t(self.chorale.length_q, self.verses - 1)

    @property
    def duration(self) -> float:
        return len(self.audio) / GUIDE_SR

    def style(self) -> str:
        return f"{self.instrument}/{self.count_in}/{self.edges}/{self.verses}v"


def score_events(ch: Chorale, voices: str, t0: float, beat: float, vel: int = 80) -> list[Event]:
    """The score's notes of ``voices`` strictly in time (notation software playback)."""
    out = []
    for v in voices:
        for n in ch.parts[v]:
            out.append(Event(t0 + n.q * beat, n.dur * beat * 0.98, n.midi,
                             vel + (10 if v == "S" else 0)))
    return out


def make_guide(gid: int, rng: np.random.Generator, *, chorale: str, bpm: float,
               instrument: str, count_in: str, edges: str, verses: int,
               render: bool = True) -> Guide:
    """Render a guide: count-in or introduction, then ``verses`` verses of all four parts.

    ``render=False``: the same random numbers are drawn but nothing is rendered (the audio is
    silence): a corpus made of some cases only (:func:`build_real_corpus`'s ``cases``)."""
    ch = load_chorale(chorale)
    beat = 60.0 / bpm
    if edges == "digital":  # an export starts on the first beat, or a moment before it
        lead = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.05, 1.0))
    else:
        lead = float(rng.uniform(0.3, 2.0))
    program = GUIDE_PROGRAMS[instrument]
    tracks: list[tuple[int, list[Event]]] = []
    clicks: list[float] = []
    if count_in == "click":
        clicks = [lead + k * beat for k in range(4)]
        music_start = lead + 4 * beat
    elif count_in == "intro":
        first_end = ch.phrase_ends[0]
        intro_prog = GUIDE_PROGRAMS["piano" if instrument == "organ" else "organ"]
        intro = [e for e in score_events(ch, VOICES, lead, beat)
                 if e.t < lead + first_end * beat - 1e-6]
        tracks.append((intro_prog, intro))
        music_start = lead + (first_end + 2) * beat  # the fermata held a beat, a beat's breath
    else:
        music_start = lead
    verse_len = (ch.length_q + 2) * beat
    # one track per part: unisons between parts must not cut each other's notes
    for v in VOICES:
        ev = []
        for k in range(verses):
            ev += score_events(ch, v, music_start + k * verse_len, beat)
        tracks.append((program, ev))
    x = (render_events(tracks, reverb=True).astype(np.float64) if render
         else np.zeros(GUIDE_SR))
    end = music_start + verses * verse_len
    ring = float(rng.uniform(0.5, 1.5))  # the last chord's release and reverb
    tail = ring + float(rng.uniform(1.0, 3.0))
    n = int((end + tail) * GUIDE_SR)
    x = np.pad(x, (0, max(0, n - len(x))))[:n]
    if edges == "digital":
        x[int((end + ring) * GUIDE_SR):] = 0.0  # then exact digital silence to the file's end
    if clicks:
        accent, plain = click_samples()
        level = 0.5 * np.abs(x).max()
        for k, c in enumerate(clicks):
            place(x, accent if k == 0 else plain, c, GUIDE_SR, level)
    x *= 10 ** (-1 / 20) / (np.abs(x).max() + 1e-12)  # normalised to -1 dBFS, as exported
    if edges == "digital":
        x = np.round(x * 32767) / 32767  # 16-bit: before the first note, exact zeros
    else:
        x += 10 ** (float(rng.uniform(-80, -65)) / 20) * rng.standard_normal(len(x))
    audio = x.astype(np.float32)
    g = Guide(gid, ch, bpm, instrument, count_in, edges, verses, music_start, verse_len, clicks,
              audio)
    g.audio16 = (to_sr(audio.astype(np.float64), GUIDE_SR, SR) if render
                 else np.zeros(int(len(audio) * SR / GUIDE_SR)))
    return g


# --------------------------------------------------------------------------- performances

def perform(ch: Chorale, voice: str, timbre: str, rng: np.random.Generator, *,
            t_of_q, q_range: tuple[float, float] | None = None, verses: int = 1,
            verse_len: float = 0.0, jitter: float = 0.02, rubato: float = 0.02,
            beat: float = 0.6) -> tuple[list[Event], dict]:
    """One part performed by a person: jitter, a slow tempo curve of mean zero, swells.

    ``t_of_q(q)`` is the guide time of quarter q in verse 0; notes are kept whose onset in guide
    time falls in ``q_range`` (guide seconds, or all). Returns the events (guide time) and the
    performance's facts for the clip's meta.
    """
    program, legato, _ = TAKE_PROGRAMS[timbre]
    notes = []
    for k in range(verses):
        for n in ch.parts[voice]:
            t = t_of_q(n.q) + k * verse_len
            if q_range is None or q_range[0] - 1e-6 <= t < q_range[1]:
                notes.append((t, n.dur * beat, n.midi, n.fermata))
    if not notes:
        return [], {}
    period = float(rng.uniform(4, 12))
    amp = rubato * period / (2 * np.pi)  # a tempo curve of +-rubato: displacement amplitude
    phase = float(rng.uniform(0, 2 * np.pi))
    starts = np.array([n[0] for n in notes])
    warp = amp * np.sin(2 * np.pi * starts / period + phase)
    warp -= warp.mean()  # the take's best single offset is the true one
    jit = rng.uniform(-jitter, jitter, len(notes))
    events = []
    for i, (t, dur, midi, fermata) in enumerate(notes):
        on = t + warp[i] + jit[i]
        nxt = notes[i + 1][0] + warp[i + 1] + jit[i + 1] if i + 1 < len(notes) else None
        if legato:
            d = dur + (float(rng.uniform(0.3, 0.8)) * beat if fermata else 0.03)
        else:
            d = dur * float(rng.uniform(0.8, 0.95))
        if nxt is not None:
            d = min(d, nxt - on + (0.03 if legato and notes[i + 1][2] != midi else -0.02))
        swell = 0.5 + 0.5 * np.sin(2 * np.pi * t / float(rng.uniform(6, 10)))
        vel = int(np.clip(70 + 30 * swell + rng.normal(0, 6), 40, 120))
        events.append(Event(on, max(0.05, d), midi, vel))
    return events, {"jitter_ms": round(jitter * 1000, 1), "rubato_pct": round(rubato * 100, 1),
                    "rubato_ms": round(amp * 1000, 1)}


def render_performance(events: list[Event], timbre: str, t0: float) -> np.ndarray:
    """The events rendered dry at SR on a timeline starting at guide time ``t0`` (notes begun
    before it are not heard: a negative's performance can start before a late recording)."""
    program = TAKE_PROGRAMS[timbre][0]
    shifted = [Event(round(e.t - t0, 5), e.dur, e.midi, e.vel) for e in events if e.t >= t0]
    if not shifted:
        return np.zeros(0)
    x = render_events([(program, shifted)], reverb=False).astype(np.float64)
    return to_sr(x, GUIDE_SR, SR)


@functools.lru_cache(maxsize=64)
def speech(lang_index: int, variant: str, speed: int) -> np.ndarray:
    """espeak-ng reading a paragraph (SR, float), cached on disk."""
    lang, text = SPEECH[lang_index]
    key = hashlib.sha1(repr((lang, variant, speed, text)).encode()).hexdigest()[:20]
    path = os.path.join(CACHE, "speech", f"{key}.npy")
    if os.path.exists(path):
        return np.load(path)
    with tempfile.TemporaryDirectory(prefix="tutti-espeak-") as tmp:
        wav = os.path.join(tmp, "s.wav")
        subprocess.run(["espeak-ng", "-v", f"{lang}{variant}", "-s", str(speed), "-w", wav,
                        text], check=True, capture_output=True)
        x = decode(wav, SR).astype(np.float64)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, x)
    return x


# --------------------------------------------------------------------------- the room

def room_rirs(rng: np.random.Generator, rt60: float, n_sources: int = 3, *,
              render: bool = True) -> tuple[list[np.ndarray], dict]:
    """Impulse responses to the phone from: the performer's mouth (or instrument), the
    headphones, the clapping hands. Each is advanced by the mouth's direct-path delay (and the
    fractional-delay filter's), so the direct sound of the performer arrives at lag 0.
    ``render=False``: the room's random numbers are drawn, nothing is simulated (unit
    impulses)."""
    dim = [float(rng.uniform(3, 7)), float(rng.uniform(3, 6)), float(rng.uniform(2.4, 3.2))]
    if not render:
        for _ in range(6):  # head (3), distance, angle, the phone's height: as below
            rng.uniform(0.0, 1.0)
        return [np.ones(1)] * n_sources, {"room": "x".join(f"{v:.1f}" for v in dim),
                                          "rt60": round(rt60, 2), "mic_m": 0.0}
    import pyroomacoustics as pra

    e_abs, max_order = pra.inverse_sabine(rt60, dim)
    room = pra.ShoeBox(dim, fs=SR, materials=pra.Material(e_abs), max_order=min(max_order, 40))
    head = np.array([rng.uniform(1.0, dim[0] - 1.0), rng.uniform(1.0, dim[1] - 1.0),
                     rng.uniform(1.1, 1.7)])
    dist = float(rng.uniform(0.5, 1.5))
    ang = float(rng.uniform(0, 2 * np.pi))
    phone = head + np.array([dist * np.cos(ang), dist * np.sin(ang), -rng.uniform(0.0, 0.4)])
    phone[:2] = np.clip(phone[:2], 0.3, np.array(dim[:2]) - 0.3)
    mouth = head + 0.08 * (phone - head) / np.linalg.norm(phone - head)
    ears = head
    hands = head + np.array([0.25 * np.cos(ang), 0.25 * np.sin(ang), -0.45])
    for p in (mouth, ears, hands)[:n_sources]:
        room.add_source(list(p))
    room.add_microphone(list(phone))
    room.compute_rir()
    d = np.linalg.norm(phone - mouth)
    lag = int(round(d / SPEED_OF_SOUND * SR)) + pra.constants.get("frac_delay_length") // 2
    rirs = [np.asarray(room.rir[0][i][lag:], dtype=np.float64) for i in range(n_sources)]
    return rirs, {"room": "x".join(f"{v:.1f}" for v in dim), "rt60": round(rt60, 2),
                  "mic_m": round(dist, 2)}


def convolve(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    return signal.fftconvolve(x, rir)[: len(x)]


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise of ``n`` samples (shaped in the frequency domain)."""
    from scipy import fft

    m = fft.next_fast_len(n, real=True)
    spec = fft.rfft(rng.standard_normal(m))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return fft.irfft(spec, m)[:n]


# --------------------------------------------------------------------------- a take

@dataclass(frozen=True)
class Case:
    name: str
    mode: str  # leak | clap | part | clap+leak | other-chorale | other-tempo | speech | silence
    count: int
    length: str  # full | short | excerpt | long
    kind: str  # leak-or-clap | part | negative


CASES = (
    Case("leak", "leak", 10, "full", "leak-or-clap"),
    Case("clap", "clap", 10, "full", "leak-or-clap"),
    Case("clap+leak", "clap+leak", 6, "full", "leak-or-clap"),
    Case("part", "part", 12, "full", "part"),
    Case("excerpt-leak", "leak", 4, "excerpt", "leak-or-clap"),
    Case("excerpt-part", "part", 4, "excerpt", "part"),
    Case("short-leak", "leak", 4, "short", "leak-or-clap"),
    Case("short-clap", "clap", 4, "short", "leak-or-clap"),
    Case("short-part", "part", 4, "short", "part"),
    Case("long-leak", "leak", 1, "long", "leak-or-clap"),
    Case("long-clap", "clap", 1, "long", "leak-or-clap"),
    Case("long-part", "part", 1, "long", "part"),
    Case("other-chorale", "other-chorale", 4, "full", "negative"),
    Case("other-tempo", "other-tempo", 4, "full", "negative"),
    Case("speech", "speech", 3, "full", "negative"),
    Case("silence", "silence", 3, "full", "negative"),
)
"""leak: the part and the guide leaking from the headphones; clap: the part and claps on the
count-in, no leak; clap+leak: both; part: the part alone. full: the whole guide is sung;
excerpt: the recording starts mid-piece at a phrase and covers 15-30 s; short: 10-20 s of
recording; long: about 3 minutes (verses repeated). Negatives: a part of another chorale
(sometimes with its own guide leaking or its own count-in clapped), the same chorale's same part
at another tempo (sometimes with that guide leaking), speech, room tone."""


def pick_timbre(rng: np.random.Generator, voice: str, guide_program: int) -> str:
    """An instrument that plays in ``voice``'s range, other than the guide's."""
    names = [k for k, (prog, _, vs) in TAKE_PROGRAMS.items()
             if voice in vs and prog != guide_program]
    return str(rng.choice(names))


def make_take(name: str, case: Case, guide: Guide, rng: np.random.Generator, *,
              other: Guide | None = None, render: bool = True) -> Clip:
    """One take of ``case`` against ``guide`` (``other``: the negative's own guide).
    ``render=False``: the same random numbers drawn, nothing rendered (see
    :func:`build_real_corpus`)."""
    beat = guide.beat
    voice = str(rng.choice(list(VOICES)))
    timbre = pick_timbre(rng, voice, GUIDE_PROGRAMS[guide.instrument])
    drift = float(rng.uniform(-150, 150))
    jitter = float(rng.uniform(0.015, 0.030))
    rubato = float(rng.uniform(0.01, 0.03))
    mode = case.mode
    claps = mode in ("clap", "clap+leak")
    leak = mode in ("leak", "clap+leak")
    meta: dict = {"voice": voice, "timbre": timbre, "chorale": guide.chorale.name,
                  "bpm": round(guide.bpm, 1), "guide_style": guide.style()}

    # where the recording starts and ends, in guide time; the offset
    ch = guide.chorale
    if case.length == "excerpt":
        starts = [guide.t(q) for q in ch.phrase_starts
                  if 0.25 * guide.end <= guide.t(q) <= 0.6 * guide.end]
        sing_from = float(rng.choice(starts)) if starts else guide.t(ch.phrase_starts[-1])
        sing_to = sing_from + float(rng.uniform(15, 30))
        rec_from = sing_from - float(rng.uniform(0.5, 3.0))
        rec_to = sing_to + float(rng.uniform(0.5, 2.0))
        offset = -rec_from
    else:
        if claps:
            offset = float(rng.uniform(0.2, 3.0 if case.length == "short" else 20.0))
        elif rng.random() < 0.25:
            offset = float(rng.uniform(-2.0, -0.05))
        else:
            offset = float(rng.uniform(0.0, 3.0 if case.length == "short" else 20.0))
        rec_from = -offset
        sing_from = -1e9
        if case.length == "short":
            rec_to = rec_from + float(rng.uniform(10, 20))
            sing_to = rec_to
        else:
            sing_to = 1e9
            rec_to = guide.end + float(rng.uniform(0.5, 3.0))
    t0 = rec_from - 0.5  # the scene's timeline (guide time) starts here
    n = int((rec_to - t0 + 1.0) * SR)

    rt60 = float(rng.uniform(0.2, 0.8))
    rirs, room_meta = room_rirs(rng, rt60, render=render)
    meta.update(room_meta)
    mouth = np.zeros(n)
    perf_meta: dict = {}
    if mode in ("leak", "clap", "part", "clap+leak"):
        events, perf_meta = perform(ch, voice, timbre, rng, t_of_q=guide.t,
                                    q_range=(max(sing_from, rec_from + 0.3),
                                             min(sing_to, rec_to)),
                                    verses=guide.verses, verse_len=guide.verse_len,
                                    jitter=jitter, rubato=rubato, beat=beat)
        perf = render_performance(events, timbre, t0) if render else np.zeros(0)
        mouth[: min(n, len(perf))] = perf[:n]
    elif mode in ("other-chorale", "other-tempo"):
        assert other is not None
        voice_o = voice
        events, perf_meta = perform(other.chorale, voice_o, timbre, rng, t_of_q=other.t,
                                    verses=other.verses, verse_len=other.verse_len,
                                    jitter=jitter, rubato=rubato, beat=other.beat)
        # the other guide's t=0 sits where the recording would put this guide's
        perf = render_performance(events, timbre, t0) if render else np.zeros(0)
        mouth[: min(n, len(perf))] = perf[:n]
        meta.update(other_chorale=other.chorale.name, other_bpm=round(other.bpm, 1))
        if rng.random() < 0.5:
            leak = True
            meta["other_leak"] = True
        if other.clicks and rng.random() < 0.5:
            claps = True
    elif mode == "speech":
        k = int(rng.integers(len(SPEECH)))
        variant = str(rng.choice(["", "+m3", "+f2", "+f4", "+m7"]))
        sp = speech(k, variant, int(rng.integers(130, 170)))
        i = int(rng.uniform(0.3, 2.0) * SR)
        while i < n:  # the paragraph again after a pause, to fill the take
            m = min(len(sp), n - i)
            mouth[i:i + m] += sp[:m]
            i += m + int(rng.uniform(0.5, 2.0) * SR)
        meta.update(lang=SPEECH[k][0], espeak_variant=variant)
    meta.update(perf_meta)

    scene = convolve(mouth, rirs[0])
    level = active_rms(scene) or 1e-3  # the part as the phone hears it: leak and noise by it
    if leak:
        src = other if mode in ("other-chorale", "other-tempo") else guide
        lk = np.zeros(n)
        i0 = int(round(-t0 * SR))  # guide t=0 on the scene's timeline
        g = src.audio16
        a, b = max(0, -i0), min(len(g), n - i0)
        if b > a:
            lk[i0 + a:i0 + b] = g[a:b]
        sos = signal.butter(2, [float(rng.uniform(150, 400)), float(rng.uniform(4000, 7000))],
                            btype="band", fs=SR, output="sos")  # what escapes the ear cups
        lk = convolve(signal.sosfilt(sos, lk), rirs[1])
        leak_db = float(rng.uniform(-30, -10))
        lk *= level * 10 ** (leak_db / 20) / (active_rms(lk) or 1.0)
        scene += lk
        meta["leak_db"] = round(leak_db, 1)
    if claps:
        src = other if mode in ("other-chorale", "other-tempo") else guide
        samples = clap_samples()
        cl = np.zeros(n)
        peak = float(np.abs(mouth).max()) if np.abs(mouth).max() > 0 else 0.3
        clap_jit = []
        for c in src.clicks:
            j = float(rng.uniform(-0.015, 0.015))
            clap_jit.append(round(j * 1000, 1))
            s = samples[int(rng.integers(len(samples)))]
            place(cl, s, c + j - t0, SR, peak * float(rng.uniform(0.8, 2.0)))
        scene += convolve(cl, rirs[2])
        meta["clap_jitter_ms"] = " ".join(f"{j:+.1f}" for j in clap_jit)

    # the phone: its own clock, room noise, its band, its gain
    clip_seconds = rec_to - rec_from
    tau = np.arange(int(clip_seconds * SR)) / SR
    t_guide = (tau - offset) / (1 + drift * 1e-6)
    x = np.interp((t_guide - t0) * SR, np.arange(n), scene, left=0.0, right=0.0)
    snr_db = float(rng.uniform(15, 35))
    noise = pink_noise(len(x), rng)
    if rng.random() < 0.3:  # mains hum and its harmonics
        hz = 50.0 if rng.random() < 0.5 else 60.0
        tt = np.arange(len(x)) / SR
        noise += sum(0.3 / h * np.sin(2 * np.pi * hz * h * tt + rng.uniform(0, 6))
                     for h in (1, 2, 3)) * rms(noise)
        meta["hum_hz"] = hz
    ref = level if mode != "silence" else 1e-3
    noise *= ref * 10 ** (-snr_db / 20) / rms(noise)
    if mode == "silence":
        noise *= float(rng.uniform(0.05, 0.5))
    x = x + noise
    lo, hi = (300, 3400) if rng.random() < 0.5 else (100, 7000)
    x = signal.sosfilt(signal.butter(4, [lo, hi], btype="band", fs=SR, output="sos"), x)
    gain_db = float(rng.uniform(-10, 10))
    x = x / (np.abs(x).max() + 1e-12) * 0.5 * 10 ** (min(gain_db, 5.0) / 20)
    if mode == "silence":
        x *= 0.02
    meta.update(snr_db=round(snr_db, 1), band=f"{lo}-{hi}", gain_db=round(gain_db, 1),
                clip_s=round(clip_seconds, 1), drift_ppm=round(drift, 1))
    true = offset if case.kind != "negative" else None
    clip = Clip(name, case.name, guide.gid, np.clip(x, -1, 1).astype(np.float32), true, drift,
                meta)
    clip.meta["kind"] = case.kind
    return clip


# --------------------------------------------------------------------------- the corpus

def same_tune(a: str, b: str) -> bool:
    """Two chorales on one hymn tune (Bach set many tunes more than once: in ``CHORALES``, "O
    Welt, ich muss dich lassen" three times): 6 or more of the first 8 melodic intervals of the
    soprano equal."""
    ia, ib = (np.diff([n.midi for n in load_chorale(c).parts["S"][:9]]) for c in (a, b))
    return int(np.sum(ia == ib)) >= 6



def guide_plan(rng: np.random.Generator, case: Case) -> dict:
    """What guide a case's takes are made against (the style is drawn)."""
    count_in = "click" if case.mode in ("clap", "clap+leak") else str(
        rng.choice(["click", "none", "intro"], p=[0.3, 0.35, 0.35]))
    bpm = float(rng.uniform(60, 100))
    chorale = str(rng.choice(CHORALES))
    verses = 1
    if case.length == "long":
        q = load_chorale(chorale).length_q + 2
        verses = int(np.ceil(185 / (q * 60 / bpm)))
    elif case.length == "full" and rng.random() < 0.35:
        verses = 2
    return dict(chorale=chorale, bpm=bpm, count_in=count_in, verses=verses,
                instrument=str(rng.choice(list(GUIDE_PROGRAMS))),
                edges="digital" if rng.random() < 0.6 else "floor")


def build_real_corpus(seed: int = 1, scale: float = 1.0, cases: set[str] | None = None):
    """Yield (guide, clips) groups; each guide serves 1-3 takes of one case.

    ``guide`` is a Guide (``audio`` at GUIDE_SR); clips are ``corpus.Clip`` at SR with
    ``meta['kind']`` (leak-or-clap, part, negative). Deterministic for a seed.
    ``cases`` (names of :data:`CASES`): only their groups are yielded; the other cases' random
    numbers are still drawn (nothing rendered), so these takes and their guides' numbers are
    exactly those of a full run of the seed, at a fraction of its cost (the part-only cases
    alone: a quarter of the takes).
    """
    check_tools()
    if cases is not None and not set(cases) <= {c.name for c in CASES}:
        raise ValueError(f"unknown cases {sorted(set(cases) - {c.name for c in CASES})}; "
                         f"the cases are {', '.join(c.name for c in CASES)}")
    rng = np.random.default_rng(10_000 + seed)
    gid = 0
    last = max((k for k, c in enumerate(CASES) if cases is None or c.name in cases), default=-1)
    for k, case in enumerate(CASES):
        if k > last:
            break
        render = cases is None or case.name in cases
        count = max(1, int(round(case.count * scale)))
        done = 0
        while done < count:
            per_guide = min(int(rng.integers(1, 4)) if case.length != "long" else 1,
                            count - done)
            plan = guide_plan(rng, case)
            guide = make_guide(gid, rng, **plan, render=render)
            clips = []
            for _ in range(per_guide):
                other = None
                if case.mode == "other-chorale":
                    others = [c for c in CHORALES if c != plan["chorale"]]
                    pick = str(rng.choice(others))
                    while same_tune(pick, plan["chorale"]):  # drawn again: not a negative
                        pick = str(rng.choice(others))
                    o = dict(plan, chorale=pick, bpm=float(rng.uniform(60, 100)))
                    other = make_guide(-1, rng, **o, render=render)
                elif case.mode == "other-tempo":
                    f = float(rng.choice([-1, 1]) * rng.uniform(0.08, 0.25))
                    other = make_guide(-1, rng, **dict(plan, bpm=plan["bpm"] * (1 + f)),
                                       render=render)
                clips.append(make_take(f"{case.name}-{done:02d}", case, guide, rng,
                                       other=other, render=render))
                done += 1
            if render:
                yield guide, clips
            gid += 1
