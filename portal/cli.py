"""The ``tutti`` command: serve, worker, demo, campaign, organizer, render,
probe, align, compose, reconcile, handoff.

Media commands (probe, align, compose) use the media engine alone: no app, no
database. The others build the app from the environment (``TUTTI_*``)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import timedelta

import click
from flask import Flask

log = logging.getLogger(__name__)


def register_cli(app: Flask) -> None:
    """``flask --app portal reconcile`` (the same use case as ``tutti reconcile``)."""

    @app.cli.command("reconcile")
    def flask_reconcile() -> None:
        from .services import reconcile

        click.echo(json.dumps(reconcile(timedelta(seconds=0))))


def _app(**overrides: object) -> Flask:
    from . import create_app

    return create_app(overrides or None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tutti: crowdsourced video mash-ups."""


# --- running -------------------------------------------------------------------

class Background:
    """The embedded worker and the reconciler, for one process that does it all."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.worker = None
        self.stop_event = threading.Event()

    def start(self) -> Background:
        from workers.celery_app import EmbeddedWorker

        if self.app.config["EMBEDDED_WORKER"]:
            self.worker = EmbeddedWorker(self.app.extensions["celery"]).start()
            self._reconcile(timedelta(seconds=0))  # the memory broker forgot what was queued
        threading.Thread(target=self._loop, name="tutti-reconciler", daemon=True).start()
        return self

    def _reconcile(self, stale: timedelta | None) -> None:
        from .services import reconcile

        with self.app.app_context():
            try:
                reconcile(stale)
            except Exception:  # noqa: BLE001 - keep the loop alive; the next round retries
                log.exception("reconciler round failed")

    def _loop(self) -> None:
        period = int(self.app.config["RECONCILE_SECONDS"])
        while not self.stop_event.wait(period):
            self._reconcile(None)

    def stop(self) -> None:
        self.stop_event.set()
        if self.worker is not None:
            self.worker.stop()


LOOPBACK = ("127.0.0.1", "localhost")


def trust_loopback(app: Flask, host: str) -> None:
    """Served on this machine only (``host`` a loopback name), with neither
    ``TUTTI_BASE_URL`` nor ``TUTTI_TRUSTED_HOSTS``, the portal answers to its loopback
    names only: links are then whole, and a page elsewhere cannot reach it by DNS
    rebinding."""
    if host in LOOPBACK and not app.config.get("BASE_URL") and not app.config.get(
            "TRUSTED_HOSTS"):
        app.config["TRUSTED_HOSTS"] = list(LOOPBACK)


def _serve(app: Flask, host: str, port: int) -> None:
    from werkzeug.serving import run_simple

    trust_loopback(app, host)
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the web portal (with an embedded worker unless TUTTI_BROKER_URL is set)."""
    app = _app()
    Background(app).start()
    mode = "embedded worker" if app.config["EMBEDDED_WORKER"] else app.config["BROKER_URL"]
    click.echo(f"Tutti on http://{host}:{port}/ ({mode}; database {app.config['DATABASE_URL']})")
    _serve(app, host, port)


@main.command()
@click.option("--queues", "-Q", default="intake,render", show_default=True)
@click.option("--concurrency", "-c", default=None, type=int, help="default: number of cores")
@click.option("--beat/--no-beat", default=True, show_default=True,
              help="also run the reconciler schedule (one worker per deployment needs it)")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queues: str, concurrency: int | None, beat: bool, loglevel: str) -> None:
    """Run a Celery worker (needs TUTTI_BROKER_URL=redis://...)."""
    app = _app()
    celery = app.extensions["celery"]
    if str(app.config["BROKER_URL"]).startswith("memory"):
        raise click.ClickException("`tutti worker` needs a shared broker: set "
                                   "TUTTI_BROKER_URL=redis://127.0.0.1:6379/0 for it and for "
                                   "`tutti serve`. (The embedded default runs its worker "
                                   "inside `tutti serve`.)")
    argv = ["worker", "-Q", queues, "--loglevel", loglevel, "--without-gossip",
            "--without-mingle"]
    if str(app.config["LOG_FORMAT"]).strip().lower() == "json":
        argv.insert(0, "--quiet")  # no banner: every line of the output is one JSON object
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if beat:
        celery.conf.beat_schedule = _reconcile_schedule(app)
        argv += ["--beat", "--schedule", f"{app.instance_path}/celerybeat-schedule"]
    celery.worker_main(argv)


def _reconcile_schedule(app: Flask) -> dict:
    period = float(app.config["RECONCILE_SECONDS"])
    # no Celery `expires`: it is stamped on the sender's clock, and a worker whose clock ran
    # ahead discarded every round as revoked; rounds queued while no worker ran skip instead
    # (workers.tasks.reconcile keeps a gap on the broker's clock)
    return {"reconcile": {"task": "tutti.reconcile", "schedule": period}}


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the reconciler's schedule alone (Celery beat): one per deployment, beside
    workers started with --no-beat. It sends `tutti.reconcile` every
    TUTTI_RECONCILE_SECONDS; any intake worker runs it."""
    app = _app()
    if str(app.config["BROKER_URL"]).startswith("memory"):
        raise click.ClickException("`tutti beat` needs a shared broker: set TUTTI_BROKER_URL "
                                   "(the embedded default reconciles inside `tutti serve`).")
    celery = app.extensions["celery"]
    celery.conf.beat_schedule = _reconcile_schedule(app)
    celery.Beat(loglevel=loglevel, schedule=f"{app.instance_path}/celerybeat-schedule").run()


@main.command()
def reconcile() -> None:
    """Re-enqueue every clip and render the database says is pending."""
    from .services import reconcile as run

    app = _app()
    if app.config["EMBEDDED_WORKER"]:
        raise click.ClickException("with the embedded default, `tutti serve` reconciles at start")
    with app.app_context():
        click.echo(json.dumps(run(timedelta(seconds=0))))


# --- organizers and campaigns --------------------------------------------------

@main.group()
def organizer() -> None:
    """Manage organizer accounts."""


@organizer.command("create")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              envvar="TUTTI_ORGANIZER_PASSWORD")
@click.option("--admin", is_flag=True, help="a site administrator: sees and manages every "
                                            "campaign")
def organizer_create(email: str, password: str, admin: bool) -> None:
    """Create an organizer who can log in at /organize."""
    from .services import ServiceError, create_organizer

    app = _app()
    with app.app_context():
        try:
            created = create_organizer(email, password, is_admin=admin)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"organizer {created.email} created" + (" (administrator)" if admin else ""))


@organizer.command("logout-everywhere")
@click.argument("email")
def organizer_logout_everywhere(email: str) -> None:
    """End every session (and remember cookie) of an organizer."""
    from sqlalchemy import select

    from .auth import end_all_sessions
    from .extensions import db
    from .models import Organizer
    from .services import normalize_email

    app = _app()
    with app.app_context():
        found = db.session.scalar(select(Organizer).filter_by(email=normalize_email(email)))
        if found is None:
            raise click.ClickException(f"There is no organizer {email}")
        click.echo(f"{end_all_sessions(found)} session(s) of {found.email} ended")


@main.group()
def campaign() -> None:
    """Manage campaigns."""


@campaign.command("create")
@click.argument("slug")
@click.option("--title", required=True)
@click.option("--guide", type=click.Path(exists=True, dir_okay=False), default=None,
              help="guide track (audio or video)")
@click.option("--parts", default="Soprano,Alto,Tenor,Bass", show_default=True,
              help="comma-separated part names ('' for none)")
@click.option("--description", default="")
@click.option("--canvas", default="1280x720", show_default=True)
@click.option("--fps", default=30, show_default=True, type=int)
@click.option("--owner", default=None, metavar="EMAIL",
              help="the organizer who owns it (without one, only administrators see it "
                   "until `tutti campaign add-member`)")
def campaign_create(slug: str, title: str, guide: str | None, parts: str, description: str,
                    canvas: str, fps: int, owner: str | None) -> None:
    """Create a campaign and print its participant link."""
    from flask import url_for

    from .services import ServiceError, create_campaign

    try:
        width, height = (int(v) for v in canvas.lower().split("x"))
    except ValueError as exc:
        raise click.BadParameter("use WIDTHxHEIGHT, e.g. 1280x720", param_hint="--canvas") from exc
    app = _app()
    with app.app_context():
        try:
            owner_row = _organizer_named(owner) if owner else None
            created = create_campaign(slug, title, description=description,
                                      parts=parts.split(","), guide_path=guide,
                                      canvas=(width, height), fps=fps, owner=owner_row)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from exc
        with app.test_request_context(base_url=app.config["BASE_URL"] or "http://127.0.0.1:5000"):
            link = url_for("participate.campaign", slug=created.slug, _external=True)
        click.echo(f"campaign {created.slug} created: {link}")


def _organizer_named(email: str):
    from sqlalchemy import select

    from .extensions import db
    from .models import Organizer
    from .services import ServiceError, normalize_email

    found = db.session.scalar(select(Organizer).filter_by(email=normalize_email(email)))
    if found is None:
        raise ServiceError(f"There is no organizer {email}: create one first with "
                           f"`tutti organizer create {email}`", 404, "email")
    return found


@campaign.command("members")
@click.argument("slug")
def campaign_members(slug: str) -> None:
    """List a campaign's organizers and their roles (e-mail TAB role)."""
    from .services import ServiceError, get_campaign

    app = _app()
    with app.app_context():
        try:
            found = get_campaign(slug)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from exc
        for member in found.members:
            click.echo(f"{member.organizer.email}\t{member.role}")


@campaign.command("add-member")
@click.argument("slug")
@click.argument("email")
@click.option("--role", type=click.Choice(["owner", "moderator"]), default="moderator",
              show_default=True)
def campaign_add_member(slug: str, email: str, role: str) -> None:
    """Give an existing organizer a role in a campaign (or change it)."""
    from .services import ServiceError, add_member, get_campaign

    app = _app()
    with app.app_context():
        try:
            member = add_member(get_campaign(slug), email, role)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"{member.organizer.email} is {member.role} of {slug}")


@campaign.command("list")
def campaign_list() -> None:
    """List campaigns with their clip counts."""
    from sqlalchemy import select

    from .extensions import db
    from .models import Campaign

    app = _app()
    with app.app_context():
        for c in db.session.scalars(select(Campaign).order_by(Campaign.id)):
            click.echo(f"{c.slug}\t{c.title}\t{len(c.clips)} clips")


@main.command()
@click.argument("slug")
@click.option("--wait", is_flag=True, help="wait for the render and print the output path")
@click.option("--preview", is_flag=True, help="a fast low-resolution preview")
@click.option("--timeout", default=3600, show_default=True, type=float)
def render(slug: str, wait: bool, preview: bool, timeout: float) -> None:
    """Render a campaign's approved clips through the portal's pipeline."""
    from .services import ServiceError, get_campaign, request_render

    app = _app()
    background = None
    if wait and app.config["EMBEDDED_WORKER"]:
        background = Background(app).start()
    try:
        with app.app_context():
            try:
                job = request_render(get_campaign(slug), "preview" if preview else "final")
            except ServiceError as exc:
                raise click.ClickException(exc.message) from exc
            click.echo(f"render #{job.id} queued")
            if not wait:
                if app.config["EMBEDDED_WORKER"]:
                    click.echo("it runs when `tutti serve` starts (embedded worker)")
                return
            path = wait_for_render(app, job.id, timeout)
            click.echo(path)
    finally:
        if background is not None:
            background.stop()


@main.command()
@click.argument("slug")
@click.option("--render", "render_id", type=int, default=None,
              help="the render to hand off (default: the published one, else the latest done)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="copy the ZIP here (default: print where it is stored)")
@click.option("--no-media", is_flag=True,
              help="leave the clips out (the timeline still names media/NNN.mp4)")
def handoff(slug: str, render_id: int | None, output: str | None, no_media: bool) -> None:
    """Hand a render off to a video editor: one ZIP with an OpenTimelineIO timeline and
    its FCP XML, the normalized clips at their synced positions, the mix and per-part
    stems as WAV and the credits as CSV."""
    import shutil

    from sqlalchemy import select

    from workers.pipeline import export_render

    from .extensions import db
    from .models import Render
    from .services import ServiceError, get_campaign

    app = _app()
    with app.app_context():
        try:
            campaign = get_campaign(slug)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from exc
        if render_id is None:
            render_id = campaign.published_render_id or db.session.scalar(
                select(Render.id).filter_by(campaign_id=campaign.id, status="done")
                .order_by(Render.id.desc()).limit(1))
        job = db.session.get(Render, render_id) if render_id else None
        if job is None or job.campaign_id != campaign.id:
            raise click.ClickException(f"campaign {slug} has no render #{render_id}"
                                       if render_id else
                                       f"campaign {slug} has no finished render: run "
                                       f"`tutti render {slug} --wait` first")
        if job.status != "done":
            raise click.ClickException(f"render #{job.id} is {job.status}: only a finished "
                                       "render can be handed off")
        key = export_render(job.id, include_media=not no_media)
        db.session.expire_all()
        job = db.session.get(Render, render_id)
        if key is None:
            raise click.ClickException(job.handoff_reason or "the hand-off failed")
        path = app.extensions["tutti.storage"].path(key)
        if output:
            shutil.copyfile(path, output)
            path = output
        click.echo(str(path))


def wait_for_render(app: Flask, render_id: int, timeout: float) -> str:
    from .extensions import db
    from .models import Render

    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        db.session.expire_all()
        job = db.session.get(Render, render_id)
        if job.status == "done":
            return str(app.extensions["tutti.storage"].path(job.output_key))
        if job.status in ("failed", "cancelled"):
            raise click.ClickException(f"render #{job.id} {job.status}: {job.reason}")
        if job.progress - last >= 0.1:
            last = job.progress
            click.echo(f"render #{job.id}: {job.status} {job.progress:.0%}", err=True)
        time.sleep(0.5)
    raise click.ClickException(f"render #{render_id} did not finish in {timeout:.0f} s")


# --- the media engine on its own -------------------------------------------------

@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the facts as JSON")
@click.option("--quick", is_flag=True,
              help="skip the whole decode (header, packets and one frame only): a file whose "
                   "tail does not decode then passes")
def probe(file: str, as_json: bool, quick: bool) -> None:
    """Check that FILE is a usable video, as intake does: the probe (header, caps, packets,
    one decoded frame), then a decode of the whole file, which rejects a file whose tail
    does not decode (an upload cut short, a copy whose end is zeros). Exit 1 with a
    one-line reason if not usable; a usable file's length checks (``ends_abruptly``,
    ``picture_stops_early``, ``sound_stops_early``) follow its summary line."""
    import os

    from workers.media.checks import length_checks
    from workers.media.ffmpeg import FFmpegError
    from workers.media.normalize import decode_check
    from workers.media.probe import ProbeRejected
    from workers.media.probe import probe as run_probe

    if not os.path.isfile(file):
        click.echo(f"{file}: no such file", err=True)
        sys.exit(2)
    try:
        info = run_probe(file)
        if not quick:
            decode_check(info)
    except ProbeRejected as exc:
        click.echo(f"{file}: {exc.reason}", err=True)
        sys.exit(1)
    except FFmpegError as exc:
        click.echo(f"{file}: could not be read: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
    else:
        sound = f" + {info.audio_codec}" if info.has_audio else ", no audio"
        click.echo(f"{file}: {info.width}x{info.height} {info.fps:g} fps {info.duration:.2f} s "
                   f"{info.video_codec}{sound}")
        # what the participant is told of the file's length (kept, but worth knowing)
        for check in length_checks(info, None):
            click.echo(f"  {check.severity} {check.code}: {check.message}")


@main.command()
@click.argument("texts", nargs=-1)
def fonts(texts: tuple[str, ...]) -> None:
    """Show the fonts names are drawn with; with TEXTS, which font draws each part of each
    text. Exit 1 when a font or the text shaping is missing, or a text has characters no
    font holds."""
    from workers.media.typeset import INSTALL_HINT, clean_text, layout, text_support

    support = text_support()
    click.echo(f"shaping (raqm: HarfBuzz + FriBiDi): {'yes' if support['shaping'] else 'NO'}")
    click.echo("fonts, in lookup order: " + ", ".join(support["fonts"]))
    failed = False
    if support["missing"]:
        click.echo(f"missing: {', '.join(support['missing'])}: {INSTALL_HINT}", err=True)
        failed = True
    if not support["shaping"]:
        click.echo("no text shaping: install libfribidi0 (Debian) so Pillow's raqm layout works",
                   err=True)
        failed = True
    for text in texts:
        line = layout(clean_text(text), 24)
        parts = " | ".join(f"{run.text.strip()} ({run.face.family}{', rtl' if run.rtl else ''})"
                           for run in line.runs)
        click.echo(f"{text}: {parts}")
        if line.missing:
            click.echo(f"  no font holds: {' '.join(line.missing)}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@main.command()
@click.argument("guide", type=click.Path(exists=True, dir_okay=False))
@click.argument("clip", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option("--record-start", "record_start", type=float, default=None,
              help="the take's start on the guide's clock (s), as the recording page "
                   "measured it: checked against the sound (a prior, never in its place)")
def align(guide: str, clip: str, as_json: bool, record_start: float | None) -> None:
    """Find CLIP's offset against GUIDE (offset_seconds: trim that much from the clip)."""
    from workers.media.align import CONFIDENCE_THRESHOLD, AlignError, align_files
    from workers.media.align.prior import RecordTiming, check_prior

    try:
        result = align_files(guide, clip, prior_offset=None if record_start is None
                             else -record_start)
    except AlignError as exc:
        click.echo(f"{clip}: {exc.reason}", err=True)
        sys.exit(1)
    check = None
    if record_start is not None:
        check = check_prior(result, RecordTiming(start_s=record_start))
        result = check.result
    if as_json:
        body = result.to_json_dict()
        if check is not None:
            body["record_error_ms"] = (None if check.error_ms is None
                                       else round(check.error_ms, 2))
            body["record_agrees"] = check.agrees
            body["record_conflict"] = check.conflict
        click.echo(json.dumps(body))
    else:
        verdict = "synced" if result.trusted else "needs a manual check"
        click.echo(f"offset {result.offset_seconds:+.3f} s, confidence {result.confidence:.2f} "
                   f"(threshold {CONFIDENCE_THRESHOLD:.2f}: {verdict}), method {result.method}, "
                   f"drift {result.drift_ppm:+.0f} ppm")
        if check is not None and check.error_ms is not None:
            click.echo(f"recorded start {'agrees' if check.agrees else 'disagrees'}: the sound "
                       f"is {check.error_ms:+.1f} ms from it"
                       + (" (too far: not trusted)" if check.conflict else ""))


@main.command()
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--poster", default=None, type=click.Path(dir_okay=False))
@click.option("--engine", type=click.Choice(["ffmpeg", "moviepy"]), default="ffmpeg",
              show_default=True, help="moviepy: the slow, readable reference engine")
@click.option("--segments", default=None, type=click.IntRange(1, 1000),
              help="cut the picture into N segments, joined without re-encoding "
                   "(default: as many as there are cores, or none when it is drawn in strips)")
@click.option("--jobs", default=None, type=click.IntRange(1, 64),
              help="segments (or strips) rendered at once (default: the number of cores, "
                   "each process then kept on a core of its own)")
@click.option("--proxies", "proxy_dir", default=None, type=click.Path(file_okay=False),
              help="cache cell-size proxies of the clips in this directory: a re-render "
                   "decodes them instead of the clips")
def compose(spec_file: str, output: str, poster: str | None, engine: str,
            segments: int | None, jobs: int | None, proxy_dir: str | None) -> None:
    """Render a RenderSpec JSON file to OUTPUT."""
    from workers.media.ffmpeg import FFmpegError
    from workers.media.render import render as render_spec
    from workers.media.spec import SpecError, check_files, parse_spec

    try:
        with open(spec_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{spec_file} is not valid JSON: {exc}") from exc
    try:
        spec = parse_spec(data)
        check_files(spec)
    except SpecError as exc:
        raise click.ClickException(f"{spec_file}: {exc}") from exc
    if engine == "moviepy":
        from workers.media.reference import render_reference

        click.echo(render_reference(spec, output))
        return
    try:
        result = render_spec(spec, output, poster_path=poster, segments=segments, jobs=jobs,
                             proxy_dir=proxy_dir)
    except (FFmpegError, SpecError) as exc:
        raise click.ClickException(f"render failed: {exc}") from exc
    click.echo(f"{result.path} ({result.width}x{result.height}, {result.duration:.2f} s)")


from .demo import demo  # noqa: E402 - registers `tutti demo`

main.add_command(demo)
