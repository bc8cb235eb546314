"""The `tutti` command as a newcomer runs it: real processes, a fresh instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ffmpeg_info

TUTTI = str(Path(sys.executable).with_name("tutti"))


def run(*args: str, instance: Path | None = None, timeout: float = 120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTTI_")}
    if instance is not None:
        env["TUTTI_INSTANCE"] = str(instance)
    return subprocess.run([TUTTI, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_probe_json_for_a_usable_video(media_files):
    done = run("probe", str(media_files["portrait"]), "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert (facts["width"], facts["height"]) == (108, 192)
    assert facts["has_audio"] is True and abs(facts["duration"] - 2.0) < 0.1


@pytest.mark.parametrize("name", ["text", "image"])
def test_probe_refuses_what_is_not_a_video_with_one_line(media_files, name):
    done = run("probe", str(media_files[name]), "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a video" in lines[0]


def test_probe_decodes_the_whole_file_and_rejects_a_tail_that_does_not_decode(tmp_path):
    """Every packet there, the second half of the bytes zeros (an interrupted copy): the
    header and packets say 4 s, and only decoding tells. `tutti probe` said "usable"
    while intake rejected it; now it decodes as intake does (``--quick``: as before)."""
    from workers.media.ffmpeg import ffmpeg_path

    full, cut = tmp_path / "full.mp4", tmp_path / "zero-tail.mp4"
    subprocess.run([ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=s=192x108:r=30:d=4", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000:duration=4", "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "aac", "-movflags", "+faststart", str(full)],
                   check=True, timeout=120)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    done = run("probe", str(cut))
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "upload the video again" in lines[0]
    assert run("probe", str(cut), "--quick").returncode == 0
    assert run("probe", str(full)).returncode == 0


def test_probe_of_a_missing_file(tmp_path):
    done = run("probe", str(tmp_path / "nope.mp4"))
    assert done.returncode != 0 and "no such file" in done.stderr


def test_fonts_names_the_font_of_each_part_of_a_name():
    done = run("fonts", "Maria القحطاني", "李小龙 🎻")
    assert done.returncode == 0, done.stderr
    assert "shaping (raqm: HarfBuzz + FriBiDi): yes" in done.stdout
    assert "القحطاني (Noto Sans Arabic, rtl)" in done.stdout
    assert "李小龙 (Noto Sans CJK SC)" in done.stdout and "🎻 (Noto Color Emoji)" in done.stdout
    unknown = run("fonts", "x\U0001fae9")  # an emoji newer than the installed fonts
    assert unknown.returncode == 1 and "no font holds" in unknown.stderr


def test_admin_commands_work_on_a_fresh_database(tmp_path, media_files):
    instance = tmp_path / "instance"
    done = run("organizer", "create", "boss@example.org", "--password", "long enough",
               instance=instance)
    assert done.returncode == 0, done.stderr
    done = run("campaign", "create", "spring-choir", "--title", "Spring Choir", "--guide",
               str(media_files["guide"]), instance=instance)
    assert done.returncode == 0, done.stderr
    assert "/c/spring-choir" in done.stdout
    again = run("campaign", "create", "spring-choir", "--title", "Again", instance=instance)
    assert again.returncode != 0 and "exists already" in again.stderr
    bad = run("campaign", "create", "Bad Slug!", "--title", "x", instance=instance)
    assert bad.returncode != 0 and "slug" in bad.stderr
    listing = run("campaign", "list", instance=instance)
    assert "spring-choir" in listing.stdout
    empty = run("render", "spring-choir", "--wait", instance=instance)
    assert empty.returncode != 0 and "no approved clips" in empty.stderr


def test_demo_no_serve_prints_a_playable_mashup(tmp_path):
    done = run("demo", "--no-serve", "--clips", "3", "--seconds", "2",
               instance=tmp_path / "instance", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    path = done.stdout.strip().splitlines()[-1]
    assert path.endswith(".mp4") and os.path.isfile(path)
    info = ffmpeg_info(path)
    assert "Video: h264" in info and "1280x720" in info and "Audio: aac" in info


def test_compose_renders_a_spec_file_and_names_bad_fields(tmp_path, media_files):
    spec = {"version": 1, "canvas": {"width": 320, "height": 180, "fps": 25},
            "clips": [{"id": "a", "path": str(media_files["landscape"]), "name": "Ana"},
                      {"id": "b", "path": str(media_files["portrait"]), "offset": -0.5}]}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    out = tmp_path / "out.mp4"
    done = run("compose", str(spec_file), "-o", str(out), "--segments", "2")
    assert done.returncode == 0, done.stderr
    info = ffmpeg_info(out)
    assert "320x180" in info and "Audio: aac" in info
    spec["clips"][1]["offset"] = "soon"
    spec_file.write_text(json.dumps(spec))
    bad = run("compose", str(spec_file), "-o", str(tmp_path / "bad.mp4"))
    assert bad.returncode != 0 and "clips[1].offset" in bad.stderr
    assert not (tmp_path / "bad.mp4").exists()
    spec["clips"][1]["offset"] = 0
    spec["clips"][1]["path"] = str(tmp_path / "missing.mp4")
    spec_file.write_text(json.dumps(spec))
    missing = run("compose", str(spec_file), "-o", str(tmp_path / "bad.mp4"))
    assert missing.returncode != 0 and "missing.mp4" in missing.stderr


def test_campaign_members_from_the_command_line(tmp_path):
    instance = tmp_path / "instance"
    for email, extra in (("own@example.org", []), ("mod@example.org", []),
                         ("root@example.org", ["--admin"])):
        done = run("organizer", "create", email, "--password", "long enough", *extra,
                   instance=instance)
        assert done.returncode == 0, done.stderr
    assert "administrator" in done.stdout
    done = run("campaign", "create", "team-choir", "--title", "Team", "--owner",
               "own@example.org", instance=instance)
    assert done.returncode == 0, done.stderr
    done = run("campaign", "add-member", "team-choir", "mod@example.org", "--role", "moderator",
               instance=instance)
    assert done.returncode == 0, done.stderr
    members = run("campaign", "members", "team-choir", instance=instance)
    assert members.stdout.splitlines() == ["own@example.org\towner", "mod@example.org\tmoderator"]
    nobody = run("campaign", "add-member", "team-choir", "who@example.org", "--role", "owner",
                 instance=instance)
    assert nobody.returncode != 0 and "no organizer" in nobody.stderr
    bad_role = run("campaign", "add-member", "team-choir", "mod@example.org", "--role", "king",
                   instance=instance)
    assert bad_role.returncode != 0
    no_owner = run("campaign", "create", "x-choir", "--title", "X", "--owner", "who@example.org",
                   instance=instance)
    assert no_owner.returncode != 0 and "organizer create" in no_owner.stderr
