"""One base class for problems with the user's input (files, configs, checkpoints), and the one place that turns
the file system refusing a write into such a problem.

Entry points catch `InputError` and print its one-line message; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path


class InputError(ValueError):
    """Bad input the user can fix: the message names the file or key and what is wrong."""


class MissingFilesError(FileNotFoundError, InputError):
    """Files that a run needs but that are not on disk (raised before any compute starts); also a
    FileNotFoundError for callers that test for that."""


class StorageError(InputError):
    """The file system refused a write: read-only, no permission, full, over quota, or over the file size limit.
    The message is `PATH: cannot write (CAUSE)`; the writer that raises it has left nothing half-written.

    A plain one-message exception on purpose: it crosses process boundaries (multiprocessing pools, DataLoader
    workers) by pickling, which rebuilds an exception from its message alone."""


# Errors that only a write raises (never a read): inside a writer's block they can only be about its output.
WRITE_ONLY_CAUSES = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    # Python ignores SIGXFSZ, so past `ulimit -f` (RLIMIT_FSIZE) a write fails with EFBIG and no file name.
    errno.EFBIG: "file too large: over the file size limit (ulimit -f) or the file system's largest file",
}
# Errors that also come from reads or lookups: about an output only where the writer itself made the call.
ACCESS_CAUSES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
PATH_CAUSES = {
    errno.EIO: "input/output error from the device",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "part of the path is a file, not a folder",
}
STORAGE_CAUSES = {**WRITE_ONLY_CAUSES, **ACCESS_CAUSES, **PATH_CAUSES}
# What writers also turn into a StorageError: `mkdir(exist_ok=True)` raises EEXIST only when a file has the name.
WRITER_CAUSES = {**STORAGE_CAUSES, errno.EEXIST: "a file is in the way of a folder"}


def storage_oserror(error: BaseException, causes: dict[int, str] = WRITER_CAUSES) -> OSError | None:
    """The OSError with one of `causes` that `error` is or was raised from (`__cause__` / `__context__`): torch.save
    reports a failed write as a RuntimeError raised while handling the OSError. None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in causes:
            return current
        current = current.__cause__ or current.__context__
    return None


def cannot_write(path: str | os.PathLike, error: OSError, key: str | None = None) -> StorageError:
    """`[KEY ]PATH: cannot write (CAUSE)`. Where a permission or path problem is with a folder above `path` (one
    that could not be made or entered), the cause names that folder: that is where the user has to look."""
    cause = WRITER_CAUSES.get(error.errno) or error.strerror or type(error).__name__
    refused = error.filename
    if (error.errno not in WRITE_ONLY_CAUSES and isinstance(refused, (str, os.PathLike))
            and Path(refused).absolute() in Path(path).absolute().parents):
        cause = f"{cause}: {refused}"
    return StorageError(f"{key + ' ' if key else ''}{path}: cannot write ({cause})")


class ProtocolError(InputError):
    """A protocol or list file that cannot be used as it is: the message names the file and line."""


def line_error(path: str | os.PathLike, number: int, what: str) -> ProtocolError:
    """`path:number: what`, the one shape of an error about a line of a list file (editors jump to it)."""
    return ProtocolError(f"{path}:{number}: {what}")
class DamagedFileError(InputError):
    """A file that should hold the toolkit's own data (a cached .npz, a checkpoint) but cannot be read as such:
    cut short, a flipped bit caught by the archive's checksums, or another kind of file. Caches are recomputed
    when they are damaged; readers say which file it is and what makes it again."""
