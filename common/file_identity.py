"""When the toolkit takes a file to be unchanged: its identity, read from one `os.stat` (the file is not read).

identity = (size, modification time, change time, inode number), nanoseconds for the times.

Why these four: size and modification time alone can be faked. `touch -r old new` copies a modification time
back, so a file replaced by different content of the same size passed as unchanged. The change time
(`st_ctime_ns`) is set by the kernel whenever a file's content or metadata changes, and no system call sets it
to a chosen value (only setting the system clock back would); the inode number tells a file put in the place
of another (`mv`, `cp` to a new name, a restored backup) from the one that was there. So any rewrite in place
moves the change time, any replacement changes the inode (or, if a freed inode number is reused, the change
time), whatever is done to the modification time afterwards.

What it costs: little over a (size, mtime) key, it is the same `os.stat` call (docs/benchmarks.md, "Cache
identity": 0.7 s for the 122k-file ASVspoof 2019 LA lists, 3.8 s for a million files, warm, on the shared
2-core dev box; ~15 % over (size, mtime)). A content hash would cover more
(below) but reads every file: the whole LA corpus is ~7 GB, and even a sampled hash (a few blocks per file)
costs an open and several reads per file, which on a cold cache or a network disk is minutes per stage.

What makes a file look changed although its bytes are the same (it is then recomputed, once, and the log
says which part changed): anything that changes its change time or inode without changing its content.
Copying a corpus (`cp -r`, `rsync`, even `cp -a` / `rsync -a`, which keep modification times but make new
inodes), restoring a backup, `chmod` / `chown`, adding or removing a hard link (`cp -al`), setting extended
attributes (e.g. security relabelling), moving the files to another file system. Some file systems do not
keep inode numbers across mounts (FAT/exFAT, some FUSE and SMB mounts): there every mount recomputes once.
The device number is left out on purpose: network and btrfs mounts get new ones at each mount or boot, and
inode + change time already tell files apart.

What it cannot see: a change within the same clock tick as the stat that recorded the file (the kernel
stamps change times from a coarse clock, a few milliseconds), and a file system without a real change time
(FAT/exFAT report the creation time as `st_ctime`): there a file rewritten in place with its size and
modification time restored still passes.
"""
from __future__ import annotations

import array
import hashlib
import os
from typing import Iterable, Sequence

import numpy as np

FIELDS = ("size", "mtime_ns", "ctime_ns", "inode")
_ORDER = ("size", "inode", "mtime_ns", "ctime_ns")   # the most telling part first: a new file changes them all
_PART = {"size": "size", "mtime_ns": "modification time", "ctime_ns": "change time", "inode": "inode"}
_WHY = {"size": "another size", "modification time": "another modification time",
        "change time": "another change time: rewritten, or its permissions or links changed",
        "inode": "another inode: another file put in its place", "missing now": "missing now",
        "was missing": "it was missing then"}
MISSING = -1        # every field of a file that could not be stat'ed

Identity = tuple[int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    """The identity of a file from its `os.stat` result (see the module docstring)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def file_identity(path: str | os.PathLike) -> Identity | None:
    """The identity of the file at `path` (following links), None when it cannot be stat'ed."""
    try:
        return identity(os.stat(path))
    except OSError:
        return None


def identities(paths: Iterable[str | os.PathLike]) -> np.ndarray:
    """(n, 4) int64 identities of `paths`, in order (columns FIELDS; a row of MISSING for a file not there).
    One flat buffer, not a tuple per file: a million files cost little more than their stat calls."""
    flat = array.array("q")
    add, missing = flat.extend, (MISSING,) * len(FIELDS)
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            add(missing)
            continue
        add((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return np.frombuffer(flat, dtype=np.int64).reshape(-1, len(FIELDS)).copy()


def changed_rows(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Indices of the rows where two (n, 4) identity arrays of the same files differ."""
    return np.flatnonzero((np.asarray(old) != np.asarray(new)).any(axis=1))


def what_changed(old: Sequence[int], new: Sequence[int]) -> str:
    """The first part of one file's identity that differs, in a word or two ('' when none)."""
    if old[0] == MISSING and new[0] != MISSING:
        return "was missing"
    if new[0] == MISSING and old[0] != MISSING:
        return "missing now"
    differs = {f for f, a, b in zip(FIELDS, old, new, strict=True) if a != b}
    return next((_PART[f] for f in _ORDER if f in differs), "")


def describe_changes(old: np.ndarray, new: np.ndarray, names: Sequence[str], what: str = "file",
                     since: str = "it was made") -> str | None:
    """One phrase saying how many of `names` changed since `since`, by which part, with the first as an example;
    None when no identity differs. `old` and `new` are identity rows of `names`, in the same order."""
    rows = changed_rows(old, new)
    if not rows.size:
        return None
    parts: dict[str, int] = {}
    for k in rows:
        part = what_changed(old[k], new[k])
        parts[part] = parts.get(part, 0) + 1
    counts = ", ".join(f"{part}: {n}" for part, n in parts.items())
    first = int(rows[0])
    return (f"{rows.size} {what}(s) changed since {since} ({counts}), "
            f"e.g. {names[first]} ({_WHY[what_changed(old[first], new[first])]})")


def identities_digest(names: Sequence[str], ids: np.ndarray) -> str:
    """SHA-256 of names and their identity rows: one value that changes when any of the files does."""
    h = hashlib.sha256()
    for name, row in zip(names, np.asarray(ids, dtype=np.int64).reshape(len(names), len(FIELDS)), strict=True):
        h.update(f"{name}\0{' '.join(map(str, row.tolist()))}\n".encode())
    return h.hexdigest()
