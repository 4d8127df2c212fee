"""The shared command line of the three stage scripts, alone or under torchrun.

    torchrun --nproc_per_node=N save_cm_score.py --config FILE [key=value ...]

Under torchrun every rank reads the config and runs the checks (cheap; a bad input stops every rank with one line
from rank 0), rank 0 alone locks the folders and writes config.yaml, then every rank runs the stage: the embedding
and scoring are shared (pipeline/stages/sharding.py) and rank 0 writes the outputs. The ranks meet through
`engine.distributed.settle`, so a rank that fails stops the others instead of leaving them waiting.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

from common.cli import TOOLKIT_PACKAGES, add_wait_flag, config_parser, run_main
from common.config import load_config
from common.folders import check_inputs_kept
from common.locking import hold_folders
from common.runs import config_checkpoints, run_record
from engine import distributed

# What the stage scripts write at the top of output_dir besides scores/ (never one of their inputs)
STAGE_FILES = ("results.json", "results.previous.json", "backend_state.json", "det_dev.png", "det_eval.png")
# How long a rank waits for the others at a meeting: at most the difference between the slowest and the fastest
# rank's slice of a split (the slices are even in items, not in audio). A rank that dies ends the job at once
# (torchrun stops the others; a survivor's collective fails); this bounds only a rank that hangs.
SYNC_TIMEOUT_S = 24 * 3600.0


def run_stage(doc: str, argv: Sequence[str] | None, schema: Mapping, check: Callable[[Mapping], object],
              stage: Callable[[Mapping, bool], object]) -> int:
    """Parses `--config FILE [key=value ...] [--force] [--wait]` against `schema` (the SASV config's, which the
    recipes own: the entry script passes it, since stages sit below recipes); runs `check(cfg)` (every
    check that needs no model), locks output_dir and embeddings_dir, saves config.yaml, runs `stage(cfg, force)`.
    A stage that fails before it writes anything leaves the previous config.yaml and results.json as they were.
    Under torchrun (WORLD_SIZE > 1) the ranks join one gloo group (only small messages cross it: the arrays travel
    through shard files), every rank checks, rank 0 locks and records, every rank runs the stage."""

    def main(args_in: Sequence[str] | None) -> int:
        parser = config_parser(doc.strip().splitlines()[0])
        parser.add_argument("--force", action="store_true", help="recompute outputs even when they are up to date")
        add_wait_flag(parser)
        args = parser.parse_intermixed_args(args_in)
        ranks = distributed.setup("cpu", SYNC_TIMEOUT_S, backend="gloo")   # alone: no group, every call a no-op
        if not ranks.is_main:              # rank 0 speaks for the job: the others log only warnings
            for package in TOOLKIT_PACKAGES:
                logging.getLogger(package).setLevel(logging.WARNING)
        with distributed.closing(ranks):
            def checked() -> Mapping:
                cfg = load_config(args.config, args.overrides, schema)
                check(cfg)
                _take_gpu(cfg)
                return cfg
            cfg = distributed.together(ranks, "checks", checked)
            with contextlib.ExitStack() as held:
                if ranks.is_main:
                    distributed.together(ranks, "folders", lambda: _hold(held, cfg, args.wait))
                else:
                    distributed.together(ranks, "folders", lambda: None)   # rank 0 holds the folders for all
                distributed.together(ranks, "stage", lambda: stage(cfg, args.force))
        return 0

    return run_main(main, argv)


def _take_gpu(cfg: Mapping) -> None:
    """A rank on CUDA works on its LOCAL_RANK's GPU (as in training), also for code that uses the current device."""
    import torch

    from pipeline.stages.experiment import resolve_device
    device = resolve_device(cfg["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)


def _hold(held: contextlib.ExitStack, cfg: Mapping, wait: bool) -> None:
    """Rank 0 (or the one process): output_dir and embeddings_dir locked and config.yaml written, for the run."""
    from pipeline.stages.experiment import experiment
    out, inputs = Path(cfg["output_dir"]), config_checkpoints(cfg)
    check_inputs_kept(inputs, files={f"output_dir's {name}": out / name for name in STAGE_FILES},
                      replaced=[out / "scores"], how="the stages write their score files into")
    # the embeddings folder is locked also when it is the default <output_dir>/embeddings: another run may share it
    embeddings = experiment(cfg).embeddings
    held.enter_context(hold_folders([("output_dir", cfg["output_dir"]), ("embeddings_dir", embeddings)], wait))
    held.enter_context(run_record(Path(cfg["output_dir"]), cfg))
