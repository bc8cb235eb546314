import itertools

import pytest

from workers.media.layout import Rect, _tile_size, grid_rects, grid_shape

CANVASES = [(1920, 1080), (1280, 720), (640, 360), (720, 1280), (1080, 1080), (3840, 2160)]


def _check_layout(rects: list[Rect], n: int, width: int, height: int, gap: int,
                  aspect: float) -> None:
    assert len(rects) == n
    w, h = rects[0].w, rects[0].h
    for r in rects:
        assert (r.w, r.h) == (w, h), "all tiles have one size"
        assert r.w % 2 == 0 and r.h % 2 == 0 and r.x % 2 == 0 and r.y % 2 == 0
        assert r.x >= 0 and r.y >= 0 and r.right <= width and r.bottom <= height
    # aspect ratio kept to within the 2-pixel rounding of the height
    assert abs(w / aspect - h) <= 2
    rows: dict[int, list[Rect]] = {}
    for r in rects:
        rows.setdefault(r.y, []).append(r)
    ys = sorted(rows)
    # rows do not overlap and tiles within a row do not overlap (so no two tiles do)
    for upper, lower in itertools.pairwise(ys):
        assert upper + h + gap - 1 <= lower
    for row in rows.values():
        xs = sorted(r.x for r in row)
        for left, right in itertools.pairwise(xs):
            assert left + w + gap - 1 <= right
    # reading order: row by row, left to right
    assert rects == sorted(rects, key=lambda r: (r.y, r.x))
    # the grid is centred, and so is each row (the last, partial one included)
    top, bottom = rects[0].y, rects[-1].bottom
    assert abs(top - (height - bottom)) <= 2
    for row in rows.values():
        left, right = row[0].x, row[-1].right
        assert abs(left - (width - right)) <= 3


@pytest.mark.parametrize("width, height", CANVASES)
@pytest.mark.parametrize("gap", [0, 4, 3])
def test_grid_invariants_for_1_to_500_tiles(width, height, gap):
    aspect = 16 / 9
    for n in range(1, 501):
        _check_layout(grid_rects(n, width, height, gap=gap), n, width, height, gap, aspect)


@pytest.mark.parametrize("aspect", [9 / 16, 4 / 3, 1.0])
def test_other_tile_aspects(aspect):
    for n in range(1, 120):
        rects = grid_rects(n, 1280, 720, tile_aspect=aspect, gap=2)
        _check_layout(rects, n, 1280, 720, 2, aspect)


def test_grid_shape_maximises_the_tile_area():
    for n in range(1, 200):
        rows, cols = grid_shape(n, 1280, 720, gap=4)
        assert rows * cols >= n and (rows - 1) * cols < n
        best = _tile_size(rows, cols, 1280, 720, 16 / 9, 4)
        for c in range(1, n + 1):
            r = -(-n // c)
            other = _tile_size(r, c, 1280, 720, 16 / 9, 4)
            assert best[0] * best[1] >= other[0] * other[1]


@pytest.mark.parametrize("n, canvas, shape", [
    (1, (1280, 720), (1, 1)),
    (2, (1280, 720), (1, 2)),
    (2, (720, 1280), (2, 1)),
    (3, (1280, 720), (2, 2)),
    (4, (1280, 720), (2, 2)),
    (9, (1280, 720), (3, 3)),
    (10, (1280, 720), (3, 4)),
    (5, (720, 1280), (5, 1)),
    (16, (1920, 1080), (4, 4)),
])
def test_known_shapes(n, canvas, shape):
    assert grid_shape(n, *canvas) == shape


def test_one_tile_fills_a_matching_canvas():
    assert grid_rects(1, 1280, 720) == [Rect(0, 0, 1280, 720)]


def test_partial_last_row_is_centred():
    rects = grid_rects(3, 1280, 720)
    assert rects[:2] == [Rect(0, 0, 640, 360), Rect(640, 0, 640, 360)]
    assert rects[2] == Rect(320, 360, 640, 360)


def test_gap_separates_tiles():
    a, b = grid_rects(2, 1280, 720, gap=8)
    assert b.x - a.right >= 8


@pytest.mark.parametrize("args", [(0, 1280, 720), (5, 1, 720), (100000, 64, 36)])
def test_impossible_layouts_raise(args):
    with pytest.raises(ValueError):
        grid_rects(*args)


def test_negative_gap_raises():
    with pytest.raises(ValueError):
        grid_rects(4, 1280, 720, gap=-2)
