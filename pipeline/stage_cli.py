"""The shared command line of the three stage scripts."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from common.cli import config_parser, run_main
from common.config import dump_config, load_config


def run_stage(doc: str, argv: Sequence[str] | None, stage: Callable[[Mapping, bool], object]) -> int:
    """Parses `--config FILE [key=value ...] [--force]` against the SASV schema and runs `stage(cfg, force)`."""

    def main(args_in: Sequence[str] | None) -> int:
        from pipeline.sasv_task import SCHEMA
        parser = config_parser(doc.strip().splitlines()[0])
        parser.add_argument("--force", action="store_true", help="recompute outputs even when they are up to date")
        args = parser.parse_args(args_in)
        cfg = load_config(args.config, args.overrides, SCHEMA)
        dump_config(cfg, Path(cfg["output_dir"]) / "config.yaml")
        stage(cfg, args.force)
        return 0

    return run_main(main, argv)
