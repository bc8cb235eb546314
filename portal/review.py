"""Review at scale: the queries behind the organizer's clip list, review view, parts
roster and campaign list.

Everything here is paged and counted in the database, so a page costs the same with
50,000 clips in a campaign as with 50: one page of rows (``per_page``, 50 by default),
one count, and grouped counts per status and part. Filters and sorting come from a
request's query string through :meth:`ReviewQuery.from_args`, which turns anything it
does not know into the default instead of an error (a hand-edited URL shows the
whole list, never a 500).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from flask import g, has_request_context
from sqlalchemy import and_, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from .extensions import db
from .models import Campaign, Clip
from .watch import media_signature, media_url_expiry

# --- statuses in people's words -----------------------------------------------------

#: the status filter: key in the URL -> (what an organizer reads, clip statuses)
STATUS_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "awaiting": ("Awaiting review", ("normalized", "synced", "needs_sync")),
    "sync_check": ("Sync needs a listen", ("needs_sync",)),
    "approved": ("Approved", ("approved",)),
    "declined": ("Declined", ("declined",)),
    "processing": ("Being processed", ("received", "checked")),
    "unusable": ("Could not be used", ("rejected", "failed")),
    "withdrawn": ("Withdrawn", ("withdrawn",)),
}
#: statuses an organizer still has to decide on
AWAITING = STATUS_GROUPS["awaiting"][1]

#: a clip's status as the review list says it
STATUS_WORDS = {
    "received": "Uploaded, waiting to be processed",
    "checked": "Being converted",
    "normalized": "Awaiting review",
    "synced": "Awaiting review (synced)",
    "needs_sync": "Awaiting review: sync needs a listen",
    "approved": "Approved",
    "declined": "Declined",
    "rejected": "Rejected: not a usable video",
    "failed": "Processing failed",
    "withdrawn": "Withdrawn by the participant",
}

#: sync-confidence filter: key -> (label, condition)
LOW_CONFIDENCE = 0.5
SYNC_FILTERS: dict[str, str] = {
    "low": f"Low (below {LOW_CONFIDENCE:.1f}) or failed",
    "high": f"Good ({LOW_CONFIDENCE:.1f} or more)",
    "none": "Not synced",
}

#: sort key -> label
SORTS: dict[str, str] = {
    "oldest": "Oldest first",
    "newest": "Newest first",
    "name": "Name A-Z",
    "confidence": "Lowest sync confidence first",
}
PER_PAGE_CHOICES = (25, 50, 100)  # 100 rows are about 160 KB of HTML (goal: 200 KB)


@dataclass(frozen=True)
class ReviewQuery:
    """One view of a campaign's clips: filters, order and page (1-based)."""

    status: str | None = None  # a key of STATUS_GROUPS
    part: int | None = None  # a part id of the campaign, or 0 for "no part"
    sync: str | None = None  # a key of SYNC_FILTERS
    warnings: bool = False  # only clips with at least one warning check
    q: str = ""  # name or location contains
    sort: str = "oldest"
    page: int = 1
    per_page: int = 50

    @classmethod
    def from_args(cls, args: Mapping[str, str], campaign: Campaign) -> ReviewQuery:
        """The query a URL's arguments ask for; unknown or malformed values fall back to
        the defaults."""
        status = args.get("status") or None
        if status not in STATUS_GROUPS:
            status = None
        part = _int(args.get("part"))
        if part is not None and part != 0 and part not in {p.id for p in campaign.parts}:
            part = None
        sync = args.get("sync") or None
        if sync not in SYNC_FILTERS:
            sync = None
        sort = args.get("sort") or "oldest"
        if sort not in SORTS:
            sort = "oldest"
        per_page = _int(args.get("per_page")) or 50
        if per_page not in PER_PAGE_CHOICES:
            per_page = 50
        page = _int(args.get("page")) or 1
        q = (args.get("q") or "").replace("\x00", "").strip()[:80]
        return cls(status=status, part=part, sync=sync,
                   warnings=args.get("warnings") in ("1", "yes", "on"), q=q, sort=sort,
                   page=max(1, min(page, 1_000_000)), per_page=per_page)

    def args(self, **changes: Any) -> dict[str, Any]:
        """The URL arguments of this query (defaults left out), with ``changes``."""
        query = replace(self, **changes) if changes else self
        out: dict[str, Any] = {}
        if query.status:
            out["status"] = query.status
        if query.part is not None:
            out["part"] = query.part
        if query.sync:
            out["sync"] = query.sync
        if query.warnings:
            out["warnings"] = "1"
        if query.q:
            out["q"] = query.q
        if query.sort != "oldest":
            out["sort"] = query.sort
        if query.per_page != 50:
            out["per_page"] = query.per_page
        if query.page != 1:
            out["page"] = query.page
        return out

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.part is not None or self.sync or self.warnings
                    or self.q)


def _int(value: str | None) -> int | None:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= 2**31 - 1 else None


def _conditions(campaign: Campaign, query: ReviewQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Clip.campaign_id == campaign.id]
    if query.status:
        where.append(Clip.status.in_(STATUS_GROUPS[query.status][1]))
    if query.part == 0:
        where.append(Clip.part_id.is_(None))
    elif query.part is not None:
        where.append(Clip.part_id == query.part)
    if query.sync == "low":
        where.append(or_(Clip.sync_confidence < LOW_CONFIDENCE, Clip.sync_state == "failed"))
    elif query.sync == "high":
        where.append(Clip.sync_confidence >= LOW_CONFIDENCE)
    elif query.sync == "none":
        where.append(Clip.sync_confidence.is_(None))
    if query.warnings:
        where.append(Clip.warning_count > 0)
    if query.q:
        pattern = "%" + query.q.lower().replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_") + "%"
        where.append(or_(func.lower(Clip.display_name).like(pattern, escape="\\"),
                         func.lower(Clip.location).like(pattern, escape="\\")))
    return where


#: the order of "lowest sync confidence first" (clips without one last)
CONFIDENCE_ORDER = func.coalesce(Clip.sync_confidence, literal_column("2.0"))


def _sort_columns(sort: str) -> list[tuple[ColumnElement[Any], bool]]:
    """(column, ascending) pairs, the clip id last so that the order is total."""
    if sort == "newest":
        return [(Clip.id, False)]
    if sort == "name":
        return [(func.lower(Clip.display_name), True), (Clip.id, True)]
    if sort == "confidence":
        # the expression of the index ix_clips_campaign_confidence, literally (a bound
        # 2.0 would be another expression to the planner): the page is read from it
        return [(CONFIDENCE_ORDER, True), (Clip.id, True)]
    return [(Clip.id, True)]


@dataclass(frozen=True)
class Page:
    """One page of clips and where it sits in the whole filtered list."""

    clips: list[Clip]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def first_index(self) -> int:
        """1-based position of the first clip of this page in the filtered list."""
        return (self.page - 1) * self.per_page + 1 if self.total else 0


def clip_page(campaign: Campaign, query: ReviewQuery,
              counts: dict[str, int] | None = None) -> Page:
    """The clips of ``campaign`` that ``query`` selects, one page of them, and their
    total. A page past the end shows the last page. ``counts`` (from
    :func:`status_counts`) saves the count query when only the status filters."""
    where = _conditions(campaign, query)
    only_status = not (query.part is not None or query.sync or query.warnings or query.q)
    if counts is not None and only_status:
        total = counts[query.status or "all"]
    else:
        total = db.session.scalar(select(func.count(Clip.id)).where(*where)) or 0
    pages = max(1, math.ceil(total / query.per_page))
    page = min(query.page, pages)
    order = [col.asc() if up else col.desc() for col, up in _sort_columns(query.sort)]
    clips = list(db.session.scalars(
        select(Clip).where(*where).order_by(*order)
        .limit(query.per_page).offset((page - 1) * query.per_page)))
    return Page(clips=clips, total=total, page=page, per_page=query.per_page)


def neighbours(campaign: Campaign, query: ReviewQuery, clip: Clip) -> tuple[int | None,
                                                                            int | None]:
    """The ids of the clips before and after ``clip`` in ``query``'s filtered order
    (None at either end). ``clip`` itself need not match the filters any more (it may
    just have been approved out of "awaiting review")."""
    where = _conditions(campaign, query)
    columns = _sort_columns(query.sort)
    values = db.session.execute(
        select(*[col for col, _ in columns]).where(Clip.id == clip.id)).one()

    def beyond(forward: bool) -> ColumnElement[bool]:
        # a row-value comparison spelled out: (a, b, id) > (va, vb, vid)
        terms = []
        for i, (col, up) in enumerate(columns):
            later = (col > values[i]) if up == forward else (col < values[i])
            terms.append(and_(*[c == values[j] for j, (c, _) in enumerate(columns[:i])],
                              later))
        return or_(*terms)

    def first(forward: bool) -> int | None:
        order = [(col.asc() if up == forward else col.desc()) for col, up in columns]
        return db.session.scalar(select(Clip.id).where(*where, beyond(forward))
                                 .order_by(*order).limit(1))

    return first(False), first(True)


def grouped_counts(campaign: Campaign) -> dict[tuple[int | None, str], int]:
    """(part id, status) -> number of the campaign's clips: one grouped query over the
    (campaign, part, status) index, read once per request (the status counts, the parts
    roster and the stale check of one page all come from it)."""
    cache = g.setdefault("tutti_grouped_counts", {}) if has_request_context() else {}
    if campaign.id not in cache:
        cache[campaign.id] = {(part_id, status): number for part_id, status, number in
                              db.session.execute(
                                  select(Clip.part_id, Clip.status, func.count())
                                  .where(Clip.campaign_id == campaign.id)
                                  .group_by(Clip.part_id, Clip.status))}
    return cache[campaign.id]


def forget_counts() -> None:
    """Drop the counts read in this request (after a change of status)."""
    g.pop("tutti_grouped_counts", None)


def status_counts(campaign: Campaign) -> dict[str, int]:
    """Number of clips per status group key (and ``"all"``), from :func:`grouped_counts`."""
    by_status: dict[str, int] = {}
    for (_part, status), number in grouped_counts(campaign).items():
        by_status[status] = by_status.get(status, 0) + number
    counts = {key: sum(by_status.get(s, 0) for s in statuses)
              for key, (_label, statuses) in STATUS_GROUPS.items()}
    counts["all"] = sum(by_status.values())
    return counts


@dataclass(frozen=True)
class RosterRow:
    """One part of the parts roster. ``part_id`` 0 is the clips without a part."""

    part_id: int
    name: str
    target: int | None
    approved: int
    awaiting: int
    total: int

    @property
    def coverage(self) -> float | None:
        """Approved clips over the target, capped at 1 (None without a target)."""
        if not self.target:
            return None
        return min(1.0, self.approved / self.target)

    @property
    def missing(self) -> int:
        """Approved clips still wanted to reach the target (0 without a target)."""
        return max(0, (self.target or 0) - self.approved)


def parts_roster(campaign: Campaign) -> list[RosterRow]:
    """Every part with its target and its approved, awaiting and total clip counts
    (one grouped query); a last row for clips without a part when there are any."""
    counted: dict[int | None, list[int]] = {}  # part id -> [approved, awaiting, total]
    for (part_id, status), number in grouped_counts(campaign).items():
        if status == "withdrawn":
            continue
        got = counted.setdefault(part_id, [0, 0, 0])
        got[0] += number if status == "approved" else 0
        got[1] += number if status in AWAITING else 0
        got[2] += number
    rows = [RosterRow(part.id, part.name, part.target_count, *counted.get(part.id, [0, 0, 0]))
            for part in campaign.parts]
    if None in counted:
        rows.append(RosterRow(0, "No part", None, *counted[None]))
    return rows


def campaign_counts(campaign_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """campaign id -> (clips, awaiting review, approved), withdrawn clips left out, in
    one grouped query."""
    if not campaign_ids:
        return {}
    counts: dict[int, tuple[int, int, int]] = {}
    for cid, status, number in db.session.execute(
            select(Clip.campaign_id, Clip.status, func.count())
            .where(Clip.campaign_id.in_(campaign_ids), Clip.status != "withdrawn")
            .group_by(Clip.campaign_id, Clip.status)):  # from the (campaign, status) index
        total, awaiting, approved = counts.get(cid, (0, 0, 0))
        counts[cid] = (total + number, awaiting + (number if status in AWAITING else 0),
                       approved + (number if status == "approved" else 0))
    return counts


def published_is_stale(campaign: Campaign) -> bool:
    """Whether the approved clips changed since the published render took its list.

    Exact without reading every approved id: the render's ``clip_ids`` were the
    approved clips when it started (after ``created_at``). If no clip of the
    campaign became approved since ``created_at``, today's approved clips are a
    subset of that list, so the two are equal exactly when their numbers are. (A
    clip approved between the render's creation and its start counts as a change:
    the answer errs towards "render again".) Two indexed queries."""
    if campaign.published_render_id is None:
        return False
    from .models import ClipEvent, Render

    created, clip_ids = db.session.execute(
        select(Render.created_at, Render.clip_ids)
        .where(Render.id == campaign.published_render_id)).one()
    newly_approved = db.session.scalar(
        select(ClipEvent.id).join(Clip, Clip.id == ClipEvent.clip_id)
        .where(ClipEvent.status == "approved", ClipEvent.at > created,
               Clip.campaign_id == campaign.id).limit(1))
    if newly_approved is not None:
        return True
    approved = sum(number for (_part, status), number in grouped_counts(campaign).items()
                   if status == "approved")
    return approved != len(set(clip_ids or []))


def clips_of(campaign: Campaign, ids: list[int]) -> list[Clip]:
    """Those of ``ids`` that are clips of ``campaign`` (others are ignored, never
    touched: a forged id of another campaign's clip does nothing)."""
    if not ids:
        return []
    return list(db.session.scalars(select(Clip).where(
        Clip.campaign_id == campaign.id, Clip.id.in_(ids)).order_by(Clip.id)))


def part_options(campaign: Campaign) -> list[tuple[int, str]]:
    """(id, name) for the part filter, 0 standing for clips without a part."""
    return [(p.id, p.name) for p in campaign.parts] + [(0, "No part")]


__all__ = ["AWAITING", "Page", "ReviewQuery", "RosterRow", "STATUS_GROUPS",
           "STATUS_WORDS", "SORTS", "SYNC_FILTERS", "campaign_counts", "published_is_stale",
           "clip_page", "clips_of", "neighbours", "parts_roster", "status_counts"]


class Links:
    """The URLs of a page of review rows, built once per page and filled in per clip:
    ``url_for`` for each of a page's 50-200 rows (four links each) was a third of the
    page's server time. Ids and media ids are URL-safe by construction (integers,
    :func:`portal.models.new_token`), file names are the fixed names intake writes."""

    def __init__(self, url_for: Any, query: ReviewQuery) -> None:
        args = query.args()
        args.pop("page", None)
        self._clip = url_for("organize.clip", clip_id=1)[:-1]  # ".../clips/"
        tail = url_for("organize.review_clip", clip_id=1, **args)
        self._review_tail = tail[tail.index("/review"):]
        media = url_for("watch.clip_media", media_id="m", name="n")
        self._media = media[:-len("m/n")]
        self._expires: int | None = None  # one expiry for every URL of the page

    def review(self, clip_id: int) -> str:
        """The review view of a clip, with the list's filters and order."""
        return f"{self._clip}{clip_id}{self._review_tail}"

    def action(self, clip_id: int, name: str) -> str:
        """A clip's action URL: ``moderate``, ``retry``."""
        return f"{self._clip}{clip_id}/{name}"

    def media(self, clip: Clip, column: str) -> str | None:
        """Like :func:`portal.watch.clip_media_url` (the clip named by its media id,
        signed with :func:`portal.watch.media_signature`: the server refuses an
        unsigned one)."""
        key = getattr(clip, column)
        if not key:
            return None
        name = key.rsplit("/", 1)[-1]
        if self._expires is None:
            self._expires = media_url_expiry()
        signature = media_signature(clip.media_id, name, self._expires)
        return f"{self._media}{clip.media_id}/{name}?e={self._expires}&k={signature}"


SCHEMATIC_MAX_TILES = 400  # beyond this the schematic is words only (tiles under 2% of width)


@dataclass(frozen=True)
class Schematic:
    """The layouts a render would draw now, for the campaign page: ``grid`` (tile
    rectangles, canvas pixels) and ``sections`` ((part name, caption rectangle, tiles)
    per part), both for the approved clips on the campaign's canvas; ``summary`` in
    words. Rectangles are None above :data:`SCHEMATIC_MAX_TILES` tiles or when they
    do not fit (tiles under 2×2 px)."""

    width: int
    height: int
    approved: int
    grid: list | None
    sections: list | None
    summary: str


def layout_schematic(campaign: Campaign, roster: list[RosterRow]) -> Schematic | None:
    """The schematic of the grid and sections layouts for the approved clips of
    ``roster`` (see :func:`parts_roster`), computed by the renderer's own layout code
    (:mod:`workers.media.layout`); None when nothing is approved yet."""
    from workers.media.layout import (
        FINAL_GAP,
        LayoutError,
        grid_rects,
        grid_shape,
        section_rects,
    )

    width, height = campaign.canvas_width, campaign.canvas_height
    parts = [(row.name, row.approved) for row in roster if row.approved]
    n = sum(count for _name, count in parts)
    if not n:
        return None
    grid = sections = None
    try:
        rows, cols = grid_shape(n, width, height, gap=FINAL_GAP)
        summary = (f"Grid: {n} approved clip{'s' if n != 1 else ''} in {rows} row"
                   f"{'s' if rows != 1 else ''} of up to {cols} on the {width}×{height} canvas.")
        if n <= SCHEMATIC_MAX_TILES:
            grid = grid_rects(n, width, height, gap=FINAL_GAP)
            summary += f" Each tile is {grid[0].w}×{grid[0].h} px."
            boxes = section_rects([count for _name, count in parts], width, height,
                                  gap=FINAL_GAP)
            sections = [(name, box.caption, list(box.tiles))
                        for (name, _count), box in zip(parts, boxes, strict=True)]
    except LayoutError:
        summary = (f"{n} approved clips do not fit on the {width}×{height} canvas as a grid: "
                   "use the montage layout or a larger canvas.")
    return Schematic(width, height, n, grid, sections, summary)
