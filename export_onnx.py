"""Exports a trained front-end or embedding back-end to ONNX: model.onnx and manifest.json in --out.

    python export_onnx.py --config FILE [--kind asv|cm|backend] --out DIR [key.sub=value ...]

--kind defaults to the config's task (asv, cm); a SASV config names it. Front-ends: the weights of the section's
`checkpoint`, or for a finished task asv / cm run its trained <output_dir>/asv_model.pt / cm_model.pt. Back-end:
the trained embedding back-end of a SASV experiment (backend.checkpoint, default <output_dir>/backend.pt), on the
concatenated [enrolment ASV, test ASV, test CM] embeddings. The batch and the length are dynamic; every export is
checked against PyTorch on ONNX Runtime before it is written (docs/onnx.md). Where the experiment has dev scores,
the manifest also holds the dev EER threshold (SASV-EER point for the back-end).
"""
from __future__ import annotations

import sys
from typing import Sequence

from common.cli import config_parser, run_main

KINDS = ("asv", "cm", "backend")


def main(argv: Sequence[str] | None = None) -> int:
    from common.config import load_config
    from common.io import check_writable
    from pipeline.recipes import config_task, task_module
    from pipeline.tools.export import export

    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, help="what to export (default: the config's task, asv or cm)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for model.onnx and manifest.json")
    args = parser.parse_intermixed_args(argv)
    task = config_task(args.config, args.overrides)
    cfg = load_config(args.config, args.overrides, task_module(task).SCHEMA)
    if args.kind is None and task not in ("asv", "cm"):
        parser.error(f"a task {task} config holds several models: say which with --kind asv|cm|backend")
    check_writable(args.out, "--out", folder=True)
    manifest = export(cfg, task, args.kind or task, args.out)
    threshold = manifest["dev_threshold"]
    print(f"{manifest['kind']} {manifest['arch']}: {args.out}/model.onnx and manifest.json (dev threshold "
          f"{threshold['value'] if threshold else 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
