"""Writes the synthetic SASV corpus (ASVspoof 2019 LA + VoxCeleb layouts): python generate_corpus.py --out DIR.

--layout NAME also writes another corpus layout made from it into DIR/NAME (docs/synthetic_corpus.md)."""
from __future__ import annotations

import argparse
import sys
import time

import synthetic
from common.cli import run_main
from common.config import Rule
from common.folders import check_output_path
from common.io import check_writable
from synthetic import cm_sets
from synthetic.layout import MANIFEST, why_incomplete
from synthetic.presets import PRESETS, get_preset

SEED = Rule(0, low=0)           # any non-negative integer (synthetic.generate_corpus)
WORKERS = Rule(None, kind=int, low=1)
# --layout NAME -> the writer of that layout into <out>/NAME, made from the LA corpus (None: the corpus itself)
LAYOUTS = {"asvspoof2019_la": None, **cm_sets.LAYOUTS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="output folder (gets LA/ and VoxCeleb/)")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS), help="corpus size (default: %(default)s)")
    ap.add_argument("--seed", default=0, type=SEED.argument_type(),
                    help="random seed, an integer >= 0; same preset + seed = identical files")
    ap.add_argument("--force", action="store_true", help="regenerate even if the output is complete")
    ap.add_argument("--workers", default=None, type=WORKERS.argument_type(),
                    help="rendering processes (default: up to 2)")
    ap.add_argument("--layout", default="asvspoof2019_la", choices=list(LAYOUTS),
                    help="also write this layout, made from the corpus, into OUT/LAYOUT (default: %(default)s, "
                         "the corpus alone)")
    args = ap.parse_args(argv)
    out = check_output_path(args.out, "--out")
    paths = synthetic.corpus_paths(out)
    why = None if args.force else why_incomplete(paths, get_preset(args.preset), args.seed)
    if not args.force and why is None:
        print(f"synthetic corpus already complete (preset {args.preset}, seed {args.seed}); --force regenerates")
    else:
        if why is not None and (paths.root / MANIFEST).exists():
            print(f"regenerating the synthetic corpus in {paths.root}: {why}", file=sys.stderr)
        check_writable(out, "--out", folder=True)   # before planning and rendering
        start = time.perf_counter()
        synthetic.generate_corpus(out, args.preset, args.seed, force=args.force, workers=args.workers,
                                  progress=True)
        print(f"generated preset {args.preset}, seed {args.seed} in {time.perf_counter() - start:.1f} s")
    print(f"database (LA): {paths.la}\nenr_audio:     {paths.enr_audio}\nVoxCeleb:      {paths.voxceleb}")
    if LAYOUTS[args.layout] is not None:
        database = cm_sets.write_layout(args.layout, paths, out / args.layout)
        print(f"database ({args.layout}): {database}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
