"""Writes a synthetic SASV corpus: python generate_corpus.py --out DIR [--layout NAME].

`la` (the default): the ASVspoof 2019 LA and VoxCeleb layouts (DIR/LA, DIR/VoxCeleb); `asvspoof5`: the ASVspoof 5
layout (DIR/ASVspoof5), with coded eval copies made by the encoders the installed FFmpeg has; `asvspoof2021_la`,
`asvspoof2021_df`, `in_the_wild`, `lists`: the LA corpus and, in DIR/NAME, that layout made from it
(synthetic/cm_sets.py). One corpus a folder: another of la / asvspoof5 or another preset in the same --out replaces
the one there (never files the generator did not write). `--audio-pool N` (asvspoof5, for dry runs at full counts):
N distinct recordings a folder, every other file a hard link to one of them (synthetic/asvspoof5.py)."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import synthetic
import synthetic.asvspoof5 as asvspoof5
from common.cli import run_main
from common.config import Rule
from common.folders import check_output_path
from common.io import check_writable
from synthetic import cm_sets
from synthetic.layout import MANIFEST, why_incomplete
from synthetic.presets import PRESETS, get_preset

SEED = Rule(0, low=0)           # any non-negative integer (synthetic.generate_corpus)
WORKERS = Rule(None, kind=int, low=1)
AUDIO_POOL = Rule(0, low=0)     # 0: every file rendered
@dataclass(frozen=True)
class Layout:
    """What --layout chooses: its presets, the completeness check, the writer and the folders to print."""
    presets: dict
    why_incomplete: Callable[..., str | None]        # (out, preset, seed[, audio_pool=]) -> why not complete
    generate: Callable[..., object]
    folders: Callable[[Path], str]
    made_from_la: str | None = None     # a synthetic/cm_sets.py layout, written into DIR/NAME after the LA corpus


def _la_folders(out: Path) -> str:
    paths = synthetic.corpus_paths(out)
    return f"database (LA): {paths.la}\nenr_audio:     {paths.enr_audio}\nVoxCeleb:      {paths.voxceleb}"


LAYOUTS: dict[str, Layout] = {
    "la": Layout(PRESETS, lambda out, preset, seed: why_incomplete(synthetic.corpus_paths(out), get_preset(preset),
                                                                     seed),
                 synthetic.generate_corpus, _la_folders),
    "asvspoof5": Layout(asvspoof5.PRESETS, asvspoof5.why_incomplete, asvspoof5.generate,
                        lambda out: f"database (ASVspoof 5): {out / asvspoof5.TOP}"),
}
for _name in cm_sets.LAYOUTS:
    LAYOUTS[_name] = Layout(**{**vars(LAYOUTS["la"]), "made_from_la": _name})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="output folder (gets LA/ and VoxCeleb/, or ASVspoof5/)")
    ap.add_argument("--layout", default="la", choices=list(LAYOUTS),
                    help="la: ASVspoof 2019 LA + VoxCeleb; asvspoof5: ASVspoof 5; the others: the LA corpus and that "
                         "layout made from it in OUT/LAYOUT (default: %(default)s)")
    ap.add_argument("--preset", default="default", choices=sorted({p for lay in LAYOUTS.values() for p in lay.presets}),
                    help="corpus size (default: %(default)s)")
    ap.add_argument("--seed", default=0, type=SEED.argument_type(),
                    help="random seed, an integer >= 0; same preset + seed = identical files")
    ap.add_argument("--force", action="store_true", help="regenerate even if the output is complete")
    ap.add_argument("--workers", default=None, type=WORKERS.argument_type(),
                    help="rendering processes (default: up to 2)")
    ap.add_argument("--audio-pool", default=0, type=AUDIO_POOL.argument_type(),
                    help="asvspoof5 only: render N distinct recordings (and N coded copies) a folder and make every "
                         "other file a hard link to one of them: the full lists in minutes, for dry runs at scale "
                         "(default 0: every file rendered)")
    args = ap.parse_args(argv)
    layout = LAYOUTS[args.layout]
    pool = {}
    if args.audio_pool:
        if args.layout != "asvspoof5":
            ap.error(f"--audio-pool applies to --layout asvspoof5 only, not {args.layout}")
        pool = {"audio_pool": args.audio_pool}
    if args.preset not in layout.presets:
        ap.error(f"--layout {args.layout} has no preset {args.preset!r}; choose one of {', '.join(layout.presets)}")
    out = check_output_path(args.out, "--out")
    why = None if args.force else layout.why_incomplete(out, args.preset, args.seed, **pool)
    if not args.force and why is None:
        print(f"synthetic corpus already complete (preset {args.preset}, seed {args.seed}); --force regenerates")
    else:
        if why is not None and (out / MANIFEST).exists():
            print(f"regenerating the synthetic corpus in {out}: {why}", file=sys.stderr)
        check_writable(out, "--out", folder=True)   # before planning and rendering
        start = time.perf_counter()
        layout.generate(out, args.preset, args.seed, force=args.force, workers=args.workers, progress=True, **pool)
        print(f"generated preset {args.preset}, seed {args.seed} in {time.perf_counter() - start:.1f} s")
    print(layout.folders(out))
    if layout.made_from_la is not None:
        database = cm_sets.write_layout(layout.made_from_la, synthetic.corpus_paths(out), out / layout.made_from_la)
        print(f"database ({layout.made_from_la}): {database}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
