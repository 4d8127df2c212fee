"""Times evaluate.py's work at the ASVspoof 5 eval sizes: the package's score files written and read back, the
Track 1 metrics (680,774 utterances) and the Track 2 report (834,536 trials), each pooled and with every breakdown
(16 attacks, 12 codec conditions, their qualities, attack x codec). Random scores; the class, attack and codec
proportions are made up (the official counts per class are not used here), which does not change the cost.

    .venv/bin/python bench/asvspoof5_evaluation.py [--utterances N] [--trials N]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package `metrics`, not a file of this folder

import numpy as np  # noqa: E402

from data.score_files import (  # noqa: E402
    CMScores,
    SASVScores,
    read_asvspoof5_cm,
    read_asvspoof5_sasv,
    write_asvspoof5_cm,
    write_asvspoof5_sasv,
)
from metrics.breakdown import Conditions, cm_breakdown, sasv_breakdown  # noqa: E402
from metrics.countermeasure import evaluate_cm_keys  # noqa: E402
from metrics.report import evaluate_trials  # noqa: E402

CODECS = ["-"] + [f"C{i:02d}" for i in range(1, 12)]
ATTACKS = [f"A{i}" for i in range(17, 33)]          # the ASVspoof 5 eval attacks


def conditions(rng: np.random.Generator, is_spoof: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    n = is_spoof.size
    codec = np.asarray(CODECS)[rng.integers(0, len(CODECS), n)]
    quality = np.where(codec == "-", "0", rng.integers(1, 6, n).astype(str))
    attack = np.where(is_spoof, np.asarray(ATTACKS)[rng.integers(0, len(ATTACKS), n)], "bonafide")
    return attack.tolist(), codec.tolist(), quality.tolist()


def timed(label: str, work):
    """Runs `work`, printing its wall-clock and CPU time (on a shared machine the CPU time is the steadier one)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    print(f"{label}: {time.perf_counter() - wall:.1f} s ({time.process_time() - cpu:.1f} s CPU)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=680_774)
    parser.add_argument("--trials", type=int, default=834_536)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="as5_bench_"))

    key = np.where(rng.random(args.utterances) < 0.2, "bonafide", "spoof")
    score = rng.normal(0, 1, key.size) + 3 * (key == "bonafide")
    attack, codec, quality = conditions(rng, key == "spoof")
    cm = CMScores([f"E_{i:010d}" for i in range(key.size)], attack, key.tolist(), score, codec, quality)
    timed(f"Track 1: write the package files ({key.size} utterances)",
          lambda: write_asvspoof5_cm(folder / "cm.tsv", folder / "cm_keys.tsv", cm))
    cm = timed("Track 1: read them back", lambda: read_asvspoof5_cm(folder / "cm.tsv", folder / "cm_keys.tsv"))
    timed("Track 1: minDCF, EER, Cllr, actDCF", lambda: evaluate_cm_keys(cm.key, cm.score))
    got = timed("Track 1: pooled + every breakdown",
                lambda: cm_breakdown(cm.key, cm.score, Conditions(cm.attack, cm.codec, cm.codec_q)))
    print(f"  {sum(len(v) for k, v in got.items() if k not in ('pooled', 'attack_by_codec'))} condition cells and "
          f"{sum(len(row) for row in got['attack_by_codec'].values())} attack x codec cells")

    draw = rng.random(args.trials)
    keys = np.where(draw < 0.1, "target", np.where(draw < 0.5, "nontarget", "spoof"))
    asv = rng.normal(0, 1, keys.size) + 3 * (keys == "target") + 2 * (keys == "spoof")
    cm_trial = rng.normal(2, 1, keys.size) - 4 * (keys == "spoof")
    attack, codec, quality = conditions(rng, keys == "spoof")
    rows = {name: SASVScores([f"E_{i % 367:04d}" for i in range(keys.size)], [f"E_{i:010d}" for i in range(keys.size)],
                             attack, keys.tolist(), values, codec, quality)
            for name, values in (("sasv", asv + cm_trial), ("asv", asv), ("cm", cm_trial))}
    timed(f"Track 2: write the package files ({keys.size} trials)",
          lambda: write_asvspoof5_sasv(folder / "sasv.tsv", folder / "sasv_keys.tsv", rows))
    back = timed("Track 2: read them back", lambda: read_asvspoof5_sasv(folder / "sasv.tsv", folder / "sasv_keys.tsv"))
    sasv = back["sasv"]
    timed("Track 2: every metric of the report",
          lambda: evaluate_trials(sasv.key, sasv.score, back["asv"].score, back["cm"].score))
    timed("Track 2: pooled + every breakdown",
          lambda: sasv_breakdown(sasv.key, sasv.score, Conditions(sasv.attack, sasv.codec, sasv.codec_q),
                                 back["asv"].score, back["cm"].score))
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
