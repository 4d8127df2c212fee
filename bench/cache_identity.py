"""What a cache's file identity costs: (size, mtime) against (size, mtime, ctime, inode), and a sampled hash.

    python bench/cache_identity.py [--files 121461 1000000] [--repeats 5] [--file-bytes 1024] [--dir DIR]
                                   [--json OUT]

For each `--files N` it creates N files of `--file-bytes` bytes in a temporary folder under `--dir` (1,000
per subfolder, as a speaker folder; on a busy machine 1M files take ~5 minutes to create and as long to
remove, and ~4 GB of disk at 4 KiB a block, so it says what it does as it goes) and removes them afterwards.
Then, after one untimed pass of each that fills the page cache (warm cache, as for a second run of a stage),
it times each of these over all N files, median of `--repeats` rounds (one pass of each per round, so a
change of load hits all alike), and prints one JSON line per N:

- `stat_size_mtime_s`: the identity of cache version 2, (size, mtime) from one `os.stat` per file;
- `stat_identity_s`: `common.file_identity.identities`, (size, mtime, ctime, inode), the current identity;
- `list_folders_s`: `os.listdir` of every folder, what the tools already do to find missing files
  (`data.asvspoof.check_files_exist`, copy_synthesis.py's planning), for scale;
- `sampled_hash_s`: the alternative not taken, BLAKE2b of three 4 KiB blocks per file (start, middle, end:
  one open and up to three reads; on these small files one read);
- `check_v2_s` / `check_v3_s`: a stage's whole "is my cache current" check on a cache of N items (stat every
  file, read the cache record, compare ids, paths and identities), the old code's against
  `pipeline.stages.cache.load_cache(..., arrays=False)` (which also CRC-checks the cache's data arrays; here a
  score per item, so the figure is mostly the record);
- `sha256_mb_per_s`: hashlib SHA-256 throughput on a 256 MB buffer, to size a full content hash.

The machine is shared: run it when it is quiet, and read the figures as +-30 %.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from common.file_identity import identities  # noqa: E402
from pipeline.stages.cache import Inputs, fingerprint, load_cache, save_cache  # noqa: E402

PER_FOLDER = 1000
BLOCK = 4096
MADE_BY = {"arch": "AASIST", "checkpoint_sha256": "0" * 64}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_files(root: Path, n: int, size: int) -> list[str]:
    """n files named like LA utterances, PER_FOLDER to a folder; returns their paths."""
    payload = os.urandom(size)
    paths = []
    start = time.perf_counter()
    for i in range(n):
        folder = root / f"d{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            folder.mkdir()
        path = f"{folder}/LA_T_{1_000_000 + i}.flac"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.close(fd)
        paths.append(path)
        if (i + 1) % 200_000 == 0:
            say(f"  created {i + 1:,} files ({time.perf_counter() - start:.0f} s)")
    return paths


def size_mtime(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cache version 2's identity, as its Inputs.of computed it."""
    sizes, mtimes = np.full(len(paths), -1, np.int64), np.full(len(paths), -1, np.int64)
    for k, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        sizes[k], mtimes[k] = st.st_size, st.st_mtime_ns
    return sizes, mtimes


def sampled_hash(paths: list[str]) -> list[bytes]:
    """BLAKE2b of the first, middle and last BLOCK bytes of each file."""
    out = []
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            h = hashlib.blake2b(digest_size=16)
            for offset in sorted({0, max(0, size // 2 - BLOCK // 2), max(0, size - BLOCK)}):
                h.update(os.pread(fd, BLOCK, offset))
        finally:
            os.close(fd)
        out.append(h.digest())
    return out


def write_v2_cache(path: Path, ids: list[str], paths: list[str]) -> None:
    """A cache as version 2 wrote it (size and mtime per input)."""
    from common.io import save_arrays

    sizes, mtimes = size_mtime(paths)
    save_arrays(path, cache_version=np.asarray(2), made_by=np.asarray(fingerprint(**MADE_BY)),
                input_ids=np.asarray(ids, dtype=str),
                input_paths_sha256=np.asarray(hashlib.sha256("\n".join(paths).encode()).hexdigest()),
                input_size=sizes, input_mtime_ns=mtimes, skipped=np.asarray([], dtype=str),
                ids=np.asarray(ids, dtype=str), scores=np.zeros(len(ids), np.float32))


def check_v2(path: Path, ids: list[str], paths: list[str]) -> bool:
    """Cache version 2's check, as its why_stale did it."""
    sizes, mtimes = size_mtime(paths)
    with np.load(path, allow_pickle=False) as stored:
        made_by = json.loads(str(stored["made_by"]))
        if int(stored["cache_version"]) != 2 or made_by != json.loads(fingerprint(**MADE_BY)):
            return False
        if stored["input_ids"].tolist() != ids:
            return False
        if str(stored["input_paths_sha256"]) != hashlib.sha256("\n".join(paths).encode()).hexdigest():
            return False
        return not ((stored["input_size"] != sizes) | (stored["input_mtime_ns"] != mtimes)).any()


def check_v3(path: Path, items: list[tuple[str, str]]) -> bool:
    return load_cache(path, MADE_BY, Inputs.of(items), False, arrays=False)[0] is not None


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of `repeats` calls of each, after one untimed call of each (warm cache). The calls are
    interleaved, one of each per round, so that a change of load on the shared machine hits all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def sha256_throughput() -> float:
    data = os.urandom(256 << 20)
    start = time.perf_counter()
    hashlib.sha256(data).digest()
    return 256 / (time.perf_counter() - start)


def bench(n: int, args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="cache_identity_", dir=args.dir))
    try:
        say(f"{n:,} files: creating them under {root} ({args.file_bytes} bytes each)")
        paths = create_files(root, n, args.file_bytes)
        ids = [Path(p).stem for p in paths]
        items = list(zip(ids, paths, strict=True))
        v2, v3 = root / "cache_v2.npz", root / "cache_v3.npz"
        say(f"{n:,} files: writing a cache of each version")
        write_v2_cache(v2, ids, paths)
        save_cache(v3, MADE_BY, Inputs.of(items),
                   {"ids": np.asarray(ids, dtype=str), "scores": np.zeros(n, np.float32)})
        assert check_v2(v2, ids, paths) and check_v3(v3, items), "a fresh cache must be current"
        folders = sorted({os.path.dirname(p) for p in paths})
        row: dict = {"files": n, "file_bytes": args.file_bytes, "repeats": args.repeats}
        say(f"{n:,} files: timing, {args.repeats} + 1 rounds")
        fns = {"stat_size_mtime_s": lambda: size_mtime(paths),
               "stat_identity_s": lambda: identities(paths),
               "list_folders_s": lambda: [os.listdir(d) for d in folders],
               "sampled_hash_s": lambda: sampled_hash(paths),
               "check_v2_s": lambda: check_v2(v2, ids, paths),
               "check_v3_s": lambda: check_v3(v3, items)}
        row.update({name: round(t, 3) for name, t in timed(fns, args.repeats).items()})
        row["us_per_file"] = {k.removesuffix("_s"): round(1e6 * v / n, 2) for k, v in row.items() if k.endswith("_s")}
        row["cache_mb"] = {"v2": round(v2.stat().st_size / 1e6, 1), "v3": round(v3.stat().st_size / 1e6, 1)}
        row["load_1min"] = round(os.getloadavg()[0], 2)
        return row
    finally:
        say(f"{n:,} files: removing {root}")
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, nargs="+", default=[121_461, 1_000_000],
                    help="list sizes to time (default: the ASVspoof 2019 LA lists' 121,461 files, and 1M)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per figure (median; default 5)")
    ap.add_argument("--file-bytes", type=int, default=1024, help="bytes per file (default 1024)")
    ap.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)
    if min(args.files) < 1 or args.repeats < 1 or args.file_bytes < 1:
        ap.error("--files, --repeats and --file-bytes must be >= 1")
    rows = [{"sha256_mb_per_s": round(sha256_throughput())}]
    print(json.dumps(rows[0]), flush=True)
    for n in args.files:
        rows.append(bench(n, args))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
