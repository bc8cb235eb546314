"""The watch page worth sharing and the participant's status page (issue 14): paged
credits and gallery, find yourself by name, back and take-part links, card tags,
the embed snippet; what happens next, in plain words, for each status."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Campaign, Clip, Render


def _published(app, slug: str, n: int, *, poster: bool = True) -> list[str]:
    """``n`` approved clips in a published render (each appears 2 s after the one
    before); returns their tokens."""
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).filter_by(slug=slug))
        clips = [Clip(campaign=campaign, part=campaign.parts[0], display_name=f"Singer {i:03d}",
                      location="Lisbon", status="approved", thumbnail_key=f"clips/m{i}/thumb.jpg",
                      original_key=f"clips/m{i}/original.mp4") for i in range(n)]
        db.session.add_all(clips)
        db.session.flush()
        render = Render(campaign=campaign, kind="final", status="done", duration=120.0,
                        output_key=f"renders/{slug}/r/mashup.mp4",
                        poster_key=f"renders/{slug}/r/poster.jpg" if poster else None,
                        clip_ids=[c.id for c in clips],
                        appearances={c.token: 4.0 + 2 * i for i, c in enumerate(clips)})
        db.session.add(render)
        db.session.flush()
        campaign.published_render_id = render.id
        db.session.commit()
        return [c.token for c in clips]


def test_watch_page_pages_the_performers_and_finds_one_by_name(app, client, campaign):
    _published(app, campaign, 130)
    page = client.get(f"/watch/{campaign}").get_data(as_text=True)
    assert "130 performers" in page
    assert page.count("<figcaption") == 60 and "performers 1–60 of 130" in page
    rows = page.split('class="list credits"', 1)[1].split("</table>", 1)[0]
    assert rows.count("<tr>") == 61  # the header row and 60 performers
    # the gallery's thumbnails seek the player to the performer
    figure = page.split("<figure>", 2)[1]
    assert 'data-seek="4.0"' in figure and "Singer 000" in figure
    last = client.get(f"/watch/{campaign}?page=3").get_data(as_text=True)
    assert last.count("<figcaption") == 10 and "Singer 129" in last
    assert client.get(f"/watch/{campaign}?page=x").status_code == 200
    # find yourself: by a part of the name, with the moment to watch
    found = client.get(f"/watch/{campaign}?q=singer 12").get_data(as_text=True)
    block = found.split('id="found"', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r"Singer (\d+)", block) == [str(i) for i in range(120, 130)]
    assert 'data-seek="244.0"' in block  # Singer 120: 4 + 2 * 120 s
    none = client.get(f"/watch/{campaign}?q=nobody%25").get_data(as_text=True)
    assert "Nobody called “nobody%” is in this mash-up" in none


def test_watch_page_links_tags_and_embed(app, client, campaign):
    _published(app, campaign, 2)
    page = client.get(f"/watch/{campaign}").get_data(as_text=True)
    assert f'href="/c/{campaign}"' in page and 'id="take-part"' in page
    assert re.search(r'<meta property="og:image" content="http://tutti\.test/media/renders/'
                     r'ode-to-joy/r/poster\.jpg">', page)
    assert '<meta name="twitter:card" content="summary_large_image">' in page
    assert '<meta property="og:title" content="Ode to Joy">' in page
    assert f'&lt;iframe src="http://tutti.test/watch/{campaign}/embed"' in page
    with app.app_context():
        services.update_settings(services.get_campaign(campaign), {"is_open": ""})
    closed = client.get(f"/watch/{campaign}").get_data(as_text=True)
    assert 'id="take-part"' not in closed and f'href="/c/{campaign}"' in closed


def _clip(app, slug: str, status: str, reason: str | None = None) -> str:
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).filter_by(slug=slug))
        clip = Clip(campaign=campaign, display_name="Ana", status=status, reason=reason,
                    original_key="clips/s/original.mp4")
        db.session.add(clip)
        db.session.commit()
        return clip.token


def _next_step(client, token: str) -> str:
    page = client.get(f"/clip/{token}").get_data(as_text=True)
    return re.search(r'id="next-step"><strong>What happens next:</strong> ([^<]+)</p>',
                     page).group(1)


def test_status_page_says_what_happens_next(app, client, campaign):
    assert "checking and converting" in _next_step(client, _clip(app, campaign, "received"))
    assert "waiting for the organizers to review" in _next_step(
        client, _clip(app, campaign, "needs_sync"))
    assert "next mash-up" in _next_step(client, _clip(app, campaign, "approved"))
    declined = _clip(app, campaign, "declined", "Too quiet: please record closer")
    page = client.get(f"/clip/{declined}").get_data(as_text=True)
    assert "Too quiet: please record closer" in page
    assert "upload a new take below" in _next_step(client, declined)
    assert "Please upload a new file" in _next_step(client, _clip(app, campaign, "rejected"))
    assert "Nothing more will happen" in _next_step(client, _clip(app, campaign, "withdrawn"))
    [token] = _published(app, campaign, 1)
    assert "in the published mash-up at 00:04" in _next_step(client, token)
    page = client.get(f"/clip/{token}").get_data(as_text=True)
    assert 'data-in-mashup="yes"' in page and 'id="copy-link"' in page
    assert "status.js" in page


def test_find_yourself_reads_the_tile_map(app, client, campaign):
    """With a tile map, the watch page jumps to the moment a performer's own pictures
    play and hands the player their rectangles (to outline); a clip approved after the
    render is not in it, so it is not found."""
    from portal.models import RenderTile

    tokens = _published(app, campaign, 3)
    with app.app_context():
        clips = db.session.scalars(select(Clip).where(Clip.token.in_(tokens))
                                   .order_by(Clip.id)).all()
        render_id = services.get_campaign(campaign).published_render_id
        for k, clip in enumerate(clips[:2]):  # Singer 002 was approved afterwards
            db.session.add(RenderTile(render_id=render_id, clip_id=clip.id, x=320 * k, y=0,
                                      w=320, h=180, start=4.0, end=60.0, live=7.5 + k))
        db.session.commit()
    page = client.get(f"/watch/{campaign}?q=singer 00").get_data(as_text=True)
    block = page.split('id="found"', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r"<bdi>Singer (\d+)</bdi>", block) == ["000", "001"]
    assert 'data-seek="8.5"' in block and "data-tiles='[[320, 0, 320, 180, 4.0, 60.0]]'" in block
    assert block.count("data-found") == 1  # the first is outlined at once
    assert "2 performers" in page  # who is in the file, from the tile map
    assert "Singer 002" not in page.split('class="list credits"', 1)[1]
