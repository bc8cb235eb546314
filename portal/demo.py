"""``tutti demo``: the whole path on one machine, in one command.

It generates synthetic participant clips with ffmpeg's lavfi sources (mixed
sizes including portrait, mixed frame rates, tones that form a chord), creates
a demo campaign, submits the clips through the real HTTP API, lets the real
pipeline take them in, approves them, renders, and serves the watch page."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass

import click

log = logging.getLogger(__name__)

DEMO_SLUG = "demo"
DEMO_TITLE = "A world chord · 世界の和音 · وتر العالم"
DEMO_ORGANIZER = ("demo@example.org", "tutti-demo")

# A C-major chord spread over the voices, and the parts that sing it.
CHORD_HZ = (130.81, 164.81, 196.00, 261.63, 329.63, 392.00, 523.25, 659.25)
PARTS = ("Bass", "Tenor", "Alto", "Soprano")
SIZES = ((640, 360), (360, 640), (480, 480), (320, 240), (426, 240), (240, 426))
RATES = (30, 25, 24, 29.97, 60, 15)
SOURCES = ("testsrc2", "smptebars", "rgbtestsrc", "testsrc", "mandelbrot", "cellauto")
# Participants from around the world: a real name and a home town in the script of each of
# the 30 most spoken languages (Ethnologue's ranking by total speakers), and the other
# scripts the renderer must draw (Hebrew, Greek, more Indic scripts, Ge'ez), mixed-direction
# names and emoji; the first 16 (a 4x4 demo) span the most scripts. The typesetting tests
# draw every one of them. (language, name, place)
WORLD_NAMES: tuple[tuple[str, str, str], ...] = (
    ("en", "Emily Johnson", "Manchester"),
    ("zh", "李小龙", "北京"),
    ("hi", "प्रिया शर्मा", "वाराणसी"),
    ("ar", "محمد عبد الله", "الرياض"),
    ("ja", "佐藤 さくら", "大阪"),
    ("ru", "Дмитрий Шостакович", "Санкт-Петербург"),
    ("bn", "সৌমিত্র চট্টোপাধ্যায়", "ঢাকা"),
    ("ko", "김민준", "서울"),
    ("th", "สมชาย ใจดี", "เชียงใหม่"),
    ("ar", "Maria القحطاني", "Dubai"),
    ("ta", "கார்த்திக் சுப்பிரமணியம்", "சென்னை"),
    ("pt", "Ana 🎻", "Lisboa"),
    ("he", "נועה כהן", "תל אביב"),
    ("vi", "Nguyễn Thị Hương", "Hà Nội"),
    ("el", "Γιώργος Παπαδόπουλος", "Θεσσαλονίκη"),
    ("en", "👩🏽‍🎤 Maya", "Accra"),
    ("es", "José Martínez Peña", "Sevilla"),
    ("fr", "Zoé Lefèvre", "Besançon"),
    ("pt", "João Gonçalves", "São Paulo"),
    ("ur", "عائشہ خان", "لاہور"),
    ("id", "Siti Nurhaliza", "Yogyakarta"),
    ("de", "Jürgen Groß", "Köln"),
    ("pcm", "Chukwuemeka Okafor", "Lagos"),
    ("arz", "أحمد مصطفى", "القاهرة"),
    ("mr", "ज्ञानेश्वर कुलकर्णी", "पुणे"),
    ("te", "శ్రీనివాస్ రెడ్డి", "హైదరాబాద్"),
    ("ha", "Ƙasimu Ɗanjuma", "Kano"),
    ("tr", "Çağrı Yılmaz", "İstanbul"),
    ("pnb", "گرپریت سنگھ", "فیصل آباد"),
    ("sw", "Wanjiru Amani", "Mombasa"),
    ("tl", "Niño Dela Cruz", "Maynila"),
    ("yue", "陳嘉欣", "香港"),
    ("wuu", "徐志摩", "上海"),
    ("fa", "فرشته رضایی", "تهران"),
    ("jv", "Sêkar Ayu Wulandari", "Surakarta"),
    ("uk", "Олена Коваленко", "Київ"),
    ("pa", "ਗੁਰਪ੍ਰੀਤ ਸਿੰਘ", "ਅੰਮ੍ਰਿਤਸਰ"),
    ("gu", "ભાવના પટેલ", "અમદાવાદ"),
    ("kn", "ಅನಿಲ್ ಕುಮಾರ್", "ಬೆಂಗಳೂರು"),
    ("ml", "അനഘ നായർ", "കൊച്ചി"),
    ("am", "አበበ ቢቂላ", "አዲስ አበባ"),
    ("he", "Sarah לוי", "חיפה"),
    ("ja", "Hiro 🇯🇵🎺", "Osaka"),
)
NAMES = tuple(name for _, name, _ in WORLD_NAMES)
PLACES = tuple(place for _, _, place in WORLD_NAMES)


@dataclass(frozen=True)
class DemoClip:
    path: str
    name: str
    part: str
    location: str


def demo_clip_argv(index: int, out: str, seconds: float) -> list[str]:
    """ffmpeg argv for participant ``index``: its own picture, size, rate and tone."""
    width, height = SIZES[index % len(SIZES)]
    rate = RATES[index % len(RATES)]
    source = SOURCES[index % len(SOURCES)]
    freq = CHORD_HZ[index % len(CHORD_HZ)]
    hue = (index * 47) % 360
    video = f"{source}=size={width}x{height}:rate={rate}"
    # a gentle tremolo with its own speed, so every voice sounds alive
    audio = (f"sine=frequency={freq}:sample_rate=44100,"
             f"tremolo=f={2 + index % 5}:d=0.3,volume=0.35")
    return [
        "-f", "lavfi", "-i", video,
        "-f", "lavfi", "-i", audio,
        "-t", f"{seconds}", "-vf", f"hue=h={hue},format=yuv420p",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "28",
        "-c:a", "aac", "-b:a", "96k", "-shortest", out,
    ]


def make_demo_clips(directory: str, count: int, seconds: float = 8.0) -> list[DemoClip]:
    from workers.media.ffmpeg import run_ffmpeg

    clips = []
    for i in range(count):
        path = os.path.join(directory, f"participant-{i + 1:03d}.mp4")
        run_ffmpeg(demo_clip_argv(i, path, seconds), timeout=120)
        clips.append(DemoClip(path, NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f" {i}"),
                              PARTS[(i % len(CHORD_HZ)) * len(PARTS) // len(CHORD_HZ)],
                              PLACES[i % len(NAMES)]))
    return clips


def _reset_demo_campaign():
    """Delete an earlier demo campaign with its files; returns the demo organizer."""
    from sqlalchemy import select

    from .extensions import db
    from .models import Campaign, Organizer
    from .services import create_organizer, delete_campaign

    existing = db.session.scalar(select(Campaign).filter_by(slug=DEMO_SLUG))
    if existing is not None:
        delete_campaign(existing)
    return (db.session.scalar(select(Organizer).filter_by(email=DEMO_ORGANIZER[0]))
            or create_organizer(*DEMO_ORGANIZER))


@click.command()
@click.option("--clips", "count", default=12, show_default=True, type=click.IntRange(1, 200))
@click.option("--seconds", default=8.0, show_default=True, type=click.FloatRange(2, 120))
@click.option("--no-serve", is_flag=True, help="print the rendered file's path and exit")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def demo(count: int, seconds: float, no_serve: bool, host: str, port: int) -> None:
    """Generate clips, submit them over HTTP, render the mash-up and serve it."""
    import requests
    from werkzeug.serving import make_server

    from . import create_app
    from .cli import Background, wait_for_render
    from .services import create_campaign, get_campaign, moderate_clip, request_render

    # the demo's participants all upload from this machine: let them past the
    # per-address upload limit (the other limits stay as configured)
    app = create_app({"UPLOAD_LIMIT_ADDRESS": f"{count + 60} per hour"})
    from workers.media.typeset import INSTALL_HINT, text_support

    if text_support()["missing"]:
        click.echo(f"warning: some names will show boxes: {INSTALL_HINT}", err=True)
    if not app.config["EMBEDDED_WORKER"]:
        click.echo(f"using the workers on {app.config['BROKER_URL']}: start `tutti worker` too")
    background = Background(app).start()
    from .cli import trust_loopback

    trust_loopback(app, host)
    server = make_server(host, 0 if no_serve else port, app, threaded=True)
    base = f"http://{host}:{server.server_port}"
    threading.Thread(target=server.serve_forever, name="tutti-http", daemon=True).start()
    try:
        with app.app_context():
            owner = _reset_demo_campaign()
            create_campaign(DEMO_SLUG, DEMO_TITLE,
                            description=f"{count} synthetic participants from around the "
                                        "world, each holding one note of a C-major chord.",
                            parts=PARTS, owner=owner)
        with tempfile.TemporaryDirectory(prefix="tutti-demo-") as tmp:
            click.echo(f"generating {count} participant clips with ffmpeg ...")
            clips = make_demo_clips(tmp, count, seconds)
            tokens = []
            for clip in clips:
                with open(clip.path, "rb") as handle:
                    answer = requests.post(
                        f"{base}/api/v1/campaigns/{DEMO_SLUG}/clips",
                        data={"name": clip.name, "part": clip.part, "location": clip.location,
                              "consent": "yes"},
                        files={"file": (os.path.basename(clip.path), handle, "video/mp4")},
                        timeout=120)
                if answer.status_code != 201:
                    raise click.ClickException(f"upload refused: {answer.status_code} "
                                               f"{answer.text}")
                tokens.append(answer.json()["id"])
            click.echo(f"uploaded {len(tokens)} clips over HTTP; waiting for intake ...")
            _wait_for_intake(base, tokens, timeout=120 + 20 * count)
        with app.app_context():
            campaign = get_campaign(DEMO_SLUG)
            for clip in campaign.clips:
                if clip.status in ("normalized", "synced", "needs_sync"):
                    moderate_clip(clip, "approved")
            job = request_render(campaign, "final", options={
                "layout": "grid", "labels": "yes", "intro": "yes", "credits": "yes"})
            click.echo(f"rendering the mash-up (render #{job.id}) ...")
            path = wait_for_render(app, job.id, timeout=600 + 30 * count)
        if no_serve:
            click.echo(path)
            return
        click.echo(f"\nmash-up: {path}")
        click.echo(f"watch it:   {base}/watch/{DEMO_SLUG}")
        click.echo(f"organizers: {base}/organize/  ({DEMO_ORGANIZER[0]} / {DEMO_ORGANIZER[1]})")
        click.echo("Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        background.stop()


def _wait_for_intake(base: str, tokens: list[str], timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    pending = set(tokens)
    while pending and time.monotonic() < deadline:
        for token in list(pending):
            status = requests.get(f"{base}/api/v1/clips/{token}", timeout=30).json()
            if status["status"] not in ("received", "checked"):
                pending.discard(token)
                if status["status"] in ("rejected", "failed"):
                    log.warning("clip %s %s: %s", token, status["status"], status["reason"])
        time.sleep(0.5)
    if pending:
        raise click.ClickException(f"{len(pending)} clips were not processed in {timeout:.0f} s")
