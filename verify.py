"""Verifies trials from audio files with a finished experiment: ASV, CM and SASV scores and the decision.

    python verify.py --config FILE [key.sub=value ...] --enroll a.wav [b.wav ...] --test x.wav
    python verify.py --config FILE [key.sub=value ...] --batch pairs.csv --out results.csv

The config is the experiment's SASV config: front-ends from its asv/cm sections, the back-end from
<output_dir>/backend_state.json (score-level, written by save_sasv_score.py) or backend.checkpoint
(embedding-level; default <output_dir>/backend.pt), the threshold from the dev SASV scores
<output_dir>/scores/sasv_dev.txt (SASV-EER point unless --threshold-method or --threshold says otherwise).
Any WAV/FLAC, any sample rate, mono or multi-channel (mixed down and resampled to 16 kHz).
pairs.csv has the columns `enroll` (files separated by ';') and `test`; paths relative to the CSV's folder.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from common.cli import config_parser, run_main
from common.config import Rule, load_config
from common.errors import InputError
from common.io import check_writable

THRESHOLD = Rule(None, kind=float)   # --threshold: any finite SASV score (nan would reject every trial)


def main(argv: Sequence[str] | None = None) -> int:
    from common.folders import check_inputs_kept, check_output_path
    from common.runs import config_checkpoints
    from metrics.thresholds import FAR, METHODS
    from pipeline.recipes.sasv_task import SCHEMA
    from pipeline.stages.backend import backend_state_path
    from pipeline.stages.experiment import check_sasv_config, experiment
    from pipeline.stages.frontends import check_scoring_checkpoint
    from pipeline.tools.verify import (
        Threshold,
        Trial,
        check_backend,
        describe,
        dev_threshold,
        read_pairs,
        verify,
        write_results,
    )

    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--enroll", nargs="+", metavar="AUDIO", help="enrolment audio file(s) of the claimed speaker")
    parser.add_argument("--test", metavar="AUDIO", help="the test audio file")
    parser.add_argument("--batch", metavar="CSV", help="trials to verify: columns enroll (';'-separated) and test")
    parser.add_argument("--out", metavar="CSV", help="where --batch writes its results")
    parser.add_argument("--threshold", type=THRESHOLD.argument_type(),
                        help="decision threshold on the SASV score (a finite number; overrides the dev one)")
    parser.add_argument("--threshold-method", choices=METHODS, default="eer",
                        help="how the threshold is chosen on the dev SASV scores (default: eer)")
    parser.add_argument("--far", type=FAR.argument_type(), default=FAR.default,
                        help="false-accept rate of --threshold-method far, in (0, 1) (default: %(default)s)")
    args = parser.parse_intermixed_args(argv)
    single, batch = args.enroll is not None or args.test is not None, args.batch is not None or args.out is not None
    if single == batch:
        parser.error("give either --enroll ... --test FILE, or --batch CSV --out CSV")
    if single and (not args.enroll or not args.test):
        parser.error("a single trial needs both --enroll FILE [FILE ...] and --test FILE")
    if batch and (not args.batch or not args.out):
        parser.error("batch mode needs both --batch CSV and --out CSV")

    cfg = load_config(args.config, args.overrides, SCHEMA)
    check_output_path(cfg["output_dir"], "output_dir")     # the experiment verified with: never the current folder
    check_sasv_config(cfg)
    if args.out and Path(args.out).is_dir():
        raise InputError(f"--out {args.out}: is a folder; give the CSV file to write")
    if args.out:
        check_writable(args.out, "--out")    # a read-only folder is said before any audio is scored
    check_scoring_checkpoint(cfg["asv"], "asv", cfg["allow_random_weights"])
    check_scoring_checkpoint(cfg["cm"], "cm", cfg["allow_random_weights"])
    trials = read_pairs(args.batch) if batch else [Trial(tuple(args.enroll), args.test)]
    if batch:       # the results never replace what verify reads: the batch list, audio, config, model files
        named = {"--batch": args.batch, "--config": args.config, **config_checkpoints(cfg),
                 "back-end state": backend_state_path(cfg), "dev SASV scores": experiment(cfg).scores("sasv", "dev")}
        audio = [(f"audio file of {t.where}", p) for t in trials for p in dict.fromkeys((*t.enroll, t.test))]
        check_inputs_kept([*named.items(), *audio], files={"--out": args.out})
    check_backend(cfg)
    threshold = (Threshold(args.threshold, "given with --threshold") if args.threshold is not None
                 else dev_threshold(cfg, args.threshold_method, args.far))
    verdicts = verify(cfg, trials, threshold)
    if batch:
        write_results(args.out, verdicts)
        accepted = sum(v.accept for v in verdicts)
        print(f"{len(verdicts)} trials, {accepted} accepted, threshold {threshold.value:.6g} ({threshold.source}) "
              f"-> {args.out}")
    else:
        print(describe(cfg, verdicts[0], threshold))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
