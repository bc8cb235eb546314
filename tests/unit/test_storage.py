"""Storage: keys cannot escape, writes are atomic, size limits keep nothing."""

from __future__ import annotations

import io
import os
import stat

import pytest

from portal.storage import Storage, StorageError, TooLarge


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "", ".tmp/x",
                                 "a//..//b/../../c"])
def test_keys_that_escape_are_refused(tmp_path, key):
    with pytest.raises(StorageError):
        Storage(tmp_path).path(key)


def test_put_stream_writes_in_chunks_and_publishes_whole(tmp_path):
    store = Storage(tmp_path)
    data = b"x" * (3 * 1024 * 1024 + 7)
    assert store.put_stream("clips/a/original.mp4", io.BytesIO(data)) == len(data)
    assert store.path("clips/a/original.mp4").read_bytes() == data
    assert _files(tmp_path) == ["clips/a/original.mp4"]


def test_too_large_keeps_nothing(tmp_path):
    store = Storage(tmp_path)
    with pytest.raises(TooLarge):
        store.put_stream("clips/a/original.mp4", io.BytesIO(b"x" * 5000), max_bytes=4096)
    assert _files(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    store = Storage(tmp_path)
    store.put_stream("renders/r/mashup.mp4", io.BytesIO(b"old"))
    with pytest.raises(RuntimeError), store.writer("renders/r/mashup.mp4") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash half-way")
    assert store.path("renders/r/mashup.mp4").read_bytes() == b"old"
    assert _files(tmp_path) == ["renders/r/mashup.mp4"]


def test_put_file_move_links_and_leaves_the_source(tmp_path):
    store = Storage(tmp_path / "media")
    src = store.tmp_dir / "upload.part"
    src.write_bytes(b"video")
    store.put_file("clips/b/original.mp4", src, move=True)
    assert store.path("clips/b/original.mp4").read_bytes() == b"video"
    assert src.exists()  # its owner (the spooled upload) deletes it


def _synced_dirs(monkeypatch):
    """Record which directories are fsynced (by the fd's path), calling the real fsync."""
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced


def test_a_stored_file_name_is_made_durable_by_syncing_its_folder(tmp_path, monkeypatch):
    """A rename lives in the directory: without its fsync, a power loss can lose an
    accepted clip whose bytes were synced (fsync(2))."""
    st = Storage(tmp_path / "media")
    synced = _synced_dirs(monkeypatch)
    st.put_stream("clips/a/original.mp4", io.BytesIO(b"x" * 10))
    assert str(st.root / "clips" / "a") in synced
    src = tmp_path / "spooled.mp4"
    src.write_bytes(b"y" * 10)
    synced.clear()
    st.put_file("clips/b/original.mp4", src, move=True)  # by hard link
    assert str(st.root / "clips" / "b") in synced
    synced.clear()
    st.put_file("clips/c/original.mp4", src)  # by copy
    assert str(st.root / "clips" / "c") in synced
    assert (st.root / "clips" / "c" / "original.mp4").read_bytes() == b"y" * 10
