"""Stage 2 (CM): embeddings and bona fide scores of every CM protocol utterance; prints CM EER per split.

    python save_cm_score.py --config configs/x.conf [key=value ...] [--force]

Writes <output_dir>/embeddings/cm_{split}.npz, scores/cm_{split}.txt (ASVspoof 2019 CM format
`UTT ATTACK KEY SCORE`) and scores/cm_trials_{dev,eval}.txt (the CM score per SASV trial, SASV 2022 format).
"""
from __future__ import annotations

import sys
from typing import Sequence

from pipeline.stages.cli import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.recipes.sasv_task import SCHEMA
    from pipeline.stages.cm import cm_stage
    from pipeline.stages.experiment import check_stage_inputs
    return run_stage(__doc__, argv, SCHEMA, lambda cfg: check_stage_inputs(cfg, asv=False, cm=True),
                     lambda cfg, force: cm_stage(cfg, force))


if __name__ == "__main__":
    sys.exit(main())
