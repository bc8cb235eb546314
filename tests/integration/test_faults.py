"""The faults an operator meets, each once, with real processes: `tutti worker` and
`tutti serve` subprocesses, a Redis server started here on its own port, PostgreSQL,
ffmpeg. Nothing accepted is lost, nothing is done twice, no temporary file stays.
`python -m bench.faults --repeat N` runs the same scenarios N times and prints a table."""

from __future__ import annotations

import pytest

from tests.conftest import DATABASES, PG_URL, reset_postgres
from tests.integration import harness

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def takes(tmp_path_factory):
    root = tmp_path_factory.mktemp("takes")
    return {
        # long enough that a kill lands mid-normalize, small enough to stay quick
        "long": harness.make_clip(root / "long.mp4", 8, "640x360"),
        "short": harness.make_clip(root / "short.mp4", 4, "320x180"),
        "big": harness.make_clip(root / "big.mp4", 6, "640x360"),
    }


@pytest.fixture
def stack(tmp_path):
    if "postgresql" in DATABASES:
        reset_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path / 'faults.sqlite3'}"
    made = harness.Stack(tmp_path, url)
    yield made
    made.close()


def _check(outcome: harness.Outcome, stack: harness.Stack) -> None:
    assert outcome.clean, (f"lost {outcome.lost}, doubled {outcome.doubled}, temp files "
                           f"{outcome.temp_files}: {outcome.notes}\n{stack.logs()}")


def test_a_worker_killed_mid_intake_loses_and_doubles_nothing(stack, takes):
    outcome = harness.kill_mid_intake(stack, takes["long"])
    _check(outcome, stack)
    # the short lease (3 s here) and the reconciler hand the clips over in seconds
    assert outcome.seconds < 60, outcome


def test_a_worker_killed_mid_render_gives_one_render(stack, takes):
    outcome = harness.kill_mid_render(stack, takes["short"])
    _check(outcome, stack)
    assert outcome.seconds < 90, outcome


def test_redis_restarted_empty_loses_no_clip(stack, takes):
    _check(harness.redis_restarted_empty(stack, takes["short"]), stack)


def test_a_full_redis_keeps_the_worker_up_and_loses_no_clip(stack, takes):
    """Red team, issue 15: Redis out of memory killed workers ("Unrecoverable error")."""
    _check(harness.redis_out_of_memory(stack, takes["short"]), stack)


def test_the_web_server_restarted_mid_upload_the_upload_resumes(stack, takes):
    _check(harness.web_restart_during_upload(stack, takes["short"]), stack)


def test_the_same_render_requested_twice_at_once_is_one_render(stack, takes):
    _check(harness.render_requested_twice(stack, takes["short"]), stack)


def test_a_full_disk_answers_507_and_keeps_the_published_mashup(tmp_path, takes):
    disk = tmp_path / "disk"
    if not harness.mount_small_disk(disk, 24):
        pytest.skip("a full disk needs a small tmpfs: run as root with mount(8)")
    try:
        if "postgresql" in DATABASES:
            reset_postgres(PG_URL)
            url = PG_URL
        else:
            url = f"sqlite:///{tmp_path / 'faults.sqlite3'}"
        stack = harness.Stack(tmp_path, url, media_root=disk / "media")
        try:
            _check(harness.full_disk(stack, takes["short"], takes["big"]), stack)
        finally:
            stack.close()
    finally:
        harness.unmount(disk)
