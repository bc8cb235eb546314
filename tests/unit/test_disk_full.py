"""Telling a full media disk (our side) from a bad file (the participant's side)."""
import errno

from workers.media.ffmpeg import FFmpegError
from workers.pipeline import disk_full


def test_ffmpeg_exit_status_of_enospc_is_a_full_disk_even_without_the_words():
    # seen on CI: the kept stderr tail ended in "Conversion failed!" only, status 228
    exc = FFmpegError("ffmpeg exited with status 228", ["ffmpeg"], 228, "Conversion failed!\n")
    assert disk_full(exc)


def test_ffmpeg_stderr_naming_the_full_disk_is_a_full_disk():
    exc = FFmpegError("ffmpeg exited with status 1", ["ffmpeg"], 1,
                      "av_interleaved_write_frame(): No space left on device\n")
    assert disk_full(exc)


def test_a_broken_input_is_not_a_full_disk():
    exc = FFmpegError("ffmpeg exited with status 183", ["ffmpeg"], 183,
                      "Invalid data found when processing input\n")
    assert not disk_full(exc)
    assert not disk_full(ValueError("no"))


def test_oserror_enospc_and_edquot_are_a_full_disk():
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
