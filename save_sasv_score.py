"""Stage 3 (SASV): scores the dev and eval SASV trial lists with the configured back-end.

    python save_sasv_score.py --config configs/x.conf [key=value ...] [--force]

Reads the outputs of save_asv_embeddings.py and save_cm_score.py (same output_dir). Score-level back-ends
are fitted on `backend.fit_on` (dev); embedding-level ones load `backend.checkpoint` (trained by main.py).
Writes scores/sasv_{dev,eval}.txt (SASV 2022 format), results.json (every metric of evaluate.py per split),
backend_state.json (fitted score-level back-ends) and det_{dev,eval}.png.
"""
from __future__ import annotations

import sys
from typing import Sequence

from pipeline.stages.cli import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.recipes.sasv_task import SCHEMA
    from pipeline.stages.sasv import check_scoring, score_splits
    return run_stage(__doc__, argv, SCHEMA, check_scoring, lambda cfg, force: score_splits(cfg))


if __name__ == "__main__":
    sys.exit(main())
