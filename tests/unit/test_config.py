"""Configuration: defaults, environment, derived values."""

from __future__ import annotations

import pytest

from portal import config


def test_defaults_are_the_embedded_setup(tmp_path, monkeypatch):
    for name in config.SETTINGS:
        monkeypatch.delenv(config.ENV_PREFIX + name, raising=False)
    built = config.build_config(str(tmp_path))
    assert built["DATABASE_URL"] == f"sqlite:///{tmp_path / 'tutti.sqlite3'}"
    assert built["MEDIA_ROOT"] == str(tmp_path / "media")
    assert built["EMBEDDED_WORKER"] is True
    assert built["DISTRIBUTED_RENDER"] is False  # no other worker could take a segment
    assert built["CELERY"]["task_acks_late"] is True
    # the secret is generated once and kept
    assert config.build_config(str(tmp_path))["SECRET_KEY"] == built["SECRET_KEY"]


def test_environment_overrides_and_redis_turns_the_embedded_worker_off(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTTI_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("TUTTI_MAX_UPLOAD_MB", "5")
    built = config.build_config(str(tmp_path))
    assert built["EMBEDDED_WORKER"] is False
    assert built["DISTRIBUTED_RENDER"] is True
    assert built["MAX_CONTENT_LENGTH"] == 5 * 1024 * 1024
    assert built["CELERY"]["broker_url"] == "redis://127.0.0.1:6379/3"
    options = built["CELERY"]["broker_transport_options"]
    # a dead worker's message comes back in minutes, not after the longest render (a
    # live worker's comes back too and finds its row leased: see workers.leases)
    assert options["visibility_timeout"] == built["VISIBILITY_SECONDS"] == 300
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] <= 30


def test_a_bad_number_says_which_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTTI_MAX_UPLOAD_MB", "lots")
    with pytest.raises(SystemExit, match="TUTTI_MAX_UPLOAD_MB"):
        config.build_config(str(tmp_path))
