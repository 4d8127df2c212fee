"""Writes the synthetic SASV corpus (ASVspoof 2019 LA + VoxCeleb layouts): python generate_corpus.py --out DIR."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import synthetic
from synthetic.layout import MANIFEST, why_incomplete
from synthetic.presets import PRESETS, get_preset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path, help="output folder (gets LA/ and VoxCeleb/)")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS), help="corpus size (default: %(default)s)")
    ap.add_argument("--seed", default=0, type=int, help="random seed; same preset + seed = identical files")
    ap.add_argument("--force", action="store_true", help="regenerate even if the output is complete")
    ap.add_argument("--workers", default=None, type=int, help="rendering processes (default: up to 2)")
    args = ap.parse_args(argv)
    if args.seed < 0:
        ap.error("--seed must be >= 0")
    paths = synthetic.corpus_paths(args.out)
    why = None if args.force else why_incomplete(paths, get_preset(args.preset), args.seed)
    if not args.force and why is None:
        print(f"synthetic corpus already complete (preset {args.preset}, seed {args.seed}); --force regenerates")
    else:
        if why is not None and (paths.root / MANIFEST).exists():
            print(f"regenerating the synthetic corpus in {paths.root}: {why}", file=sys.stderr)
        start = time.perf_counter()
        try:
            synthetic.generate_corpus(args.out, args.preset, args.seed, force=args.force, workers=args.workers,
                                      progress=True)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"generated preset {args.preset}, seed {args.seed} in {time.perf_counter() - start:.1f} s")
    print(f"database (LA): {paths.la}\nenr_audio:     {paths.enr_audio}\nVoxCeleb:      {paths.voxceleb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
