"""Fuses other systems' ASV and CM score files with the score-level back-ends: fused score files, a table, DET plots.

    python fuse.py --asv-dev asv_dev.txt --cm-dev cm_dev.txt --asv-eval asv_eval.txt --cm-eval cm_eval.txt \\
                   [--trials-dev dev.trl.txt --trials-eval eval.trl.txt] \\
                   [--backends score_sum lr_fusion:prior=0.1 product_rule:calibration=sigmoid ...] --out DIR

Each file is any score format of data/score_files.py (SASV 2022 `SPK UTT ATTACK KEY SCORE`; the ASVspoof 5 package's
Track 2 file and its first form `SPK UTT SCORE TRIAL_TYPE`; CSV with named columns; for CM scores also one score per
utterance: ASVspoof 2019 CM `UTT ATTACK KEY SCORE`, package Track 1), recognised by its first line. Trials are matched
by (speaker, utterance), never by line order: they are the trial list's when one is given (an ASVspoof 2019 / 5 trial
list or a package Track 2 key file), else the ASV file's. Each rule (default: every score-level back-end) is fitted
on the labelled dev split and scores dev and eval. An eval split without labels is scored without metrics.
Writes under DIR: results.json (metrics, fitted states, provenance with each input's SHA-256), table.txt,
det_{dev,eval}.png, scores/{asv,cm_trials}_{split}.txt (the aligned inputs), and per rule <rule>/sasv_{split}.txt
(SASV 2022), <rule>/asvspoof5/sasv_{split}.tsv (+ sasv_keys_{split}.tsv: the package's Track 2 files) and
backend_state.json. See docs/backends.md, "Fusing score files from other systems".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from common.cli import add_wait_flag, run_main
from common.errors import InputError
from common.folders import check_inputs_kept, check_output_folder


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for split in ("dev", "eval"):
        parser.add_argument(f"--asv-{split}", required=True, help=f"ASV score file of the {split} trials")
        parser.add_argument(f"--cm-{split}", required=True,
                            help=f"CM score file of the {split} trials (or one score per utterance)")
        parser.add_argument(f"--trials-{split}", help=f"the {split} trial list or package Track 2 key file "
                                                      f"(trials and labels; default: the ASV file's trials)")
    parser.add_argument("--backends", nargs="+", metavar="RULE",
                        help="score-level back-ends, `name` or `name:key=value,...` (default: all of them)")
    parser.add_argument("--out", required=True, help="output folder (new, empty or written by this toolkit)")
    parser.add_argument("--no-det", action="store_true", help="skip the DET plots")
    parser.add_argument("--breakdown", action="store_true",
                        help="also the metrics per attack / codec condition / codec quality of each rule and split, "
                             "in results.json (about 1 s per rule and split at ASVspoof 2019 LA size, minutes at "
                             "ASVspoof 5 size with its codec tables)")
    add_wait_flag(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from common.locking import hold_folders
    from pipeline.tools.fuse import SplitSources, parse_rule, score_backends
    from pipeline.tools.fuse_run import fuse, write_outputs

    args = parse_args(argv)
    out = check_output_folder(args.out, "--out")      # new, empty or a run's: said before any input is read
    rules = [parse_rule(text) for text in (args.backends or score_backends())]
    labels = [r.label for r in rules]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice:
        raise InputError(f"--backends: {twice} is given twice")
    sources = [SplitSources(split, getattr(args, f"asv_{split}"), getattr(args, f"cm_{split}"),
                            getattr(args, f"trials_{split}"),
                            (f"--asv-{split}", f"--cm-{split}", f"--trials-{split}")) for split in ("dev", "eval")]
    # reads, checks, fits, scores: writes nothing
    result = fuse(sources, rules, out, det=not args.no_det, breakdown=args.breakdown)
    check_inputs_kept({flag: path for s in sources for flag, path in s.named().items()},
                      files={str(path): path for path in result.files.values()})
    with hold_folders([("--out", Path(out))], wait=args.wait):
        write_outputs(result)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
