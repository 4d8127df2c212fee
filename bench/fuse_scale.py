"""Times fuse.py end to end at the sizes of real corpora: ASVspoof 2019 LA (29,548 dev / 102,579 eval trials) and
ASVspoof 5 (282,456 dev / 834,536 eval trials). Each run reads an ASV score file (SASV 2022) and a CM score file of
one score per utterance (ASVspoof 2019 CM) joined to the trial list, for both splits; fits every score-level back-end
on dev; scores both splits; computes every metric of evaluate.py; writes the fused files and draws the DET plots.
fuse.py runs as a subprocess, so its wall time, CPU time and peak resident memory are its own. The median of the runs
is reported. Random scores; the LA class counts are the official ones, the ASVspoof 5 ones made up (same cost).

`--against CHECKOUT` times another checkout's fuse.py too (e.g. `git worktree add /tmp/base <commit>`), on the same
files, its runs alternating with this one's, so that a change is measured against its baseline under the same load
(a shared machine's load drifts by minutes).

    .venv/bin/python bench/fuse_scale.py [--sizes la asvspoof5] [--runs 3] [--backends score_sum lr_fusion ...]
                                         [--against CHECKOUT]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = {   # split -> (target, nontarget, spoof)
    "la": {"dev": (1484, 5768, 22296), "eval": (5370, 33327, 63882)},
    "asvspoof5": {"dev": (28_246, 112_982, 141_228), "eval": (83_454, 333_814, 417_268)},
}
# Compiled modules cached in a folder of the benchmark's own: with PYTHONDONTWRITEBYTECODE (set on the development
# machines) every run would compile torch, sklearn, scipy and matplotlib afresh, 10 s of CPU an installed toolkit
# never spends.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "fuse_bench_pycache")}
LIMITS = {"la": (15.0, None), "asvspoof5": (90.0, 2048.0)}    # seconds, MiB (issue 24)


def write_split(folder: Path, split: str, counts: tuple[int, int, int], rng: np.random.Generator) -> list[str]:
    """ASV (SASV 2022), CM per utterance (ASVspoof 2019 CM) and the trial list of one split; returns fuse.py's flags."""
    keys = np.repeat(np.array(["target", "nontarget", "spoof"]), counts)
    rng.shuffle(keys)
    n = keys.size
    spk = [f"LA_{i % 67:04d}" for i in range(n)]
    utt = [f"LA_{split[0].upper()}_{i:07d}" for i in range(n)]
    attack = np.where(keys == "spoof", np.array([f"A{a:02d}" for a in range(7, 20)])[rng.integers(0, 13, n)],
                      "bonafide")
    asv = rng.normal(np.where(keys == "nontarget", 0.1, 0.6), 0.15)
    cm = rng.normal(np.where(keys == "spoof", -2.0, 3.0), 1.5)
    lines = [f"{s} {u} {a} {k}" for s, u, a, k in zip(spk, utt, attack, keys, strict=True)]
    (folder / f"trials_{split}.txt").write_text("\n".join(lines) + "\n")
    (folder / f"asv_{split}.txt").write_text("\n".join(f"{line} {v!r}" for line, v in zip(lines, asv.tolist(),
                                                                                          strict=True)) + "\n")
    (folder / f"cm_{split}.txt").write_text("\n".join(
        f"{u} {'-' if k != 'spoof' else a} {'spoof' if k == 'spoof' else 'bonafide'} {v!r}"
        for u, a, k, v in zip(utt, attack, keys, cm.tolist(), strict=True)) + "\n")
    return [f"--asv-{split}", str(folder / f"asv_{split}.txt"), f"--cm-{split}", str(folder / f"cm_{split}.txt"),
            f"--trials-{split}", str(folder / f"trials_{split}.txt")]


def run_once(argv: list[str], root: Path = ROOT) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of one run of `root`'s fuse.py, from the OS's account of that child
    alone (wait4), so runs of two checkouts do not mix. On a loaded shared machine the CPU time is the steadier
    figure."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "fuse.py", *argv], cwd=root, stdout=subprocess.DEVNULL, stderr=err,
                                 env=ENV)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            sys.exit(f"{root}/fuse.py failed:\n{err.read().decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def report(size: str, name: str, runs: list[tuple[float, float, float]]) -> None:
    walls, cpus, peaks = ([r[i] for r in runs] for i in range(3))
    dev, ev = (sum(SIZES[size][s]) for s in ("dev", "eval"))
    limit_s, limit_mib = LIMITS[size]
    print(f"{size} ({name}): {dev:,} dev / {ev:,} eval trials: median {statistics.median(walls):.1f} s "
          f"(runs {', '.join(f'{w:.1f}' for w in walls)}; limit {limit_s:g} s), CPU median "
          f"{statistics.median(cpus):.1f} s (runs {', '.join(f'{c:.1f}' for c in cpus)}), peak RSS "
          f"{max(peaks):.0f} MiB" + (f" (limit {limit_mib:g} MiB)" if limit_mib else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", nargs="+", help="rules (default: fuse.py's: every score-level back-end)")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT",
                        help="another checkout whose fuse.py runs alternate with this one's (a baseline)")
    args = parser.parse_args()
    roots = {"this checkout": ROOT, **({f"against {args.against}": args.against.resolve()} if args.against else {})}
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="fuse_bench_") as tmp:
            folder = Path(tmp)
            rng = np.random.default_rng(0)
            argv = [flag for split in ("dev", "eval") for flag in write_split(folder, split, SIZES[size][split], rng)]
            argv += ["--out", str(folder / "out")] + (["--backends", *args.backends] if args.backends else [])
            for root in roots.values():
                run_once(argv + ["--backends", "score_sum"], root)      # warms the module cache; not counted
            runs: dict[str, list] = {name: [] for name in roots}
            loads = []
            for _ in range(args.runs):
                for name, root in roots.items():
                    loads.append(os.getloadavg()[0])
                    runs[name].append(run_once(argv, root))
            for name, done in runs.items():
                report(size, name, done)
            print(f"{size}: load average {min(loads):.2f}-{max(loads):.2f} at the starts of the runs", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
