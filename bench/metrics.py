"""Times the whole SASV metrics suite on random scores of the SASV 2022 eval size (102,579 trials).

    .venv/bin/python bench/metrics.py [--trials N] [--repeats R]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package `metrics`, not this file

import numpy as np  # noqa: E402

from metrics.report import evaluate_trials  # noqa: E402

EVAL_SIZES = {"target": 5370, "nontarget": 33327, "spoof": 63882}  # SASV 2022 eval trials: 102,579


def random_trials(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Keys in the eval proportions and ASV / CM / SASV scores with realistic overlaps (float32-rounded ties)."""
    rng = np.random.default_rng(seed)
    total = sum(EVAL_SIZES.values())
    counts = {k: max(1, round(n * v / total)) for k, v in EVAL_SIZES.items()}
    keys = np.concatenate([np.full(c, k) for k, c in counts.items()])
    rng.shuffle(keys)
    is_t, is_s = keys == "target", keys == "spoof"
    asv = rng.normal(0, 1, keys.size) + 3 * is_t + 2 * is_s
    cm = rng.normal(2, 1, keys.size) - 4 * is_s
    return keys.tolist(), (asv + cm).astype(np.float32).astype(float), asv, cm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=sum(EVAL_SIZES.values()))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keys, sasv, asv, cm = random_trials(args.trials)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = evaluate_trials(keys, sasv, asv, cm)
        times.append(time.perf_counter() - start)
    print(f"{len(keys)} trials, all {len(results)} metrics: best {min(times):.3f} s, "
          f"median {sorted(times)[len(times) // 2]:.3f} s over {args.repeats} runs")


if __name__ == "__main__":
    main()
