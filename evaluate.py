"""Scores a SASV system from trial-level score files (SASV 2022 format `SPK UTT ATTACK KEY SCORE`).

    python evaluate.py --sasv sasv.txt [--asv asv.txt] [--cm cm.txt] [--json out.json] [--det det.png]

--sasv gives SASV-EER, SV-EER, SPF-EER and the a-DCFs; adding the ASV and CM scores of the same trials
gives the ASV / CM EERs, the t-EER and both min t-DCFs. Files must hold the same trials (any order).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from common.cli import run_main
from common.errors import InputError
from common.folders import check_inputs_kept
from common.io import check_writable, write_json
from data.score_files import align_scores, read_sasv_scores
from metrics.report import NEEDS_ASV_AND_CM, evaluate_trials, format_table, json_ready, missing_classes

DET_FORMATS = (".png", ".pdf", ".svg")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sasv", required=True, help="SASV score file (the system's final score)")
    parser.add_argument("--asv", help="ASV score file of the same trials")
    parser.add_argument("--cm", help="CM score file of the same trials (higher = bona fide)")
    parser.add_argument("--name", help="system name in the table (default: the --sasv file's name)")
    parser.add_argument("--json", help="write the metrics to this JSON file")
    parser.add_argument("--det", help="draw SASV / SV / SPF DET curves into this image (.png, .pdf, .svg)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.det and Path(args.det).suffix.lower() not in DET_FORMATS:
        raise InputError(f"--det {args.det}: unknown image type; use one of {', '.join(DET_FORMATS)}")
    for flag, path in (("--json", args.json), ("--det", args.det)):
        if path and Path(path).is_dir():
            raise InputError(f"{flag} {path}: is a folder; give the file to write")
        if path:
            check_writable(path, flag)      # a read-only folder is said before the score files are read
    if args.json and args.det and Path(args.json).resolve() == Path(args.det).resolve():
        raise InputError(f"--json {args.json} and --det {args.det} name the same file: one would replace the other")
    check_inputs_kept({"--sasv": args.sasv, "--asv": args.asv, "--cm": args.cm},
                      files={"--json": args.json, "--det": args.det})
    sasv = read_sasv_scores(args.sasv)
    asv = align_scores(sasv, read_sasv_scores(args.asv), (args.sasv, args.asv)) if args.asv else None
    cm = align_scores(sasv, read_sasv_scores(args.cm), (args.sasv, args.cm)) if args.cm else None
    results = evaluate_trials(sasv.key, sasv.score, None if asv is None else asv.score,
                              None if cm is None else cm.score)
    if not results:
        raise InputError(f"{args.sasv}: no metric can be computed: every one needs target trials and at least one "
                         f"kind of negative (nontarget or spoof)")
    if args.det:
        from metrics.det import plot_det
        systems = {f"SASV: {Path(args.sasv).name}": (sasv.score, sasv.key)}
        if asv is not None:
            systems[f"ASV: {Path(args.asv).name}"] = (asv.score, asv.key)
        if cm is not None:
            systems[f"CM: {Path(args.cm).name}"] = (cm.score, cm.key)
        plot_det(systems, args.det, title=f"DET curves ({len(sasv)} trials)")
    if args.json:
        write_json(args.json, json_ready(results))
    print(format_table({args.name or Path(args.sasv).name: results}))
    lacking = missing_classes(sasv.key)
    if lacking:
        by_class: dict[str, list[str]] = {}
        for metric, cls in lacking.items():
            by_class.setdefault(cls, []).append(metric)
        for cls, metrics in by_class.items():
            print(f"note: {args.sasv} has no {cls} trials: not computed: {', '.join(metrics)}", file=sys.stderr)
    if (asv is None) != (cm is None):
        given = "--asv" if asv is not None else "--cm"
        print(f"note: {', '.join(NEEDS_ASV_AND_CM)} need both --asv and --cm (only {given} was given)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
