"""Copy-synthesis (SASV2 stage 2): vocoded copies of bona fide speech, a spoof class beside its own sources.

python copy_synthesis.py --voxceleb ROOT | --la DIR [--split train] --out DIR [--vocoders NAME ...]
                         [--workers N] [--limit-per-speaker K] [--seed S] [--skip-bad-audio] [--overwrite] [--wait]

Writes `<out>/wav/<vocoder>/<source path>.wav` (16 kHz PCM_16), then `<out>/copy_synthesis_list.txt`
(`SPEAKER PATH VOCODER SOURCE`) and `copy_synthesis.json`; resumable. The work: data/copy_synthesis.py. See
docs/copy_synthesis.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from common.cli import add_wait_flag, run_main
from common.config import Rule
from data.asvspoof import SPLITS
from data.copy_synthesis import copy_synthesize, la_sources, voxceleb_sources
from data.vocoders import LIST_NAME, MANIFEST_NAME, VOCODERS

COUNT = Rule(1, low=1)      # --workers, --limit-per-speaker
SEED = Rule(0, low=0)       # --seed: any non-negative integer (numpy's Generator takes it whole)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--voxceleb", type=Path, help="VoxCeleb folder (wav/ and train_list.txt): every listed file")
    source.add_argument("--la", type=Path, help="an ASVspoof corpus folder (2019 LA, 5, ...: docs/datasets.md): the "
                                                "bona fide utterances of --split")
    ap.add_argument("--split", choices=SPLITS, default=None, help="LA split (default: train)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--vocoders", nargs="+", choices=sorted(VOCODERS), default=None, metavar="NAME",
                    help=f"vocoders to use (default: all of {', '.join(VOCODERS)})")
    ap.add_argument("--workers", type=COUNT.argument_type(), default=2,
                    help="processes (default: %(default)s); the output does not depend on it")
    ap.add_argument("--limit-per-speaker", type=COUNT.argument_type(), default=None, metavar="K",
                    help="copy only the first K utterances of each speaker (list order)")
    ap.add_argument("--seed", type=SEED.argument_type(), default=0, help="random seed (default: %(default)s)")
    ap.add_argument("--skip-bad-audio", action="store_true",
                    help="list unreadable source files and go on without them (default: stop at the first)")
    ap.add_argument("--overwrite", action="store_true",
                    help="delete what a previous run wrote in --out (any settings) and start over")
    add_wait_flag(ap)
    args = ap.parse_args(argv)
    if args.split is not None and args.la is None:
        ap.error("--split goes with --la")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sources = la_sources(args.la, args.split or "train") if args.la is not None else voxceleb_sources(args.voxceleb)
    done = copy_synthesize(args.out, sources, args.vocoders or VOCODERS, seed=args.seed, workers=args.workers,
                           limit_per_speaker=args.limit_per_speaker, skip_bad_audio=args.skip_bad_audio,
                           overwrite=args.overwrite, wait=args.wait)
    skipped = f", {done.bad} unreadable source file(s) left out (see {MANIFEST_NAME})" if done.bad else ""
    remade = f" ({done.changed} source file(s) changed since their copies were made)" if done.changed else ""
    print(f"copy-synthesis: {done.files} files ({done.vocoders} vocoder(s) x {done.sources} source files): "
          f"{done.written} written{remade}, {done.already} already there{skipped}; list: {done.out / LIST_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
