"""The shared command line of the three stage scripts."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from common.cli import add_wait_flag, config_parser, run_main
from common.config import load_config
from common.folders import check_inputs_kept
from common.locking import hold_folders
from common.runs import config_checkpoints, run_record

# What the stage scripts write at the top of output_dir besides scores/ (never one of their inputs)
STAGE_FILES = ("results.json", "results.previous.json", "backend_state.json", "det_dev.png", "det_eval.png")


def run_stage(doc: str, argv: Sequence[str] | None, check: Callable[[Mapping], object],
              stage: Callable[[Mapping, bool], object]) -> int:
    """Parses `--config FILE [key=value ...] [--force] [--wait]` against the SASV schema; runs `check(cfg)` (every
    check that needs no model), locks output_dir and embeddings_dir, saves config.yaml, runs `stage(cfg, force)`.
    A stage that fails before it writes anything leaves the previous config.yaml and results.json as they were."""

    def main(args_in: Sequence[str] | None) -> int:
        from pipeline.recipes.sasv_task import SCHEMA
        from pipeline.stages.experiment import experiment
        parser = config_parser(doc.strip().splitlines()[0])
        parser.add_argument("--force", action="store_true", help="recompute outputs even when they are up to date")
        add_wait_flag(parser)
        args = parser.parse_intermixed_args(args_in)
        cfg = load_config(args.config, args.overrides, SCHEMA)
        check(cfg)
        out, inputs = Path(cfg["output_dir"]), config_checkpoints(cfg)
        check_inputs_kept(inputs, files={f"output_dir's {name}": out / name for name in STAGE_FILES},
                          replaced=[out / "scores"], how="the stages write their score files into")
        # the embeddings folder is locked also when it is the default <output_dir>/embeddings: another run may share it
        embeddings = experiment(cfg).embeddings
        with hold_folders([("output_dir", cfg["output_dir"]), ("embeddings_dir", embeddings)], args.wait):
            with run_record(Path(cfg["output_dir"]), cfg):
                stage(cfg, args.force)
        return 0

    return run_main(main, argv)
