"""The moviepy reference engine, and the ffmpeg engine checked against it."""

import math

import numpy as np
import pytest
from PIL import Image

from tests.media.conftest import COLOURS as COLOUR_RGB
from workers.media.layout import label_box, timeline
from workers.media.reference import render_reference
from workers.media.render import render
from workers.media.spec import parse_spec
from workers.media.titles import label_image

COLOURS = ["red", "lime", "blue", "yellow"]
SAMPLES = (0.5, 1.5)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def clips(make_clip):
    return [make_clip(color=c, width=160, height=90, duration=2.0, fps=25, freq=300 + 100 * k)
            for k, c in enumerate(COLOURS)]


def _spec(clips, **extra):
    layout = extra.pop("layout", {"type": "grid", "gap": 4})
    return parse_spec({
        "version": 1, "canvas": {"width": 320, "height": 180, "fps": 25},
        "layout": layout, "video": {"preset": "ultrafast", "crf": 18}, "duration": 2.0,
        "clips": [{"id": c, "path": p, "name": c.title(), "part": "alto" if k % 2 else "tenor"}
                  for k, (c, p) in enumerate(zip(COLOURS, clips, strict=True))],
        **extra})


def _centre(frame, rect, colour_of):
    return colour_of(frame, rect.x + rect.w // 4, rect.y + rect.h // 4, rect.w // 2, rect.h // 2,
                     margin=0)


def _compare(spec, tmp_path, read_frame, colour_of, close_to, patterned=()):
    engine = str(tmp_path / "ffmpeg.mp4")
    oracle = str(tmp_path / "reference.mp4")
    render(spec, engine)
    render_reference(spec, oracle)
    scene = timeline(spec, 2.0)[0]
    for t in SAMPLES:
        a, b = read_frame(engine, t), read_frame(oracle, t)
        assert a.shape == b.shape == (180, 320, 3)
        assert psnr(a, b) >= 30, f"PSNR at {t} s is {psnr(a, b):.1f} dB"
        for p in scene.placements:  # the same clip in every tile
            if p.clip in patterned:
                continue
            expected = COLOURS[p.clip]
            assert close_to(_centre(a, p.rect, colour_of), expected), (t, p)
            assert close_to(_centre(b, p.rect, colour_of), expected), (t, p)


def test_both_engines_draw_the_same_grid(clips, tmp_path, read_frame, colour_of, close_to):
    _compare(_spec(clips), tmp_path, read_frame, colour_of, close_to)


def test_both_engines_scale_a_pattern_alike(clips, make_clip, tmp_path, read_frame, colour_of,
                                            close_to):
    pattern = make_clip(width=160, height=90, duration=2.0, fps=25)  # testsrc2
    spec = _spec([pattern, clips[1], pattern, clips[3]])
    _compare(spec, tmp_path, read_frame, colour_of, close_to, patterned=(0, 2))


def test_both_engines_draw_the_same_labels(clips, tmp_path, read_frame, colour_of, close_to):
    spec = _spec(clips, layout={"type": "grid", "gap": 4, "labels": True})
    _compare(spec, tmp_path, read_frame, colour_of, close_to)


def test_both_engines_draw_the_same_sections(clips, tmp_path, read_frame, colour_of, close_to):
    spec = _spec(clips, layout={"type": "sections", "gap": 4, "labels": True})
    assert timeline(spec, 2.0)[0].captions  # the parts' names
    _compare(spec, tmp_path, read_frame, colour_of, close_to)


def test_both_engines_draw_the_same_titles(clips, tmp_path, read_frame):
    """Intro card, labelled mash-up and scrolling credits, single and segmented."""
    spec = _spec(clips, intro={"title": "Ode to Joy", "subtitle": "São Paulo ' ; [x]",
                               "seconds": 1},
                 credits={"seconds": 1.5}, layout={"type": "grid", "gap": 4, "labels": True},
                 canvas={"width": 320, "height": 180, "fps": 25, "background": "#000"})
    single, split = str(tmp_path / "one.mp4"), str(tmp_path / "split.mp4")
    oracle = render_reference(spec, str(tmp_path / "reference.mp4"))
    for out in (render(spec, single).path, render(spec, split, segments=4, jobs=2).path):
        for t in (0.5, 1.5, 2.5, 3.3, 3.9):  # intro, mash-up, credits
            a, b = read_frame(out, t), read_frame(oracle, t)
            assert psnr(a, b) >= 30, f"{out}: PSNR at {t} s is {psnr(a, b):.1f} dB"


def test_reference_intro_grid_and_credits(clips, tmp_path, read_frame, colour_of, close_to):
    spec = _spec(clips, intro={"title": "Ode to Joy", "seconds": 1},
                 credits={"seconds": 1.5}, layout={"type": "grid", "gap": 4, "labels": True},
                 canvas={"width": 320, "height": 180, "fps": 25, "background": "#000"})
    out = render_reference(spec, str(tmp_path / "titled.mp4"))
    intro = read_frame(out, 0.5)
    assert colour_of(intro, 0, 0, 320, 40) == (0, 0, 0)
    assert intro[60:120].max() > 200, "the title is drawn"
    main = read_frame(out, 1.5)
    for p in timeline(spec, 2.0)[0].placements:
        assert close_to(_centre(main, p.rect, colour_of), COLOURS[p.clip])
        assert p.label
        label = main[p.rect.bottom - 12:p.rect.bottom - 4, p.rect.x + 4:p.rect.x + 20]
        assert label.mean() < np.mean(colour_of(main, *_xywh(p.rect))), "a dark label box"
    early, later = read_frame(out, 3.3), read_frame(out, 3.9)
    assert early.max() > 200 and later.max() > 200, "the credits are drawn"
    assert colour_of(early, 0, 0, 40, 40) == (0, 0, 0)
    rows = [np.nonzero(f.max(axis=(1, 2)) > 200)[0].min() for f in (early, later)]
    assert rows[1] < rows[0], "the credits scroll up"


def _xywh(rect):
    return rect.x, rect.y, rect.w, rect.h


def test_reference_spotlight_switches_and_hides(clips, tmp_path, read_frame, colour_of,
                                                close_to):
    spec = _spec(clips, layout={"type": "spotlight", "gap": 4,
                                "featured": [{"clip": "blue", "start": 1, "end": 2}]})
    spec = parse_spec({**_spec_dict(spec), "clips": [
        *_spec_dict(spec)["clips"][:3], {**_spec_dict(spec)["clips"][3], "hidden": True}]})
    out = render_reference(spec, str(tmp_path / "spot.mp4"))
    first, second = timeline(spec, 2.0)
    assert first.end == 1.0 and len(first.placements) == 3
    for scene, t in ((first, 0.5), (second, 1.5)):
        frame = read_frame(out, t)
        for p in scene.placements:
            assert close_to(_centre(frame, p.rect, colour_of), COLOURS[p.clip])
        assert not any(close_to(_centre(frame, p.rect, colour_of), "yellow")
                       for p in scene.placements)
    big = max(second.placements, key=lambda p: p.rect.w)
    assert big.clip == 2


def _spec_dict(spec):
    from workers.media.spec import spec_to_dict
    return spec_to_dict(spec)


def test_reference_keeps_offsets_and_holds_frames(make_clip, tmp_path, read_frame, colour_of,
                                                  close_to):
    late = make_clip(color="red", color_after="blue", switch_at=1.0, width=160, height=90,
                     duration=2.0, fps=25)
    spec = parse_spec({"version": 1, "canvas": {"width": 160, "height": 90, "fps": 25,
                                                "background": "#000"},
                       "layout": {"type": "grid", "gap": 0}, "duration": 2.0,
                       "clips": [{"id": "a", "path": late, "offset": -0.8}]})
    out = render_reference(spec, str(tmp_path / "late.mp4"))
    # before it starts, its first frame waits in the tile (no hole), as the engine draws it
    assert close_to(colour_of(read_frame(out, 0.4), 0, 0, 160, 90), "red")
    assert close_to(colour_of(read_frame(out, 1.2), 0, 0, 160, 90), "red")
    assert close_to(colour_of(read_frame(out, 1.9), 0, 0, 160, 90), "blue")


WORLD = ["محمد عبد الله", "李小龙 🎻", "प्रिया शर्मा", "Maria القحطاني"]


def _world_spec(clips, **extra):
    spec = _spec(clips, layout={"type": "grid", "gap": 4, "labels": True},
                 canvas={"width": 640, "height": 360, "fps": 25}, **extra)
    data = _spec_dict(spec)
    for clip, name in zip(data["clips"], WORLD, strict=True):
        clip["name"] = name
    return parse_spec(data)


def _label_drawing(name, box, colour, directory):
    """The label as the titles module draws it, over the tile's colour: the expected look."""
    path = str(directory / "expected-label.png")
    w, h = label_image(name, box.w, box.h, path)
    tile = Image.new("RGBA", (w, h), (*COLOUR_RGB[colour], 255))
    with Image.open(path) as label:
        tile.alpha_composite(label.convert("RGBA"))
    return np.asarray(tile.convert("RGB")), w, h


def test_world_names_in_a_rendered_frame_match_their_drawing(clips, tmp_path, read_frame):
    """Each tile's label in a frame of the ffmpeg render (Arabic, CJK with an emoji,
    Devanagari, a mixed-direction name) looks like the label drawn the same way on its own,
    and not like another name's label: what is encoded is the shaped, fallback-font text."""
    spec = _world_spec(clips)
    out = render(spec, str(tmp_path / "world.mp4")).path
    frame = read_frame(out, 1.0)
    scene = timeline(spec, 2.0)[0]
    for p in scene.placements:
        box = label_box(p.rect)
        assert box is not None and p.label
        expected, w, h = _label_drawing(WORLD[p.clip], box, COLOURS[p.clip], tmp_path)
        seen = frame[box.y:box.y + h, box.x:box.x + w]
        other = WORLD[(p.clip + 1) % len(WORLD)]
        wrong, w2, h2 = _label_drawing(other, box, COLOURS[p.clip], tmp_path)
        span = min(w, w2)
        assert psnr(seen, expected) >= 24, (WORLD[p.clip], psnr(seen, expected))
        assert psnr(seen[:, :span], expected[:, :span]) > psnr(seen[:, :span], wrong[:, :span]) + 6


def test_both_engines_draw_world_names_alike(clips, tmp_path, read_frame):
    spec = _world_spec(clips, intro={"title": "نشيد الفرح · 歓喜の歌 · Ode an die Freude",
                                     "seconds": 1}, credits={"seconds": 1.5})
    engine = render(spec, str(tmp_path / "engine.mp4")).path
    oracle = render_reference(spec, str(tmp_path / "oracle.mp4"))
    for t in (0.5, 1.5, 3.4):  # intro, labelled grid, credits
        a, b = read_frame(engine, t), read_frame(oracle, t)
        assert psnr(a, b) >= 30, f"PSNR at {t} s is {psnr(a, b):.1f} dB"
