"""Fusion ablation: compares a grid of SASV back-end variants on the cached embeddings of one experiment.

    python ablate.py --config configs/ablation_quickstart.conf [key.sub=value ...] [--force]

The config is a SASV config plus an `ablation` section (see docs/ablation.md). Embeddings are computed once
(skipped when cached), finished systems are skipped on a rerun (--force redoes them). Writes
<output_dir>/ablation/{ablation.csv, ablation.md, ablation_det.png} and one folder per system.
"""
from __future__ import annotations

import sys
from typing import Sequence

from common.cli import add_wait_flag, config_parser, run_main
from common.config import load_config
from common.folders import check_inputs_kept, check_output_path
from common.locking import hold_folders
from common.runs import config_checkpoints, run_record


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.stages.experiment import check_stage_inputs, experiment
    from pipeline.tools.ablation.grid import SCHEMA, ablation_dir, parse_systems
    from pipeline.tools.ablation.runner import run_ablation

    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="redo every system (cached embeddings are still reused)")
    add_wait_flag(parser)
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides, SCHEMA)
    check_output_path(cfg["output_dir"], "output_dir")   # the default home of the ablation and the embeddings
    systems = parse_systems(cfg)      # the whole grid is checked before anything is written
    for sys_cfg in {s.cfg["enrolment"]: s.cfg for s in systems}.values():   # corpus, front-ends, enrolment forms
        check_stage_inputs(sys_cfg)
    check_inputs_kept(config_checkpoints(cfg), replaced=[ablation_dir(cfg)],
                      how="ablate.py writes its systems and reports into")
    folders = [("ablation.dir", ablation_dir(cfg)), ("embeddings_dir", experiment(cfg).embeddings)]
    with hold_folders(folders, wait=args.wait):
        with run_record(ablation_dir(cfg), cfg):
            run_ablation(cfg, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
