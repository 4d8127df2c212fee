"""Stage 1 (ASV): embeddings of every utterance of the CM protocols, speaker models, ASV trial scores.

    python save_asv_embeddings.py --config configs/x.conf [key=value ...] [--force]

Writes <output_dir>/embeddings/asv_{split}.npz, asv_enrol_{dev,eval}.npz and scores/asv_{dev,eval}.txt
(SASV 2022 format). Cached outputs made by the same model, checkpoint and crop are skipped unless --force.
"""
from __future__ import annotations

import sys
from typing import Sequence

from pipeline.stages.cli import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.recipes.sasv_task import SCHEMA
    from pipeline.stages.asv import asv_stage
    from pipeline.stages.experiment import check_stage_inputs
    return run_stage(__doc__, argv, SCHEMA, lambda cfg: check_stage_inputs(cfg, asv=True, cm=False),
                     lambda cfg, force: asv_stage(cfg, force))


if __name__ == "__main__":
    sys.exit(main())
