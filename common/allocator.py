"""Keep freed memory inside the process (glibc), so CPU training steps stop page-faulting the same memory.

glibc's malloc serves every request above 32 MiB with a fresh `mmap` and hands it back to the kernel on
`free`. A CPU training step of AASIST allocates and frees about 4 GB of such feature maps, so every step
first touches (page-faults and zero-fills) the same gigabytes again: half of the step's time on the
reference machine (docs/benchmarks.md). With malloc's mmap path off and heap trimming raised, freed blocks
stay in the heap and are reused. The price is a higher resident peak (AASIST, batch 8, 4 s segments: 6.5-8
GB instead of 4.2 GB), hence the opt-out `SASV_SYSTEM_MALLOC=1`. PyTorch's CPU tuning guide makes the same
point with jemalloc/tcmalloc; this needs no extra library or LD_PRELOAD.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
OPT_OUT = "SASV_SYSTEM_MALLOC"


def retain_freed_memory() -> bool:
    """Switch glibc malloc to reuse freed large blocks; True if applied (Linux with glibc, no opt-out)."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "0") not in ("", "0"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
