"""Times ablate.py on score files at the size of real corpora (ASVspoof 2019 LA: 29,548 dev / 102,579 eval trials;
ASVspoof 5: 282,456 dev / 834,536 eval trials): the files of bench/fuse_scale.py (ASV in SASV 2022, CM one score per
utterance joined to the trial list), the grid of configs/ablation_score_files.conf (every score-level back-end with
its options: 17 systems) fitted on dev, both splits scored, every metric, the four dev-chosen thresholds and Cllr per
system, the per-system pictures, ablation.csv / .md and the DET figure. ablate.py runs as a subprocess (--force:
every system is redone), so its wall time and peak resident memory are its own. The median of the runs is reported.

    .venv/bin/python bench/ablate_scale.py [--sizes la asvspoof5] [--runs 3] [--no-pictures]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from fuse_scale import ENV, ROOT, SIZES, write_split  # bench/ is on sys.path when this file runs


def _children() -> tuple[float, float]:
    """(CPU seconds, peak RSS in MiB) of the children so far: the ablate.py runs are the only children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def config(folder: Path, pictures: bool) -> Path:
    """The seed config with its placeholders pointed at the files written for this size."""
    cfg = yaml.safe_load((ROOT / "configs" / "ablation_score_files.conf").read_text(encoding="utf-8"))
    cfg["output_dir"] = str(folder / "out")
    cfg["scores"] = {split: {kind: str(folder / f"{name}_{split}.txt")
                             for kind, name in (("asv", "asv"), ("cm", "cm"), ("trials", "trials"))}
                     for split in ("dev", "eval")}
    cfg["ablation"]["pictures"] = pictures
    path = folder / "ablation.conf"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_once(path: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MiB so far) of one ablate.py run."""
    start, (cpu, _) = time.perf_counter(), _children()
    done = subprocess.run([sys.executable, "ablate.py", "--config", str(path), "--force"], cwd=ROOT,
                          capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"ablate.py failed:\n{done.stderr[-3000:]}")
    cpu_now, peak = _children()
    return wall, cpu_now - cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=["la"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-pictures", action="store_true", help="ablation.pictures=false (the figure stays)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="ablate_bench_") as tmp:
            folder = Path(tmp)
            rng = np.random.default_rng(0)
            for split in ("dev", "eval"):
                write_split(folder, split, SIZES[size][split], rng)
            path = config(folder, not args.no_pictures)
            runs = [run_once(path) for _ in range(args.runs)]
            walls, cpus, peaks = ([r[i] for r in runs] for i in range(3))
            dev, ev = (sum(SIZES[size][s]) for s in ("dev", "eval"))
            print(f"{size}: {dev:,} dev / {ev:,} eval trials, 17 systems: median {statistics.median(walls):.1f} s "
                  f"(runs {', '.join(f'{w:.1f}' for w in walls)}), CPU median {statistics.median(cpus):.1f} s, "
                  f"peak RSS {max(peaks):.0f} MiB")
    print(f"load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
