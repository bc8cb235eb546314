"""Media storage by key, on a local directory (or a volume shared by web and
workers). Writes are atomic: a temp file in the same directory, then
``os.replace``, so a half-written file is never served under its key."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-/]*$")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new name in directory ``path`` durable (POSIX: the name lives in
    the directory, so ``fsync`` of the file alone does not keep it across a power loss;
    see fsync(2), "Calling fsync() does not necessarily ensure that the entry in the
    directory containing the file has also reached disk"). Errors: ``OSError`` from
    ``open``; a filesystem that cannot sync a directory (EINVAL) is ignored."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


class StorageError(Exception):
    pass


class TooLarge(StorageError):
    """The stream was longer than allowed; nothing was kept."""


class Storage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same filesystem, so finished files move by rename."""
        return self.root / ".tmp"

    def path(self, key: str) -> Path:
        """Absolute path for a key; refuses keys that would escape the root."""
        if not key or not _KEY_RE.match(key) or ".." in key.split("/") or key.startswith(".tmp"):
            raise StorageError(f"invalid storage key {key!r}")
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError(f"invalid storage key {key!r}")
        return path

    def path_for_writing(self, key: str) -> Path:
        """The path for ``key`` with its folder made (the writer still publishes atomically)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def exists(self, key: str | None) -> bool:
        return bool(key) and self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    @contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        """Yield a temp path to write; on success it becomes ``key`` atomically,
        on error it is removed. The temp name keeps the key's extension."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.",
                                   suffix=f".tmp{final.suffix}")
        os.close(fd)
        try:
            yield Path(tmp)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            with _ignore_missing():
                os.unlink(tmp)
            raise

    def put_stream(self, key: str, stream: BinaryIO, max_bytes: int | None = None) -> int:
        """Copy a stream under ``key`` in chunks (never whole in memory). Returns the size."""
        written = 0
        with self.writer(key) as tmp, open(tmp, "wb") as out:
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise TooLarge(f"larger than {max_bytes} bytes")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return written

    def put_file(self, key: str, src: str | os.PathLike[str], move: bool = False) -> int:
        """Store a file under ``key``; ``move`` renames it when it is on our filesystem."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if move:
            # A hard link is as cheap as a rename and leaves ``src`` for its owner
            # to delete (an upload's spooled temp file deletes itself on close).
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.", suffix=".lnk")
            os.close(fd)
            os.unlink(tmp)
            try:
                os.link(src, tmp)
                os.replace(tmp, final)
                fsync_dir(final.parent)
                return final.stat().st_size
            except OSError:
                with _ignore_missing():
                    os.unlink(tmp)  # another filesystem: copy below
        with self.writer(key) as tmp:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as out:  # the copy's bytes on disk before its name
                os.fsync(out.fileno())
        return final.stat().st_size

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def delete(self, key: str | None) -> None:
        if key:
            with _ignore_missing():
                self.path(key).unlink()

    def delete_prefix(self, prefix: str) -> None:
        """Remove a folder of keys (e.g. everything of one clip)."""
        path = self.path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

    def new_temp_file(self, suffix: str = "") -> BinaryIO:
        """A named temp file in the scratch space (uploads spool here, not in memory)."""
        return tempfile.NamedTemporaryFile(dir=self.tmp_dir, suffix=suffix, delete=True)


@contextmanager
def _ignore_missing() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        pass
