"""Keep freed memory inside the process (glibc), so CPU training steps stop page-faulting the same memory.

glibc's malloc serves every request above 32 MiB with a fresh `mmap` and hands it back to the kernel on
`free`. A CPU training step of AASIST allocates and frees about 4 GB of such feature maps, so every step
first touches (page-faults and zero-fills) the same gigabytes again: half of the step's time on the
reference machine (docs/benchmarks.md). With malloc's mmap path off and heap trimming raised, freed blocks
stay in the heap and are reused. The price is a higher resident peak (AASIST, batch 8, 4 s segments: 6.5-8
GB instead of 4.2 GB), hence the opt-out `SASV_SYSTEM_MALLOC=1`. PyTorch's CPU tuning guide makes the same
point with jemalloc/tcmalloc; this needs no extra library or LD_PRELOAD.

Where: `freed_memory_retained()` around the loops that run a network over batches (engine.fit's steps, the extraction
loop of pipeline/stages/extract.py), not the whole process. A heap that never shrinks also keeps every freed
table, trial list and score column of the list processing around them, and a later, larger one cannot reuse the
holes: process-wide, main.py's frozen SASV run at a quarter of the ASVspoof 5 counts peaked at 2.8 GB instead of
2.0 GB (docs/benchmarks.md, "At full counts"). On leaving the scope glibc's defaults are
back and the freed memory goes back to the system (`malloc_trim`). `retain_freed_memory()` still sets it for a
whole process (benches, the demo's one process on a small corpus).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from typing import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024     # glibc's defaults (malloc/malloc.c), restored on leaving a scope
DEFAULT_MMAP_MAX = 65536
OPT_OUT = "SASV_SYSTEM_MALLOC"

_state = {"process_wide": False, "depth": 0, "retained": False}


def _libc() -> ctypes.CDLL | None:
    """glibc with `mallopt` and `malloc_trim` typed, or None (not Linux, opted out, musl and others)."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "0") not in ("", "0"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    except (OSError, AttributeError):  # no mallopt: nothing to tune
        return None
    return libc


def _retain(libc: ctypes.CDLL) -> bool:
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def retain_freed_memory() -> bool:
    """Switch glibc malloc to reuse freed large blocks for the rest of the process; True if applied (Linux with
    glibc, no opt-out)."""
    libc = _libc()
    if libc is None or not _retain(libc):
        return False
    _state["process_wide"] = True
    return True


@contextlib.contextmanager
def freed_memory_retained() -> Iterator[bool]:
    """Freed memory retained inside the block (yields whether it is); on leaving the outermost block glibc's
    defaults are back and freed memory is returned to the system, unless `retain_freed_memory()` set it for the
    whole process. Blocks nest (an extraction inside a training run's evaluation): only the outermost one acts."""
    libc = None if _state["process_wide"] or _state["depth"] else _libc()
    if libc is not None:
        _state["retained"] = _retain(libc)
    _state["depth"] += 1
    try:
        yield _state["process_wide"] or _state["retained"]
    finally:
        _state["depth"] -= 1
        if libc is not None and _state["retained"]:
            _state["retained"] = False
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
