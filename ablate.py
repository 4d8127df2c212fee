"""Fusion ablation: compares a grid of SASV back-end variants on the cached embeddings of one experiment, or on the
ASV and CM score files of any system.

    python ablate.py --config configs/ablation_quickstart.conf [key.sub=value ...] [--force]
    python ablate.py --config configs/ablation_score_files.conf [key.sub=value ...] [--force]

The config is a SASV config plus an `ablation` section, or `scores` (each split's ASV and CM score files, read as
fuse.py reads them) plus an `ablation` section of score-level back-ends (see docs/ablation.md). Embeddings are
computed once (skipped when cached), finished systems are skipped on a rerun (--force redoes them). Writes
<output_dir>/ablation/{ablation.csv, ablation.md, ablation_det.png} and one folder per system.
"""
from __future__ import annotations

import sys
from typing import Sequence

from common.cli import add_wait_flag, config_parser, run_main
from common.folders import check_inputs_kept, check_output_path
from common.locking import hold_folders
from common.runs import config_checkpoints, run_record


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.stages.experiment import check_stage_inputs, experiment
    from pipeline.tools.ablation.grid import ablation_dir, load_ablation_config, parse_systems, score_files
    from pipeline.tools.ablation.runner import run_ablation
    from pipeline.tools.ablation.score_files import read_score_files

    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="redo every system (cached embeddings are still reused)")
    add_wait_flag(parser)
    args = parser.parse_intermixed_args(argv)
    cfg = load_ablation_config(args.config, args.overrides)
    check_output_path(cfg["output_dir"], "output_dir")   # the default home of the ablation (and the embeddings)
    systems = parse_systems(cfg)      # the whole grid is checked before anything is written
    how = "ablate.py writes its systems and reports into"
    source = None
    if score_files(cfg):
        source = read_score_files(cfg)    # read, aligned and checked before the folder is locked
        check_inputs_kept(source.named(), replaced=[ablation_dir(cfg)], how=how)
        folders = [("ablation.dir", ablation_dir(cfg))]
    else:
        for sys_cfg in {s.cfg["enrolment"]: s.cfg for s in systems}.values():   # corpus, front-ends, enrolment
            check_stage_inputs(sys_cfg)
        check_inputs_kept(config_checkpoints(cfg), replaced=[ablation_dir(cfg)], how=how)
        folders = [("ablation.dir", ablation_dir(cfg)), ("embeddings_dir", experiment(cfg).embeddings)]
    with hold_folders(folders, wait=args.wait):
        with run_record(ablation_dir(cfg), cfg):
            run_ablation(cfg, force=args.force, source=source)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
