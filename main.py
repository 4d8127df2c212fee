"""Train and evaluate what a config describes: a speaker model (task: asv), a countermeasure (task: cm),
a SASV back-end with frozen or jointly optimised front-ends (task: sasv), or a single SASV embedding network
(task: sasv_e2e, the SASV2 three-stage recipe).

    python main.py --config configs/quickstart.conf [key.sub=value ...] [--resume | --overwrite] [--wait]

Every check that needs no model runs first; then the output folder is locked (a second run on it stops, or
queues with --wait) and the resolved config is saved as <output_dir>/config.yaml. A folder that already
holds a trained run is continued with --resume, or moved into <output_dir>/replaced-<time>/ with
--overwrite; without either, main.py stops instead of replacing it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Sequence

from common.cli import add_wait_flag, config_parser, run_main
from common.config import load_config
from common.errors import InputError
from common.folders import check_inputs_kept, move_aside, replaceable_entries
from common.locking import hold_folders, writes_files
from common.runs import RunFolders, config_checkpoints, mark_started, note_resume, resume_check, run_record
from engine import existing_run, load_checkpoint
from engine.trainer import LAST
from pipeline.recipes import config_task, task_module


@dataclass(frozen=True)
class Plan:
    """How main.py continues what is in output_dir: a fresh run, or a resume with the settings it may change."""
    resume: bool
    allowed_changes: dict = field(default_factory=dict)
    epochs_done: int = 0


def _plan(module, folders: RunFolders, cfg, resume: bool, overwrite: bool) -> Plan:
    """Everything about the folder that can be checked before it is touched: a trained run in the way is never
    replaced silently; --overwrite may move only a run's own files; no input is a file the run writes or moves; a
    run to resume must be loadable and resumed with the settings it was trained with."""
    out, folder = folders.output_dir, folders.training
    previous = existing_run(folder) if folder is not None else None
    if previous is not None and not resume and not overwrite:
        raise InputError(f"{previous}: {cfg['output_dir']} already holds a trained run; continue it with --resume, "
                         f"replace it with --overwrite (the old run is moved to {cfg['output_dir']}/replaced-<time>/), "
                         f"or choose another output_dir")
    inputs = config_checkpoints(cfg)
    check_inputs_kept(inputs, files={f"output_dir's {name}": out / name for name in folders.writes})
    if overwrite:
        check_inputs_kept(inputs, replaced=replaceable_entries(out, folders.kept, "output_dir"),
                          how="--overwrite moves into replaced-<time>/ before this run reads it")
        return Plan(resume=False)
    if not resume or previous is None:
        return Plan(resume=False)
    done = int(load_checkpoint(folder / LAST)["epoch"]) if (folder / LAST).exists() else 0
    allowed = resume_check(out, cfg, inputs, module.protocol_digests(cfg), epochs_done=done)
    return Plan(resume=True, allowed_changes=allowed, epochs_done=done)


def main(argv: Sequence[str] | None = None) -> int:
    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true", help="continue training from <output_dir>/.../last.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh over an earlier run, moving it into <output_dir>/replaced-<time>/")
    parser.add_argument("--force", action="store_true", help="recompute cached embeddings and scores")
    add_wait_flag(parser)
    args = parser.parse_intermixed_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in output_dir and --overwrite replaces it: give one of them")
    module = task_module(config_task(args.config, args.overrides))
    cfg = load_config(args.config, args.overrides, module.SCHEMA)
    checked = module.check(cfg)            # everything that needs no model, before anything is written
    folders = module.folders(cfg)
    plan = _plan(module, folders, cfg, args.resume, args.overwrite)
    kwargs = {"resume": args.resume, "checked": checked,   # run() reuses it instead of checking again
              **({"force": args.force} if cfg["task"] == "sasv" else {})}
    if not writes_files():                 # torchrun ranks > 0: rank 0 holds the folders and writes
        module.run(cfg, **kwargs)
        return 0
    out, moved = folders.output_dir, None
    with hold_folders(folders.locked, wait=args.wait):
        if args.overwrite:
            moved = move_aside(out, keep=folders.kept, key="output_dir")
            if moved is not None:
                print(f"--overwrite: the previous run in {out} moved to {moved}", file=sys.stderr, flush=True)
        with run_record(out, cfg, replaced=moved):     # a run that fails before writing anything moves it back
            if plan.resume:
                note_resume(out, plan.allowed_changes, plan.epochs_done)
            elif folders.training is not None:
                mark_started(out, cfg, config_checkpoints(cfg), module.protocol_digests(cfg))
            module.run(cfg, **kwargs)
    return 0

if __name__ == "__main__":
    sys.exit(run_main(main))
