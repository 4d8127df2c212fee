"""Train and evaluate what a config describes: a speaker model (task: asv), a countermeasure (task: cm),
or a SASV back-end with frozen or jointly optimised front-ends (task: sasv).

    python main.py --config configs/quickstart.conf [key.sub=value ...] [--resume]

The resolved config is saved as <output_dir>/config.yaml.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from common.allocator import retain_freed_memory
from common.cli import config_parser, run_main
from common.config import ConfigError, apply_override, dump_config, load_config, read_raw
from engine import is_main_process

TASKS = ("asv", "cm", "sasv")


def _task_module(name: str):
    if name == "asv":
        from pipeline import asv_task as module
    elif name == "cm":
        from pipeline import cm_task as module
    elif name == "sasv":
        from pipeline import sasv_task as module
    else:
        raise ConfigError(f"'task' must be one of {', '.join(TASKS)}, got {name!r}")
    return module


def _peek_task(path: str, overrides: Sequence[str]) -> str:
    """The `task` key, read before the full schema is known (it chooses the schema)."""
    data = read_raw(path)
    for item in overrides:
        if item.startswith("task="):
            apply_override(data, item)
    return str(data.get("task", "sasv"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true", help="continue training from <output_dir>/.../last.pt")
    parser.add_argument("--force", action="store_true", help="recompute cached embeddings and scores")
    args = parser.parse_args(argv)
    retain_freed_memory()  # CPU training: reuse freed feature maps instead of page-faulting new ones
    module = _task_module(_peek_task(args.config, args.overrides))
    cfg = load_config(args.config, args.overrides, module.SCHEMA)
    if is_main_process():
        dump_config(cfg, Path(cfg["output_dir"]) / "config.yaml")
    if cfg["task"] == "sasv":
        module.run(cfg, resume=args.resume, force=args.force)
    else:
        module.run(cfg, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
