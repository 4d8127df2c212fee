"""Scores a SASV system (Track 2) or a countermeasure (Track 1) from score files, with the per-condition tables.

    python evaluate.py --sasv sasv.txt [--asv asv.txt] [--cm cm.txt] [--json out.json] [--det det.png]
    python evaluate.py --sasv track2.tsv --keys track2_keys.tsv               # ASVspoof 5 package files
    python evaluate.py --cm cm_eval.txt                                      # Track 1: one score per utterance
    python evaluate.py --cm track1.tsv --keys track1_keys.tsv
    python evaluate.py --cm track1.tsv --database DIR --split eval           # keys and conditions from the corpus

Score files are recognised by their first line (data.score_files.SCORE_FORMATS: SASV 2022, ASVspoof 2019 CM, the
ASVspoof 5 evaluation package's Track 1 / Track 2 files, whose keys are a separate file given with --keys).
--sasv gives SASV-EER, SV-EER, SPF-EER and the a-DCFs; the ASV and CM scores of the same trials (--asv / --cm, or
the asv-score / cm-score columns of a package file) add the ASV / CM EERs, the t-EER and the min t-DCFs. --cm
alone gives the ASVspoof 5 Track 1 metrics (minDCF, EER, Cllr, actDCF). Both add per-attack, per-codec and
per-codec-quality tables when the labels are known: from the score or key files, or from the corpus
(--database/--split: its CM protocol's attack and codec labels, and its keys for files that have none).
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
from data.databases import FORMAT_CHOICES, Database, open_database
from data.score_files import (
    SCORE_FORMATS,
    UNKNOWN,
    CMScores,
    PackageKey,
    SASVScores,
    align_scores,
    detect_score_format,
    read_asvspoof5_cm,
    read_asvspoof5_early,
    read_asvspoof5_sasv,
    read_cm_scores,
    read_sasv_scores,
)
from data.trial_kinds import BONAFIDE, SPOOF
from metrics.breakdown import Conditions, cm_breakdown, format_breakdown, results_entry, sasv_breakdown
from metrics.countermeasure import CM_COLUMNS, evaluate_cm_keys
from metrics.report import NEEDS_ASV_AND_CM, evaluate_trials, format_table, json_ready, missing_classes

DET_FORMATS = (".png", ".pdf", ".svg")
TRACK1_FORMATS = ("asvspoof2019_cm", "asvspoof5_cm", "asvspoof5_early")
TRACK2_FORMATS = ("sasv2022", "asvspoof5_sasv", "asvspoof5_early")
KEYED = {"asvspoof5_cm", "asvspoof5_sasv"}           # formats whose labels are in a key file


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sasv", help="SASV score file (the system's final score): Track 2")
    parser.add_argument("--asv", help="ASV score file of the same trials")
    parser.add_argument("--cm", help="with --sasv: CM score file of the same trials; alone: one CM score per "
                                     "utterance (Track 1); higher = bona fide")
    parser.add_argument("--keys", help="the key file of an ASVspoof 5 package score file")
    parser.add_argument("--database", help="corpus whose CM protocol gives attack and codec labels (and keys to "
                                           "package score files without --keys)")
    parser.add_argument("--split", help="the corpus split the scores are of (with --database)")
    parser.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="the corpus layout (default: auto)")
    parser.add_argument("--llr", action="store_true",
                        help="with --sasv: the SASV scores are calibrated LLRs (lr_fusion, llr_nonlinear): also the "
                             "actual a-DCF at each cost model's Bayes threshold (act_a_dcf, act_a_dcf_asvspoof5)")
    parser.add_argument("--name", help="system name in the table (default: the score file's name)")
    parser.add_argument("--json", help="write the metrics (and breakdowns) to this JSON file")
    parser.add_argument("--det", help="draw SASV / SV / SPF DET curves into this image (.png, .pdf, .svg)")
    return parser.parse_args(argv)


def _check_flags(args: argparse.Namespace) -> None:
    if not args.sasv and not args.cm:
        raise InputError("give --sasv (a SASV system, Track 2) or --cm alone (a countermeasure, Track 1)")
    if not args.sasv:
        for flag, given in (("--asv", args.asv), ("--det", args.det), ("--llr", args.llr)):
            if given:
                raise InputError(f"{flag} needs --sasv (--cm alone scores a countermeasure: Track 1)")
    if bool(args.database) != bool(args.split):
        raise InputError("--database and --split go together: the corpus and the split the scores are of")
    if args.det and Path(args.det).suffix.lower() not in DET_FORMATS:
        raise InputError(f"--det {args.det}: unknown image type; use one of {', '.join(DET_FORMATS)}")
    for flag, path in (("--json", args.json), ("--det", args.det)):
        if path and Path(path).is_dir():
            raise InputError(f"{flag} {path}: is a folder; give the file to write")
        if path:
            check_writable(path, flag)      # a read-only folder is said before the score files are read
    if args.json and args.det and Path(args.json).resolve() == Path(args.det).resolve():
        raise InputError(f"--json {args.json} and --det {args.det} name the same file: one would replace the other")
    check_inputs_kept({"--sasv": args.sasv, "--asv": args.asv, "--cm": args.cm, "--keys": args.keys},
                      files={"--json": args.json, "--det": args.det})


def _format(path: str, flag: str, track: str, allowed: Sequence[str]) -> str:
    """The file's format, if it is one `flag` takes; one line naming what it is and what was expected otherwise."""
    found = detect_score_format(path)
    if found in allowed:
        return found
    if found.endswith("_keys"):
        raise InputError(f"{flag} {path}: is a key file ({SCORE_FORMATS[found]}); give it with --keys")
    expected = "; ".join(SCORE_FORMATS[f] for f in allowed)
    what = ("one score per utterance" if track == "cm" else "one score per SASV trial")
    hint = "; a SASV system's trial-level scores go with --sasv" if found in ("sasv2022", "asvspoof5_sasv") else ""
    raise InputError(f"{flag} {path}: holds {SCORE_FORMATS[found]}, where {flag} takes {what}: {expected}{hint}")


def _database(args: argparse.Namespace) -> Database | None:
    if not args.database:
        return None
    db = open_database(args.database, args.format)
    if args.split not in db.splits:
        raise InputError(f"--split {args.split}: {db.title} has the splits {', '.join(db.splits)}")
    return db


def _entries(db: Database, split: str) -> dict:
    return {e.utt: e for e in db.cm_entries(split)}


def _keys_needed(found: str, flag: str, path: str, args: argparse.Namespace) -> None:
    if found in KEYED and not args.keys and not args.database:
        raise InputError(f"{flag} {path}: an ASVspoof 5 package score file has its labels in a key file: give it "
                         f"with --keys, or give the corpus with --database and --split")
    if found not in KEYED and args.keys:
        raise InputError(f"--keys {args.keys}: {path} holds its own labels ({SCORE_FORMATS[found]}); leave out --keys")


# --------------------------------------------------------------------------------------------------------- Track 1

def load_track1(args: argparse.Namespace, db: Database | None) -> CMScores:
    """The --cm file as CM scores per utterance, with keys and conditions (from its key file or the corpus)."""
    found = _format(args.cm, "--cm", "cm", TRACK1_FORMATS)
    _keys_needed(found, "--cm", args.cm, args)
    if found == "asvspoof5_cm":
        if args.keys:
            scores = read_asvspoof5_cm(args.cm, args.keys)
        else:
            keys = {u: PackageKey(0, e.key, None, e.system if not e.is_bonafide else BONAFIDE, e.codec, e.codec_q)
                    for u, e in _entries(db, args.split).items()}
            return read_asvspoof5_cm(args.cm, f"the {args.split} CM protocol {db.cm_protocol_path(args.split)}", keys)
    elif found == "asvspoof2019_cm":
        scores = read_cm_scores(args.cm)
    else:
        scores = read_asvspoof5_early(args.cm, "cm")
    return scores if db is None else _with_corpus_conditions(scores, db, args, args.cm)


def _with_corpus_conditions(scores: CMScores | SASVScores, db: Database, args: argparse.Namespace,
                            source: str) -> CMScores | SASVScores:
    """`scores` with the attack (where unknown), codec and codec quality of each (test) utterance from the corpus; an
    utterance not in the split's CM protocol, or labelled otherwise there (bona fide / spoof), is one line."""
    entries, protocol = _entries(db, args.split), db.cm_protocol_path(args.split)
    attack, codec, codec_q = [], [], []
    for utt, label, given in zip(scores.utt, scores.key, scores.attack, strict=True):
        entry = entries.get(utt)
        if entry is None:
            raise InputError(f"{source}: utterance '{utt}' is not in the {args.split} CM protocol {protocol}")
        if entry.key != (SPOOF if label == SPOOF else BONAFIDE):
            raise InputError(f"{source}: utterance '{utt}' is {label!r} there but {entry.key!r} in {protocol}")
        attack.append(entry.system if given == UNKNOWN and not entry.is_bonafide else given)
        codec.append(entry.codec)
        codec_q.append(entry.codec_q)
    scores.attack, scores.codec, scores.codec_q = attack, codec, codec_q
    return scores


def track1(args: argparse.Namespace, db: Database | None) -> tuple[str, dict, dict]:
    scores = load_track1(args, db)
    n_bona = sum(k == BONAFIDE for k in scores.key)
    if n_bona == 0 or n_bona == len(scores):
        raise InputError(f"{args.cm}: Track 1 metrics need bona fide and spoof utterances (got {n_bona} bona fide "
                         f"and {len(scores) - n_bona} spoof)")
    results = evaluate_cm_keys(scores.key, scores.score)
    breakdown = cm_breakdown(scores.key, scores.score, Conditions(scores.attack, scores.codec, scores.codec_q))
    return args.cm, results, breakdown


# --------------------------------------------------------------------------------------------------------- Track 2

def _trial_scores(path: str, flag: str, column: str, args: argparse.Namespace, db: Database | None
                  ) -> dict[str, SASVScores]:
    """The score columns a Track 2 file gives: {'sasv'} (SASV 2022 and early files: their one score is `column`'s)
    or those a package file fills."""
    found = _format(path, flag, "sasv", TRACK2_FORMATS)
    _keys_needed(found, flag, path, args)
    if found == "sasv2022":
        return {column: read_sasv_scores(path)}
    if found == "asvspoof5_early":
        return {column: read_asvspoof5_early(path, "sasv")}
    if args.keys:
        return read_asvspoof5_sasv(path, args.keys)
    entries = _entries(db, args.split)
    keys = {}
    for t in db.sasv_trials(args.split):
        e = entries.get(t.utt)
        keys[t.speaker, t.utt] = PackageKey(0, SPOOF if t.key == SPOOF else BONAFIDE, t.key,
                                            t.attack if t.key == SPOOF else BONAFIDE,
                                            e.codec if e else UNKNOWN, e.codec_q if e else UNKNOWN)
    return read_asvspoof5_sasv(path, f"the {args.split} trial list {db.sasv_trials_path(args.split)}", keys)


def load_track2(args: argparse.Namespace, db: Database | None) -> dict[str, SASVScores]:
    """{'sasv', and 'asv' / 'cm' where given} aligned to the --sasv file's trials."""
    columns = _trial_scores(args.sasv, "--sasv", "sasv", args, db)
    if "sasv" not in columns:
        raise InputError(f"--sasv {args.sasv}: its sasv-score column is '-'; give the file of a system's final "
                         f"score (its asv-score / cm-score columns serve as --asv / --cm)")
    sasv = columns["sasv"]
    for flag, name in (("--asv", "asv"), ("--cm", "cm")):
        path = getattr(args, name)
        if not path:
            continue
        if name in columns:
            raise InputError(f"{flag} {path}: the {name} scores are already in the {name}-score column of --sasv "
                             f"{args.sasv}; give them once")
        other = _trial_scores(path, flag, name, args, db)
        if name not in other:
            raise InputError(f"{flag} {path}: its {name}-score column is '-'")
        columns[name] = align_scores(sasv, other[name], (args.sasv, path))
    if db is not None:
        _with_corpus_conditions(sasv, db, args, args.sasv)
    return columns


def track2(args: argparse.Namespace, db: Database | None) -> tuple[str, dict, dict]:
    columns = load_track2(args, db)
    sasv, asv, cm = columns["sasv"], columns.get("asv"), columns.get("cm")
    asv_scores, cm_scores = (None if c is None else c.score for c in (asv, cm))
    results = evaluate_trials(sasv.key, sasv.score, asv_scores, cm_scores, llr=args.llr)
    if not results:
        raise InputError(f"{args.sasv}: no metric can be computed: every one needs target trials and at least one "
                         f"kind of negative (nontarget or spoof)")
    breakdown = sasv_breakdown(sasv.key, sasv.score, Conditions(sasv.attack, sasv.codec, sasv.codec_q),
                               asv_scores, cm_scores)
    if args.det:
        from metrics.det import plot_det
        systems = {f"SASV: {Path(args.sasv).name}": (sasv.score, sasv.key)}
        for label, scores, path in (("ASV", asv, args.asv), ("CM", cm, args.cm)):
            if scores is not None:
                systems[f"{label}: {Path(path or args.sasv).name}"] = (scores.score, scores.key)
        plot_det(systems, args.det, title=f"DET curves ({len(sasv)} trials)")
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
    return args.sasv, results, breakdown


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _check_flags(args)
    db = _database(args)
    track = "sasv" if args.sasv else "cm"
    source, results, breakdown = (track2 if track == "sasv" else track1)(args, db)
    payload = results_entry(results, breakdown)
    if args.json:
        write_json(args.json, json_ready(payload))
    name = args.name or Path(source).name
    print(format_table({name: results}) if track == "sasv" else format_table({name: results}, CM_COLUMNS, digits=5))
    if "breakdown" in payload:
        print()
        print(format_breakdown(breakdown, track))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
