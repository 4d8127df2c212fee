"""One output folder, one writer: an advisory lock that every entry point takes on the folders it writes.

Two runs writing one `output_dir` (or one shared `embeddings_dir`) at once mix their outputs and both exit
0. The lock is `flock` on `<folder>/.sasv-run.lock`: the kernel releases it when the holder exits, even on
SIGKILL, so a crashed run never leaves a folder locked, and there is no stale-lock guessing. The file holds
who has the lock (pid, host, command, start time) for the message a second run prints. It is never
deleted (deleting a flock file races with a process about to lock it). On NFS, Linux maps flock onto POSIX
byte-range locks, which the server arbitrates across hosts.

Holding a folder also means that nobody else writes in it, so stale temporaries of `common.io.atomic_write`
left there by a killed run are removed when the lock is taken (subfolders locked by another run are left
alone).
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import IO, Iterator, Sequence

from common.errors import InputError
from common.folders import LOCK_NAME, check_output_folder
from common.io import is_stale_temporary, writing

_HELD: dict[Path, tuple[IO, int]] = {}   # folder -> (open lock file, re-entry count) of this process


class FolderBusyError(InputError):
    """The folder is being written by another run."""


def _holder(handle: IO) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return "another process"
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return (f"pid {info['pid']} on {info.get('host', '?')} since {info.get('started', '?')}: "
            f"{info.get('command', '?')}")


def _describe_me() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now().isoformat(timespec="seconds"),
                       "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500]})


def _lock(folder: Path, wait: bool, key: str) -> IO:
    """The folder's lock, taken; a folder that cannot be made or written (read-only, no permission, full disk) is
    one StorageError naming `key` and the folder, before the run computes anything."""
    with writing(folder, key):
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            if not wait:
                raise FolderBusyError(f"{key} {folder}: in use by another run ({holder}); wait for it to finish, "
                                      f"rerun with --wait to queue behind it, or choose another folder") from None
            print(f"waiting for {key} {folder}: in use by {holder}", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        with writing(folder, key):
            handle.seek(0)
            handle.truncate()
            handle.write(_describe_me())
            handle.flush()
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        raise
    return handle


def _is_locked_by_other(folder: Path) -> bool:
    path = folder / LOCK_NAME
    if not path.exists() or folder.resolve() in _HELD:
        return False
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Temporaries of atomic_write under `folder` (recursively), skipping subfolders another run holds."""
    removed: list[Path] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = [d for d in dirs if not _is_locked_by_other(here / d)]
        for name in files:
            path = here / name
            if is_stale_temporary(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


@contextlib.contextmanager
def hold_folders(folders: Sequence[tuple[str, str | os.PathLike | None]], wait: bool = False) -> Iterator[None]:
    """Locks each (config key, folder) for the duration of the block; a folder this process already holds is
    re-entered. Fails at once (FolderBusyError naming the folder and the holder) unless `wait`."""
    taken: list[Path] = []
    try:
        for key, folder in folders:
            if folder is None:
                continue
            path = check_output_folder(folder, key).resolve()
            if path in _HELD:
                handle, count = _HELD[path]
                _HELD[path] = (handle, count + 1)
            else:
                _HELD[path] = (_lock(path, wait, key), 1)
                removed = remove_stale_temporaries(path)
                if removed:
                    print(f"{key} {path}: removed {len(removed)} temporary file(s) left by an interrupted run "
                          f"(e.g. {removed[0].name})", file=sys.stderr, flush=True)
            taken.append(path)
        yield
    finally:
        for path in reversed(taken):
            handle, count = _HELD[path]
            if count > 1:
                _HELD[path] = (handle, count - 1)
            else:
                del _HELD[path]
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()


def writes_files() -> bool:
    """Whether this process writes the run's files: always, except the ranks > 0 of a torchrun job (those
    neither write nor lock; rank 0 holds the folders for the whole job)."""
    return int(os.environ.get("RANK", "0")) == 0
