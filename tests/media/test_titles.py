import numpy as np
import pytest
from PIL import Image

from workers.media import titles, typeset
from workers.media.spec import parse_spec
from workers.media.titles import (
    caption_image,
    clean_text,
    credit_groups,
    credits_image,
    credits_y,
    credits_y_expr,
    intro_card,
    label_image,
    performers_line,
)

NAMES = ["Zoë Ångström", "Jürgen Groß", "李小龙", "Ana", "", "Ωmega Ελένη", "محمد"]


def _spec(n: int = 7, **extra) -> object:
    clips = [{"id": f"c{i}", "path": f"{i}.mp4", "name": NAMES[i % len(NAMES)],
              "part": ["soprano", "alto", "tenor"][i % 3], "location": "Zürich" if i % 2 else ""}
             for i in range(n)]
    return parse_spec({"version": 1, "canvas": {"width": 320, "height": 180,
                                                "background": "#203040"},
                       "clips": clips, **extra})


def _rgba(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        return np.asarray(image)


def test_the_last_resort_font_is_bundled():
    assert (typeset.BUNDLED_FONTS / "DejaVuSans.ttf").is_file()
    assert (typeset.BUNDLED_FONTS / "DejaVuSans-Bold.ttf").is_file()
    assert (typeset.BUNDLED_FONTS / "LICENSE").is_file()
    assert typeset.font_chain()[-1].path == str(typeset.BUNDLED_FONTS / "DejaVuSans.ttf")


def test_clean_text_removes_controls_and_bidi_overrides():
    assert clean_text("  Ana\n\tMaria\u202e\x1b[31m ") == "Ana Maria[31m"
    assert clean_text("Zoë 李") == "Zoë 李"


def test_label_image(tmp_path):
    out = tmp_path / "label.png"
    w, h = label_image("Zoë", 200, 24, str(out))
    pixels = _rgba(out)
    assert pixels.shape == (h, w, 4) and h == 24 and w % 2 == 0 and w < 200
    assert 100 < pixels[1, 1, 3] < 255, "a semi-transparent box"
    assert pixels[..., :3].max() > 200, "white text is drawn"
    long_w, _ = label_image("A very long name that cannot possibly fit " * 3, 120, 24,
                            str(tmp_path / "long.png"))
    assert long_w <= 120


@pytest.mark.parametrize("name", NAMES + ["🎻 Violin", "x" * 200])
def test_unicode_names_render(tmp_path, name):
    """Every name is drawn with glyphs (no font's box), as ink in the label; the test of
    every script is tests/media/test_typeset.py."""
    w, h = label_image(name, 160, 20, str(tmp_path / "n.png"))
    assert w >= 2 and h == 20
    assert typeset.missing_glyphs([name]) == {}
    if name:
        assert _rgba(tmp_path / "n.png")[..., :3].max() > 200, "the name is drawn"


def test_caption_image(tmp_path):
    out = caption_image("Sopranos", 200, 30, str(tmp_path / "cap.png"))
    pixels = _rgba(out)
    assert pixels.shape == (30, 200, 4)
    assert pixels[0, -1, 3] == 0, "transparent background"
    assert pixels[..., 3].max() == 255, "text is drawn"


def test_intro_card(tmp_path):
    spec = _spec(intro={"title": "Ode to Joy — Tutti", "subtitle": "Beethoven", "seconds": 2})
    out = intro_card(spec, str(tmp_path / "intro.png"))
    with Image.open(out) as image:
        assert image.size == (320, 180) and image.mode == "RGB"
        pixels = np.asarray(image)
    assert tuple(pixels[2, 2]) == (0x20, 0x30, 0x40)
    assert pixels.max() > 200
    centre = pixels[60:120].reshape(-1, 3)
    assert (np.abs(centre.astype(int) - [0x20, 0x30, 0x40]).sum(axis=1) > 100).any()
    assert performers_line(spec) == "7 performers · 3 parts"
    assert performers_line(_spec(1)) == "1 performer"


def test_credits_list_everyone_grouped_by_part(tmp_path):
    spec = _spec(credits={"seconds": 5, "title": "Thank you"})
    groups = credit_groups(spec)
    assert [part for part, _ in groups] == ["soprano", "alto", "tenor"]
    assert groups[0][1][0] == "Zoë Ångström"
    assert groups[0][1][1] == "Ana — \u2068Zürich\u2069", "the place is a bidi isolate"
    assert groups[1][1] == ["Jürgen Groß — \u2068Zürich\u2069", "Anonymous"]
    assert sum(len(names) for _, names in groups) == 7
    path, height = credits_image(spec, str(tmp_path / "credits.png"))
    pixels = _rgba(path)
    assert pixels.shape == (height, 320, 4) and height % 2 == 0
    assert height > 180 * 0.5
    assert pixels[0, 0, 3] == 0, "transparent background"
    rows_with_text = np.nonzero(pixels[..., 3].max(axis=1))[0]
    assert rows_with_text.size and rows_with_text.max() < height


def test_credits_of_many_clips_use_columns_and_stay_bounded(tmp_path):
    clips = [{"id": f"c{i}", "path": "x", "name": f"Singer number {i}", "part": f"p{i % 8}"}
             for i in range(1000)]
    spec = parse_spec({"version": 1, "canvas": {"width": 1280, "height": 720},
                       "credits": True, "clips": clips})
    path, height = credits_image(spec, str(tmp_path / "c.png"))
    assert height <= titles.MAX_CREDITS_HEIGHT
    pixels = _rgba(path)
    assert pixels[..., 3][:, :640].max() == 255 and pixels[..., 3][:, 640:].max() == 255


def test_credits_scroll_from_bottom_to_top():
    assert credits_y(0, 180, 400, 10) == 180
    assert credits_y(10, 180, 400, 10) == -400
    assert credits_y(5, 180, 400, 10) == pytest.approx(-110)
    assert credits_y(-1, 180, 400, 10) == 180
    expr = credits_y_expr(180, 400, 10, start=12.5)
    assert expr == "180-58.000000*(t-12.500000)"
    assert set(expr) <= set("0123456789.-*()t")
    t = 17.5
    assert eval(expr, {"t": t}) == pytest.approx(credits_y(t - 12.5, 180, 400, 10))


@pytest.mark.parametrize(("width", "height", "n"), [(3840, 2160, 600), (1920, 1080, 1000)])
def test_credits_of_a_huge_choir_leave_out_nobody(tmp_path, width, height, n):
    clips = [{"id": f"c{i}", "path": "x", "name": f"Person {i:04d}", "location": "Lima",
              "part": ["Soprano", "Alto", "Tenor", "Bass"][i % 4]} for i in range(n)]
    spec = parse_spec({"version": 1, "canvas": {"width": width, "height": height},
                       "credits": True, "clips": clips})
    plan = titles.credits_layout(spec)
    names = [text for text, heading in plan.rows if text and not heading]
    assert len(names) == n
    assert plan.height <= titles.MAX_CREDITS_HEIGHT
    assert plan.cols * plan.per_col >= len(plan.rows)
    path, image_h = credits_image(spec, str(tmp_path / "c.png"))
    assert image_h == plan.height
    with Image.open(path) as image:
        alpha = np.asarray(image.getchannel("A"))
    col_w = width / plan.cols
    drawn = 0
    for k, (text, _) in enumerate(plan.rows):
        if not text:
            continue
        col, y = plan.position(k)
        band = alpha[round(y - plan.line_h * 0.3):round(y + plan.line_h * 0.3),
                     round(col * col_w):round((col + 1) * col_w)]
        drawn += bool(band.size and band.max() > 0)
    assert drawn == sum(1 for text, _ in plan.rows if text), "every row has ink where it belongs"


def test_a_label_with_no_room_is_transparent_not_a_stub(tmp_path):
    width, height = label_image("Ana", 6, 24, str(tmp_path / "l.png"))
    assert width == 2
    assert _rgba(tmp_path / "l.png")[..., 3].max() == 0
