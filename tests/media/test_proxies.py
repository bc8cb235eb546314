import os
import subprocess
import threading
import time

import numpy as np
import pytest

from workers.media.layout import Rect, grid_rects
from workers.media.plan import plan_render
from workers.media.probe import ProbeLimits, probe
from workers.media.proxies import (
    PROXY_SCALES,
    ensure_proxies,
    ensure_proxy,
    proxy_name,
    proxy_scale,
    proxy_scales,
    prune,
)
from workers.media.render import render
from workers.media.spec import SpecError, parse_spec

W, H, FPS = 320, 180, 25


def test_scale_is_the_smallest_rung_that_covers_the_tile():
    assert proxy_scale(1280, 720, 314, 176) == 1 / 4  # needs 0.245
    assert proxy_scale(1280, 720, 330, 186) == 1 / 3  # needs 0.258
    assert proxy_scale(1280, 720, 150, 84) == 1 / 8
    assert proxy_scale(1280, 720, 40, 22) == 1 / 8  # the smallest rung
    assert proxy_scale(1280, 720, 640, 360) == 1 / 2
    assert proxy_scale(1280, 720, 700, 394) is None  # more than half: the clip itself
    # a portrait clip in a landscape tile is fitted by its height
    assert proxy_scale(720, 1280, 314, 176) == 1 / 6  # needs 0.1375
    assert proxy_scale(0, 0, 314, 176) is None
    assert list(PROXY_SCALES) == sorted(PROXY_SCALES)


@pytest.fixture(scope="module")
def counter_clip(tmp_path_factory, ffmpeg_exe):
    """640×360, 25 fps, 3 s; the luma tells the frame number: 60 + 2 * n."""
    path = str(tmp_path_factory.mktemp("proxy-clips") / "counter.mp4")
    subprocess.run(
        [ffmpeg_exe, "-hide_banner", "-nostdin", "-y", "-v", "error",
         "-f", "lavfi", "-i", "color=c=black:s=640x360:r=25:d=3",
         "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=3",
         "-vf", "geq=lum=60+2*N:cb=128:cr=128", "-c:v", "libx264", "-preset", "ultrafast",
         "-crf", "4", "-pix_fmt", "yuv420p", "-g", "50", "-c:a", "aac", "-shortest", path],
        check=True, capture_output=True, timeout=60)
    return path


def _luma(ffmpeg_exe, path, width, height):
    done = subprocess.run([ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-i", path,
                           "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                          capture_output=True, timeout=60, check=True)
    frames = np.frombuffer(done.stdout, np.uint8).reshape(-1, height * width * 3 // 2)
    return frames[:, :height * width].reshape(-1, height, width)


def _counters(frames, rect):
    inner = frames[:, rect.y + 6: rect.bottom - 6, rect.x + 6: rect.right - 6]
    means = inner.reshape(len(frames), -1).mean(axis=1)
    return [None if m < 45 else round((m - 60) / 2) for m in means]


def _spec(clips):
    return parse_spec({"version": 1, "canvas": {"width": W, "height": H, "fps": FPS},
                       "video": {"preset": "ultrafast", "crf": 12}, "clips": clips})


def test_plan_asks_for_proxies_of_clips_drawn_small(counter_clip, make_clip):
    big = make_clip(width=160, height=90)  # its tile is about its own size: no proxy
    plan = plan_render(_spec([{"id": "a", "path": counter_clip},
                              {"id": "b", "path": big}]))
    assert proxy_scales(plan) == {0: 1 / 4}  # 156×88 of 640×360 needs 0.244


def test_a_proxy_is_built_once_keeps_the_frame_times_and_follows_the_file(
        counter_clip, tmp_path, ffmpeg_exe):
    cache = str(tmp_path / "proxies")
    results = []

    def build():
        results.append(ensure_proxy(counter_clip, cache, 1 / 4, keyint=FPS))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    paths = {p for p, _ in results}
    assert len(paths) == 1 and sorted(b for _, b in results) == [False, False, True]
    (path,) = paths
    any_size = ProbeLimits(min_side=2)  # a proxy is smaller than an upload may be
    info, original = probe(path, any_size), probe(counter_clip, any_size)
    assert (info.width, info.height) == (160, 90) and not info.has_audio
    assert info.fps == original.fps and info.duration == pytest.approx(original.duration,
                                                                       abs=0.05)
    counts = _counters(_luma(ffmpeg_exe, path, 160, 90), Rect(10, 10, 140, 70))
    assert counts == list(range(75))  # every frame, in order, none repeated

    # rewriting the clip (a replaced take) gives it another proxy
    copy = str(tmp_path / "take.mp4")
    with open(counter_clip, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    before = proxy_name(copy, 1 / 4)
    time.sleep(0.01)
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert proxy_name(copy, 1 / 4) != before


def test_render_from_proxies_shows_the_same_frames(counter_clip, ffmpeg_exe, tmp_path):
    """Offsets, a clip starting late, four segments: every tile shows the same clip frame
    on the same output frame from proxies as from the clips; a re-render builds nothing."""
    spec = _spec([{"id": "early", "path": counter_clip, "offset": 0.37},
                  {"id": "late", "path": counter_clip, "offset": -0.61}])
    plain, cached, again = tmp_path / "plain.mp4", tmp_path / "cached.mp4", tmp_path / "again.mp4"
    cache = str(tmp_path / "proxies")
    render(spec, str(plain))
    render(spec, str(cached), segments=4, jobs=2, proxy_dir=cache)
    (name,) = [n for n in os.listdir(cache) if n.endswith(".mp4")]
    built = os.stat(os.path.join(cache, name)).st_ino
    seen: list[float] = []
    render(spec, str(again), proxy_dir=cache, progress=seen.append)
    assert os.stat(os.path.join(cache, name)).st_ino == built  # reused, not rebuilt
    assert seen[-1] == 1.0 and seen == sorted(seen)
    a = _luma(ffmpeg_exe, str(plain), W, H)
    for other in (cached, again):
        b = _luma(ffmpeg_exe, str(other), W, H)
        assert len(a) == len(b) == round((3 + 0.61) * FPS)
        for rect in grid_rects(2, W, H, gap=4):
            assert _counters(a, rect) == _counters(b, rect)
    late = _counters(a, grid_rects(2, W, H, gap=4)[1])
    # the late clip's tile holds its first frame until it starts (no hole), then plays
    assert late[:15] == [0] * 15 and late[-1] > late[16]


def test_ensure_proxies_rotates_its_order_and_skips_clips_without_a_scale(counter_clip,
                                                                          tmp_path):
    order = []
    paths = {0: counter_clip, 1: counter_clip, 2: counter_clip}
    got = ensure_proxies(paths, {0: 1 / 4, 2: 1 / 8}, str(tmp_path), start=1,
                         progress=order.append)
    assert set(got) == {0, 2} and got[0] != got[2]
    assert order == [0.5, 1.0]


def test_a_clip_gone_since_the_plan_is_a_spec_error_naming_it(tmp_path):
    with pytest.raises(SpecError) as caught:
        ensure_proxies({3: str(tmp_path / "gone.mp4")}, {3: 1 / 4}, str(tmp_path / "cache"))
    assert caught.value.field == "clips[3].path" and "gone.mp4" in str(caught.value)


def test_prune_removes_only_what_went_unused(tmp_path):
    old, fresh = tmp_path / "old.mp4", tmp_path / "fresh.mp4"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 30 * 86400, now - 30 * 86400))
    assert prune(str(tmp_path), keep_seconds=14 * 86400, now=now) == 1
    assert sorted(os.listdir(tmp_path)) == ["fresh.mp4"]
    assert prune(str(tmp_path / "missing")) == 0


def test_prune_drops_proxies_of_files_no_longer_drawn_once_idle(tmp_path):
    clips, cache = tmp_path / "clips", tmp_path / "cache"
    clips.mkdir()
    cache.mkdir()
    kept, replaced = clips / "kept.mp4", clips / "replaced.mp4"
    kept.write_bytes(b"take")
    replaced.write_bytes(b"first take")
    now = time.time()
    names = {}
    for label, clip, scale, age in [("kept-old", kept, 1 / 4, 7200), ("kept-2", kept, 1 / 2, 10),
                                    ("stale", replaced, 1 / 4, 7200),
                                    ("recent", replaced, 1 / 8, 600)]:
        names[label] = proxy_name(str(clip), scale)
        path = cache / names[label]
        path.write_bytes(b"proxy")
        os.utime(path, (now - age, now - age))
    (cache / (names["stale"] + ".lock")).write_bytes(b"")
    os.utime(cache / (names["stale"] + ".lock"), (now - 7200, now - 7200))
    replaced.write_bytes(b"the take sent again")  # a new file: new proxies' names
    assert prune(str(cache), now=now, current=[str(kept), str(replaced)]) == 2
    # an unused hour is not enough for a current clip's proxy; a render planned before the
    # change may still open a recent one
    assert sorted(os.listdir(cache)) == sorted([names["kept-old"], names["kept-2"],
                                                names["recent"]])
    assert prune(str(cache), now=now + 3600, current=[str(kept)]) == 1
    assert sorted(os.listdir(cache)) == sorted([names["kept-old"], names["kept-2"]])


def test_prune_keeps_a_current_files_proxies_however_long_unused(tmp_path):
    """Intake builds a take's proxies weeks before the final render uses them: while the
    take is current (approved or awaiting moderation) they stay; once it is not, they go
    after the stale hour."""
    take = tmp_path / "take.mp4"
    take.write_bytes(b"take")
    cache = tmp_path / "cache"
    cache.mkdir()
    now = time.time()
    proxy = cache / proxy_name(str(take), 1 / 4)
    proxy.write_bytes(b"proxy")
    os.utime(proxy, (now - 30 * 86400, now - 30 * 86400))
    assert prune(str(cache), now=now, current=[str(take)]) == 0
    assert proxy.exists()
    assert prune(str(cache), now=now, current=[]) == 1


def test_intake_scales_are_those_of_grids_of_16_to_100_clips():
    from workers.media.proxies import likely_scales

    # a 1080p take on a 1080p canvas: 16-25 clips at 1/4, 26-49 at 1/6, 50-100 at 1/8
    assert likely_scales(1920, 1080, 1920, 1080) == (1 / 8, 1 / 6, 1 / 4)
    assert likely_scales(1920, 1080, 1920, 1080, clips=(75, 75)) == (1 / 8,)
    assert likely_scales(1920, 1080, 1920, 1080, clips=(16, 25)) == (1 / 4,)
    # a small take: tiles of a 16-clip grid need more than half of it, so only bigger grids
    assert likely_scales(640, 360, 1920, 1080) == (1 / 3, 1 / 2)
    assert likely_scales(320, 180, 1920, 1080) == ()  # every tile needs more than half
    assert likely_scales(0, 0, 1920, 1080) == ()


def test_one_decode_makes_each_scales_proxy_as_render_proxy_does(counter_clip, tmp_path,
                                                                 ffmpeg_exe):
    """build_proxies' several outputs from one ffmpeg are the very files render_proxy makes
    one by one: same size, frames and packet times (a segment seeks and times them alike)."""
    from workers.media.proxies import build_proxies, render_proxy

    cache = tmp_path / "cache"
    built = build_proxies(counter_clip, str(cache), [1 / 4, 1 / 8], keyint=FPS)
    assert sorted(os.path.basename(p) for p in built) == sorted(
        proxy_name(counter_clip, s) for s in (1 / 4, 1 / 8))
    assert build_proxies(counter_clip, str(cache), [1 / 4, 1 / 8], keyint=FPS) == []

    def packets(path):
        done = subprocess.run([ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-i", path,
                               "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
                              capture_output=True, text=True, timeout=60, check=True)
        return [line for line in done.stdout.splitlines() if not line.startswith("#software")]

    for scale in (1 / 4, 1 / 8):
        alone = str(tmp_path / f"alone-{round(1 / scale)}.mp4")
        render_proxy(counter_clip, alone, scale, keyint=FPS)
        assert packets(str(cache / proxy_name(counter_clip, scale))) == packets(alone)
