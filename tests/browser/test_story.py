"""The whole story in real Chromium (issue 14): an organizer creates a campaign with
parts and a guide; three people upload their clips through the campaign page; the
organizer reviews them with the keyboard, renders a preview (whose publishing asks
for a confirmation), then a final, which is published; a viewer watches it (the video
plays) and finds a performer by name: the player jumps to them and their tile is
outlined over the video, at the rectangle of the render's tile map, where the
video's pixels are that performer's colour.

Tiny generated media: three 2 s clips of one solid colour each and a 3 s guide.
With ``TUTTI_STORY_SHOTS=docs`` the screenshots of each page are written there (the
README shows them); otherwise to the test's temporary folder."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.browser.conftest import organizer_page
from workers.media.ffmpeg import run_ffmpeg

pytestmark = pytest.mark.browser

PERFORMERS = [("Ana Story", "Alto", "red", (255, 0, 0)),
              ("Bea Story", "Alto", "lime", (0, 255, 0)),
              ("Cai Story", "Bass", "blue", (0, 0, 255))]
STATUS_PAGE = re.compile(r".*/clip/[A-Za-z0-9_-]{20,}$")


def _clip(root: Path, colour: str) -> Path:
    out = root / f"{colour}.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c={colour}:size=192x108:rate=25",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
                "-c:a", "aac", "-shortest", str(out)], timeout=60)
    return out


def _wait(what: str, check, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(app, slug: str):
    from portal.extensions import db
    from portal.models import Campaign, Clip, Render

    with app.app_context():
        db.session.expire_all()
        campaign = db.session.scalar(select(Campaign).filter_by(slug=slug))
        clips = db.session.scalars(select(Clip).filter_by(campaign_id=campaign.id)
                                   .order_by(Clip.id)).all()
        renders = db.session.scalars(select(Render).filter_by(campaign_id=campaign.id)
                                     .order_by(Render.id)).all()
        return ([(c.id, c.display_name, c.status) for c in clips],
                [(r.id, r.kind, r.status, r.reason) for r in renders],
                campaign.published_render_id)


def test_the_whole_story(live, browser, media_files, tmp_path):
    app, base = live["app"], live["base"]
    shots = Path(os.environ.get("TUTTI_STORY_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    slug = "story-choir"
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"story-{name}.png"), full_page=False)

    # the organizer logs in and creates the campaign: parts with targets, a guide
    organizer_page(page, base)
    page.fill("input[name=title]", "Story Choir")
    page.fill("input[name=slug]", slug)
    page.fill("textarea[name=description]", "Sing the tune, film yourself, upload.")
    page.fill("input[name=parts]", "Alto: 2, Bass: 1")
    page.set_input_files("input[name=guide]", str(media_files["guide"]))
    shot("1-create")
    page.click("button:has-text('Create')")
    page.wait_for_url(f"{base}/organize/c/{slug}")
    assert "Share this link with participants" in page.content()

    # three participants upload through the campaign page
    for name, part, colour, _rgb in PERFORMERS:
        upload = context.new_page()
        upload.goto(f"{base}/c/{slug}")
        upload.set_input_files("input[name=file]", str(_clip(tmp_path, colour)))
        upload.fill("input[name=name]", name)
        upload.select_option("select[name=part]", part)
        upload.fill("input[name=location]", "Lisbon")
        upload.check("input[name=consent]")
        if colour == "red":
            upload.screenshot(path=str(shots / "story-2-upload.png"))
        upload.click("button:has-text('Upload')")
        upload.wait_for_url(STATUS_PAGE, timeout=60_000)
        upload.close()
    awaiting = {"normalized", "synced", "needs_sync"}
    _wait("the three clips to be processed",
          lambda: len(c := _rows(app, slug)[0]) == 3 and all(s in awaiting for *_, s in c))

    # the organizer reviews them with the keyboard: A approves and goes on
    page.goto(f"{base}/organize/c/{slug}?status=awaiting")
    assert page.locator("tr.clip").count() == 3
    shot("3-review-list")
    page.click("#start-review")
    page.wait_for_url(re.compile(r".*/organize/clips/\d+/review\?status=awaiting$"))
    shot("4-review-view")
    for _ in range(3):
        current = page.url
        page.keyboard.press("a")
        page.wait_for_url(lambda url, current=current: url != current)
    _wait("the approvals", lambda: [s for *_, s in _rows(app, slug)[0]] == ["approved"] * 3,
          timeout=30)

    # a preview: publishing it asks first, and says it is a preview
    page.goto(f"{base}/organize/c/{slug}")
    page.click("button:has-text('Render preview')")
    _wait("the preview", lambda: any(k == "preview" and s == "done"
                                     for _, k, s, _r in _rows(app, slug)[1]))
    page.goto(f"{base}/organize/c/{slug}")
    page.click("button:has-text('publish the preview')")
    assert "preview" in page.locator("main").inner_text().lower()
    shot("5-publish-preview")
    assert _rows(app, slug)[2] is None  # nothing published without the confirmation

    # the final is published when it is done
    page.goto(f"{base}/organize/c/{slug}")
    page.click("button:has-text('Render final')")
    final = _wait("the final to be published", lambda: (rows := _rows(app, slug))[2] and [
        r for r in rows[1] if r[0] == rows[2] and r[1] == "final"])
    assert final[0][2] == "done", final
    page.goto(f"{base}/organize/c/{slug}")
    # the render section: the layout schematic of the three approved clips, the history
    assert page.locator("#layout-schematic svg[data-layout=grid] rect[x]").count() == 3
    page.locator("#renders-h").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('renders-h').scrollIntoView()")
    shot("6-renders")

    # the viewer: the video plays
    viewer = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
    viewer.goto(f"{base}/watch/{slug}")
    viewer.evaluate("document.getElementById('mashup').muted = true")
    viewer.evaluate("document.getElementById('mashup').play()")
    viewer.wait_for_function("() => document.getElementById('mashup').currentTime > 0.3",
                             timeout=30_000)
    viewer.evaluate("document.getElementById('mashup').pause()")

    # find yourself: Bea, by a part of her name
    viewer.fill("input[name=q]", "bea")
    viewer.click("button:has-text('Find')")
    viewer.wait_for_url(re.compile(r".*/watch/story-choir\?q=bea$"))
    outline = viewer.locator("#tile-outline")
    outline.wait_for(state="visible", timeout=30_000)
    viewer.evaluate("document.getElementById('mashup').pause()")
    viewer.evaluate("document.getElementById('mashup').muted = true")

    from portal.extensions import db
    from portal.models import Clip, RenderTile

    with app.app_context():
        bea = db.session.scalar(select(Clip).filter_by(display_name="Bea Story"))
        tiles = db.session.scalars(select(RenderTile).filter_by(
            render_id=final[0][0], clip_id=bea.id)).all()
        assert len(tiles) == 1
        tile = tiles[0]
    # the player jumped to Bea's moment, and the outline sits on her tile
    at = viewer.evaluate("document.getElementById('mashup').currentTime")
    assert tile.start - 0.1 <= at < tile.end
    geometry = viewer.evaluate("""() => {
        const v = document.getElementById('mashup'), o = document.getElementById('tile-outline');
        const vb = v.getBoundingClientRect(), ob = o.getBoundingClientRect();
        return {vx: vb.x, vy: vb.y, vw: vb.width, vh: vb.height, w: v.videoWidth,
                h: v.videoHeight, ox: ob.x, oy: ob.y, ow: ob.width, oh: ob.height};
    }""")
    scale = min(geometry["vw"] / geometry["w"], geometry["vh"] / geometry["h"])
    left = geometry["vx"] + (geometry["vw"] - geometry["w"] * scale) / 2
    top = geometry["vy"] + (geometry["vh"] - geometry["h"] * scale) / 2
    assert abs(geometry["ox"] - (left + tile.x * scale)) <= 2
    assert abs(geometry["oy"] - (top + tile.y * scale)) <= 2
    assert abs(geometry["ow"] - tile.w * scale) <= 2
    assert abs(geometry["oh"] - tile.h * scale) <= 2
    # and the video's pixels inside that rectangle are Bea's green
    rgb = viewer.evaluate("""([x, y]) => {
        const v = document.getElementById('mashup');
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d'); g.drawImage(v, 0, 0);
        return Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3));
    }""", [tile.x + tile.w // 2, tile.y + tile.h // 3])
    assert rgb[1] > 150 and rgb[0] < 100 and rgb[2] < 100, rgb
    viewer.screenshot(path=str(shots / "story-7-watch-find-yourself.png"))
    viewer.context.close()
    context.close()
