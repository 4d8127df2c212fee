"""Trial-level score files in the community formats: the one home of every score-file format.

* SASV 2022: `SPK UTT ATTACK KEY SCORE`, ATTACK `bonafide` or an attack id (A07...), KEY target|nontarget|spoof.
* ASVspoof 2019 CM: `UTT ATTACK KEY SCORE`, KEY bonafide|spoof; a bona fide ATTACK is written `-` in the
  official files and `bonafide` in some tools: both are read (and kept as `bonafide`).
* ASVspoof 5 evaluation package (asvspoof-challenge/asvspoof5, evaluation-package/README.md and util.py, commit
  fe23d30): tab-separated, one header line, scores and keys in separate files joined on the ids:
  - Track 1 (CM): scores `filename cm-score`, keys `filename cm-label` (bonafide|spoof);
  - Track 2 (SASV): scores `spk filename cm-score asv-score sasv-score`, `-` in a column the system does not give
    (the package's form of an ASV-only score file, its `--asv_org`, has `-` for cm-score and sasv-score), keys
    `spk filename cm-label asv-label` (asv-label target|nontarget|spoof).
  The package renames the headers `tar_spk_anon` -> spk and `trial_anon` -> filename, and so does this module. Key
  files may carry more columns (the package ignores them): the ones written here add this toolkit's `attack`,
  `codec` and `codec_q` (`-` where none), which evaluate.py turns into breakdowns. Columns are read split on any
  whitespace (ids hold none), written with tabs.
* The package's first release (before its CodaLab format, June 2024) read `SPK UTT SCORE TRIAL_TYPE` (CM:
  TRIAL_TYPE bonafide|spoof, SASV: target|nontarget|spoof): read here as `asvspoof5_early`; its ASV file
  `CM_LABEL SASV_LABEL SCORE` names no trials, so it cannot be paired with other scores and is refused.

* CSV with a header naming its columns (comma-separated, quoted fields allowed): the trial (`spk`, `utt`; aliases
  in CSV_COLUMNS), one or more score columns (`asv_score`, `cm_score`, `sasv_score`, or a single `score`), and
  optionally the labels (`key`: target|nontarget|spoof, or bonafide|spoof in a CSV of one CM score per utterance,
  which has no `spk` column; `attack`). A CSV without ids (the organisers' fusion tool's `asv_score,cm_score,
  sasv_label`) names no trials and is refused: scores are matched by trial, never by line order.

`detect_score_format` tells these apart from a file's first line; `read_scores` reads any of them (a file without
labels: the package score files without their key file, a CSV without `key`, comes back with every key and
attack UNKNOWN); `align_scores` matches two files' trials by (speaker, utterance) and merges their labels, and
`cm_trial_scores` gives per-utterance CM scores to the trials that test those utterances.

Reading is strict, since a silently skipped or duplicated trial changes every metric: a bad line is an
error naming the file and line. Writing is atomic and uses the shortest exact float repr, so a
write/read round trip gives the same scores bit for bit.
"""
from __future__ import annotations

import csv
import itertools
import math
import os
from dataclasses import dataclass
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from common.errors import InputError
from common.io import read_text, text_lines, write_lines
from data.trial_kinds import CM_KEYS, SASV_KEYS, SPOOF

BONAFIDE = "bonafide"


class ScoreFileError(InputError):
    """A score file that is missing, malformed, or does not match the file it is compared with."""


@dataclass(eq=False)  # numpy columns make field-wise == ambiguous
class SASVScores:
    """One score per SASV trial (enrolment speaker SPK, test utterance UTT), with the trial's labels and, where
    known, the codec condition and quality of its test utterance (None: unknown)."""
    spk: list[str]
    utt: list[str]
    attack: list[str]
    key: list[str]
    score: np.ndarray
    codec: list[str] | None = None
    codec_q: list[str] | None = None

    def __post_init__(self) -> None:
        self.score = np.asarray(self.score, dtype=np.float64)
        sizes = {len(self.spk), len(self.utt), len(self.attack), len(self.key), self.score.size,
                 *(len(c) for c in (self.codec, self.codec_q) if c is not None)}
        if len(sizes) != 1:
            raise ValueError(f"SASVScores: columns of different lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.utt)

    def trials(self) -> list[tuple[str, str]]:
        return list(zip(self.spk, self.utt, strict=True))


@dataclass(eq=False)  # numpy columns make field-wise == ambiguous
class CMScores:
    """One countermeasure score per utterance, with its attack id and bona fide / spoof key and, where known, its
    codec condition and quality (None: unknown)."""
    utt: list[str]
    attack: list[str]
    key: list[str]
    score: np.ndarray
    codec: list[str] | None = None
    codec_q: list[str] | None = None

    def __post_init__(self) -> None:
        self.score = np.asarray(self.score, dtype=np.float64)
        sizes = {len(self.utt), len(self.attack), len(self.key), self.score.size,
                 *(len(c) for c in (self.codec, self.codec_q) if c is not None)}
        if len(sizes) != 1:
            raise ValueError(f"CMScores: columns of different lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.utt)


def _lines(path: str | os.PathLike, columns: int, layout: str) -> Iterator[tuple[int, list[str]]]:
    """Yields (line number, fields) of every non-blank line, checking the column count."""
    try:      # streamed: a score file of 835k lines is never held whole, as text or as a list of lines
        for number, line in text_lines(path, "score file"):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != columns:
                raise ScoreFileError(f"{path}:{number}: expected {columns} columns '{layout}', got {len(fields)}")
            yield number, fields
    except ScoreFileError:
        raise
    except InputError as e:
        raise ScoreFileError(str(e)) from None


def _score(text: str, path: str | os.PathLike, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScoreFileError(f"{path}:{number}: score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ScoreFileError(f"{path}:{number}: score {text!r} is not a finite number")
    return value


def _scores(texts: list[str], lines: list[int], path: str | os.PathLike) -> np.ndarray:
    """A score column parsed at once (a million lines in a fraction of a second); the first bad one is named by
    its line as `_score` names it."""
    try:
        values = np.asarray(texts, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        for text, number in zip(texts, lines, strict=True):
            _score(text, path, number)
    return values


def _check_key(key: str, valid: Sequence[str], path: str | os.PathLike, number: int) -> None:
    if key not in valid:
        raise ScoreFileError(f"{path}:{number}: unknown key {key!r}; expected one of {', '.join(valid)}")


def _check_attack(attack: str, is_bonafide: bool, key: str, path: str | os.PathLike, number: int) -> None:
    if is_bonafide != (attack == BONAFIDE):
        want = "bonafide" if is_bonafide else "an attack id"
        raise ScoreFileError(f"{path}:{number}: key {key!r} needs ATTACK {want}, got {attack!r}")


def read_sasv_scores(path: str | os.PathLike) -> SASVScores:
    """Reads a SASV 2022 score file; malformed lines, unknown keys and duplicated trials are errors."""
    spk, utt, attack, key, score = [], [], [], [], []
    first_seen: dict[tuple[str, str], int] = {}
    # one str object per distinct speaker, attack and key, not one per line: at 835k trials those repeats held ~150 MB
    labels: dict[str, str] = {}
    for number, (s, u, a, k, value) in _lines(path, 5, "SPK UTT ATTACK KEY SCORE"):
        _check_key(k, SASV_KEYS, path, number)
        _check_attack(a, k != "spoof", k, path, number)
        score.append(_score(value, path, number))
        if (s, u) in first_seen:
            raise ScoreFileError(f"{path}:{number}: trial '{s} {u}' listed twice (first on line {first_seen[s, u]})")
        first_seen[s, u] = number
        spk.append(labels.setdefault(s, s))
        utt.append(u)
        attack.append(labels.setdefault(a, a))
        key.append(labels.setdefault(k, k))
    if not utt:
        raise ScoreFileError(f"{path}: no trials in score file")
    return SASVScores(spk, utt, attack, key, np.asarray(score))


def score_texts(scores: np.ndarray) -> list[str]:
    """Each score as every writer here writes it: its shortest exact repr, which reads back as the same float64.
    Formatting is most of a writer's time (~0.5 us a score): a run writing one score column into several files (a
    fusion run's ASV and CM scores beside each rule's) formats it once and hands the texts to each writer."""
    return list(map(repr, np.asarray(scores, dtype=np.float64).tolist()))    # tolist(): Python floats, 3x faster


def write_sasv_scores(path: str | os.PathLike, scores: SASVScores, texts: Sequence[str] | None = None) -> None:
    """Writes `SPK UTT ATTACK KEY SCORE` lines atomically (re-running overwrites). `texts`: the scores already
    formatted by `score_texts`."""
    texts = score_texts(scores.score) if texts is None else texts
    if len(texts) != len(scores):
        raise ValueError(f"write_sasv_scores: {len(texts)} score texts for {len(scores)} trials")
    write_lines(path, (f"{s} {u} {a} {k} {t}" for s, u, a, k, t in
                       zip(scores.spk, scores.utt, scores.attack, scores.key, texts, strict=True)))


def read_cm_scores(path: str | os.PathLike) -> CMScores:
    """Reads an ASVspoof 2019 CM score file (`-` or `bonafide` as the bona fide ATTACK)."""
    utt, attack, key, score = [], [], [], []
    first_seen: dict[str, int] = {}
    labels: dict[str, str] = {}      # one object per distinct attack and key (as read_sasv_scores)
    for number, (u, a, k, value) in _lines(path, 4, "UTT ATTACK KEY SCORE"):
        _check_key(k, CM_KEYS, path, number)
        a = BONAFIDE if a == "-" else a
        _check_attack(a, k == BONAFIDE, k, path, number)
        score.append(_score(value, path, number))
        if u in first_seen:
            raise ScoreFileError(f"{path}:{number}: utterance '{u}' listed twice (first on line {first_seen[u]})")
        first_seen[u] = number
        utt.append(u)
        attack.append(labels.setdefault(a, a))
        key.append(labels.setdefault(k, k))
    if not utt:
        raise ScoreFileError(f"{path}: no trials in score file")
    return CMScores(utt, attack, key, np.asarray(score))


def write_cm_scores(path: str | os.PathLike, scores: CMScores, bonafide_attack: str = "-") -> None:
    """Writes `UTT ATTACK KEY SCORE` lines atomically; bona fide ATTACK as `-` (ASVspoof 2019) by default."""
    write_lines(path, [f"{u} {bonafide_attack if a == BONAFIDE else a} {k} {float(v)!r}" for u, a, k, v in
                       zip(scores.utt, scores.attack, scores.key, scores.score, strict=True)])


def _agree(mine: str, theirs: str) -> bool:
    """Two labels of one trial agree when equal or when one of them is UNKNOWN (a file without that label)."""
    return mine == theirs or mine == UNKNOWN or theirs == UNKNOWN


def align_scores(reference: SASVScores, other: SASVScores,
                 names: tuple[str, str] = ("reference", "other")) -> SASVScores:
    """`other`'s scores in `reference`'s trial order, with the labels of both. Trials are matched by (speaker,
    utterance), never by line order; both must hold the same trials (one line otherwise: the counts and the first
    trial each side lacks), and a trial's key and attack must agree where both files give them. UNKNOWN (a file
    without labels, the early package form's spoof attack) agrees with anything, and the known label is kept."""
    index = {trial: i for i, trial in enumerate(other.trials())}
    ref_trials = reference.trials()
    only_ref = next((t for t in ref_trials if t not in index), None)
    if only_ref is not None or len(other) != len(reference):
        mine = set(ref_trials)
        only_other = next((t for t in other.trials() if t not in mine), None)
        sides = [f"'{' '.join(t)}' is in {a} but not in {b}" for t, a, b in
                 ((only_ref, names[0], names[1]), (only_other, names[1], names[0])) if t is not None]
        raise ScoreFileError(f"{names[0]} and {names[1]} disagree on trials ({len(reference)} vs {len(other)}): "
                             + ("; ".join(sides) or "one of them lists a trial twice"))
    order = np.fromiter((index[t] for t in ref_trials), dtype=np.int64, count=len(reference))
    keys, attacks = list(reference.key), list(reference.attack)
    for i, j in enumerate(order.tolist()):
        key, attack, their_key, their_attack = keys[i], attacks[i], other.key[j], other.attack[j]
        if key == their_key and attack == their_attack:
            continue
        if not (_agree(key, their_key) and _agree(attack, their_attack)):
            raise ScoreFileError(
                f"trial '{reference.spk[i]} {reference.utt[i]}' is '{attack} {key}' in {names[0]} but "
                f"'{their_attack} {their_key}' in {names[1]}")
        keys[i] = their_key if key == UNKNOWN else key
        attacks[i] = their_attack if attack == UNKNOWN else attack
    codec, codec_q = reference.codec, reference.codec_q
    if codec is None and other.codec is not None:
        codec, codec_q = [other.codec[j] for j in order], [other.codec_q[j] for j in order]
    return SASVScores(list(reference.spk), list(reference.utt), attacks, keys, other.score[order], codec, codec_q)


def cm_trial_scores(cm: CMScores, trials: SASVScores, names: tuple[str, str] = ("trials", "CM scores")
                    ) -> SASVScores:
    """The CM score of each trial's test utterance, in `trials`' order with its labels: CM scores are per utterance
    (ASVspoof 2019 CM files, package Track 1 files), and a trial's CM score is its test utterance's. Every tested
    utterance needs a score (one line otherwise: the counts and the first trial without one); utterances no trial
    tests are ignored. The CM file's bona fide / spoof label must agree with the trial's key, and its attack with the
    trial's where both name one (an UNKNOWN trial attack takes the CM file's)."""
    index = {u: i for i, u in enumerate(cm.utt)}
    rows = [index.get(u, -1) for u in trials.utt]
    lacking = rows.count(-1)
    if lacking:
        n = rows.index(-1)
        raise ScoreFileError(f"{names[0]} and {names[1]} disagree on trials: {lacking} of the {len(trials)} trials "
                             f"of {names[0]} test an utterance with no score among the {len(cm)} of {names[1]}, "
                             f"the first '{trials.spk[n]} {trials.utt[n]}'")
    attacks = list(trials.attack)
    for n, i in enumerate(rows):
        key, label, attack, their_attack = trials.key[n], cm.key[i], attacks[n], cm.attack[i]
        if label == UNKNOWN or key == UNKNOWN:     # nothing to check against
            continue
        if (key == SPOOF) != (label == SPOOF) or (key == SPOOF and not _agree(attack, their_attack)):
            raise ScoreFileError(f"trial '{trials.spk[n]} {trials.utt[n]}' is '{attack} {key}' in {names[0]} but "
                                 f"its test utterance is '{their_attack} {label}' in {names[1]}")
        if attack == UNKNOWN:
            attacks[n] = their_attack
    order = np.asarray(rows, dtype=np.int64)
    codec, codec_q = trials.codec, trials.codec_q
    if codec is None and cm.codec is not None:
        codec, codec_q = [cm.codec[i] for i in rows], [cm.codec_q[i] for i in rows]
    return SASVScores(list(trials.spk), list(trials.utt), attacks, list(trials.key), cm.score[order], codec, codec_q)


# ------------------------------------------------------------------------------ the ASVspoof 5 evaluation package

NO_SCORE = "-"        # a score column the system does not give (package SASV files)
UNKNOWN = "-"         # no attack / codec / quality label
AS5_CM_SCORES = ("filename", "cm-score")
AS5_CM_KEYS = ("filename", "cm-label")
AS5_SASV_SCORES = ("spk", "filename", "cm-score", "asv-score", "sasv-score")
AS5_SASV_KEYS = ("spk", "filename", "cm-label", "asv-label")
CONDITION_COLUMNS = ("attack", "codec", "codec_q")      # this toolkit's key-file columns (the package ignores them)
SCORE_COLUMNS = {"cm": "cm-score", "asv": "asv-score", "sasv": "sasv-score"}
_ALIASES = {"tar_spk_anon": "spk", "trial_anon": "filename"}     # as the package's util.load_tsv renames them

# What each format looks like, for the message about a file that is none of them.
SCORE_FORMATS = {
    "sasv2022": "SASV 2022 'SPK UTT ATTACK KEY SCORE'",
    "asvspoof2019_cm": "ASVspoof 2019 CM 'UTT ATTACK KEY SCORE'",
    "asvspoof5_cm": "ASVspoof 5 package Track 1 scores with the header 'filename cm-score'",
    "asvspoof5_sasv": "ASVspoof 5 package Track 2 scores with the header 'spk filename cm-score asv-score sasv-score'",
    "asvspoof5_cm_keys": "ASVspoof 5 package Track 1 keys with the header 'filename cm-label ...'",
    "asvspoof5_sasv_keys": "ASVspoof 5 package Track 2 keys with the header 'spk filename cm-label asv-label ...'",
    "asvspoof5_early": "the ASVspoof 5 package's first form 'SPK UTT SCORE TRIAL_TYPE'",
    "csv": "CSV with a header naming its columns 'spk,utt,score[,key][,attack]' (or asv_score / cm_score columns; "
           "without spk: one CM score per utterance)",
}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(path: str | os.PathLike, what: str) -> tuple[str, list[str]]:
    try:
        for _, line in text_lines(path, what):
            if line.split():
                return line.rstrip("\r\n"), [_ALIASES.get(f, f) for f in line.split()]
    except InputError as e:
        raise ScoreFileError(str(e)) from None
    raise ScoreFileError(f"{path}: no trials in {what}")


def detect_score_format(path: str | os.PathLike) -> str:
    """Which format of SCORE_FORMATS a score or key file is in, from its first non-blank line; one line otherwise
    (showing that line and what was expected)."""
    line, fields = _first_line(path, "score file")
    if tuple(fields) == AS5_CM_SCORES:
        return "asvspoof5_cm"
    if tuple(fields) == AS5_SASV_SCORES:
        return "asvspoof5_sasv"
    if tuple(fields[:2]) == AS5_CM_KEYS:
        return "asvspoof5_cm_keys"
    if tuple(fields[:4]) == AS5_SASV_KEYS:
        return "asvspoof5_sasv_keys"
    if len(fields) == 5 and fields[3] in SASV_KEYS:
        return "sasv2022"
    if len(fields) == 4 and fields[2] in CM_KEYS:
        return "asvspoof2019_cm"
    if len(fields) == 4 and fields[3] in (*CM_KEYS, *SASV_KEYS) and _is_number(fields[2]):
        return "asvspoof5_early"
    if len(fields) == 3 and fields[1] in SASV_KEYS and _is_number(fields[2]):
        raise ScoreFileError(f"{path}: the ASVspoof 5 package's first ASV score form 'CM_LABEL SASV_LABEL SCORE' names "
                             f"no trials, so its scores cannot be paired with the CM and SASV scores of the same "
                             f"trials; write them as a SASV 2022 file or in the asv-score column of a package file")
    if "," in line and any(_csv_name(f) for f in next(csv.reader([line]))):     # a header naming a known column
        return "csv"
    raise ScoreFileError(f"{path}: unrecognised score file: its first line is {line!r}; expected one of: "
                         + "; ".join(SCORE_FORMATS.values()))


def _table(path: str | os.PathLike, what: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, (line number, fields) of each further non-blank line, checked to have the header's width)."""
    header = _first_line(path, what)[1]

    def rows() -> Iterator[tuple[int, list[str]]]:
        seen_header = False
        for number, line in text_lines(path, what):
            fields = line.split()
            if not fields:
                continue
            if not seen_header:
                seen_header = True
                continue
            if len(fields) != len(header):
                raise ScoreFileError(f"{path}:{number}: expected {len(header)} columns '{' '.join(header)}', "
                                     f"got {len(fields)}")
            yield number, fields
    return header, rows()


def _require_header(path: str | os.PathLike, header: list[str], needed: Sequence[str], what: str,
                    exact: bool) -> None:
    if (list(needed) != header) if exact else (list(needed) != header[:len(needed)]):
        raise ScoreFileError(f"{path}: not an ASVspoof 5 package {what}: its header is '{' '.join(header)}', "
                             f"expected '{' '.join(needed)}{'' if exact else ' ...'}'")


class PackageKey(NamedTuple):
    """The labels of one trial as a package key file gives them (`line`: its line there; 0 when the labels come from
    elsewhere, e.g. a corpus protocol). Track 1 keys have no `asv_label`. A NamedTuple: a key file has up to 835k
    lines."""
    line: int
    cm_label: str
    asv_label: str | None
    attack: str
    codec: str
    codec_q: str


def _read_keys(path: str | os.PathLike, track: str) -> tuple[dict, bool]:
    """{id: PackageKey} of a Track 1 ('cm': id = filename) or Track 2 ('sasv': id = (spk, filename)) key file, and
    whether it carries codec labels."""
    header, rows = _table(path, "key file")
    needed = AS5_CM_KEYS if track == "cm" else AS5_SASV_KEYS
    _require_header(path, header, needed, f"Track {1 if track == 'cm' else 2} key file", exact=False)
    at = {name: header.index(name) for name in CONDITION_COLUMNS if name in header}
    attack_at, codec_at, quality_at = (at.get(name) for name in CONDITION_COLUMNS)
    cm_at, sasv = header.index("cm-label"), track == "sasv"
    keys: dict = {}
    for number, f in rows:
        cm_label = f[cm_at]
        if cm_label not in CM_KEYS:
            _check_key(cm_label, CM_KEYS, path, number)
        is_spoof = cm_label == SPOOF
        asv_label = f[3] if sasv else None
        if sasv and (asv_label not in SASV_KEYS or is_spoof != (asv_label == SPOOF)):
            _check_key(asv_label, SASV_KEYS, path, number)
            raise ScoreFileError(f"{path}:{number}: cm-label {cm_label!r} and asv-label {asv_label!r} disagree")
        trial = (f[0], f[1]) if sasv else f[0]
        if trial in keys:
            shown = " ".join(trial) if sasv else trial
            raise ScoreFileError(f"{path}:{number}: '{shown}' listed twice (first on line {keys[trial].line})")
        attack = (f[attack_at] if attack_at is not None else UNKNOWN) if is_spoof else BONAFIDE
        keys[trial] = PackageKey(number, cm_label, asv_label, attack,
                                 f[codec_at] if codec_at is not None else UNKNOWN,
                                 f[quality_at] if quality_at is not None else UNKNOWN)
    if not keys:
        raise ScoreFileError(f"{path}: no trials in key file")
    return keys, "codec" in at


def read_asvspoof5_keys(path: str | os.PathLike, track: str) -> dict:
    """The labels of a package key file: {filename: PackageKey} of a Track 1 file (`track` 'cm'), {(spk, filename):
    PackageKey} of a Track 2 file ('sasv'), in file order."""
    return _read_keys(path, track)[0]


UNLABELLED = PackageKey(0, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)   # a trial of a score file without key file


def _any_codec(keys: Mapping) -> bool:
    return any(k.codec != UNKNOWN or k.codec_q != UNKNOWN for k in keys.values())


def _keys_name(keys: Mapping, keys_path: str | os.PathLike) -> str:
    """How messages name where the labels come from: a key file, or what `keys_path` says (labels from elsewhere)."""
    from_file = any(k.line for k in keys.values())
    return f"the key file {keys_path}" if from_file else str(keys_path)


def _joined(scores_path, keys_path, keys: dict, scored: list, lines: list[int], show) -> list[PackageKey]:
    """The key of each scored trial, in score-file order; the two files must list the same trials."""
    out = []
    for trial, number in zip(scored, lines, strict=True):
        key = keys.get(trial)
        if key is None:
            raise ScoreFileError(f"{scores_path}:{number}: '{show(trial)}' is not in {_keys_name(keys, keys_path)}")
        out.append(key)
    if len(keys) != len(scored):
        mine = set(scored)
        missing = next(t for t in keys if t not in mine)
        where = f"{keys_path}:{keys[missing].line}" if keys[missing].line else _keys_name(keys, keys_path)
        raise ScoreFileError(f"{where}: '{show(missing)}' has no score in {scores_path} "
                             f"({len(scored)} scored, {len(keys)} listed)")
    return out


def read_asvspoof5_cm(scores_path: str | os.PathLike, keys_path: str | os.PathLike | None = None,
                      keys: Mapping[str, PackageKey] | None = None) -> CMScores:
    """A package Track 1 score file with its key file (the same utterances, any order), in score-file order.
    `keys`: the labels taken from elsewhere ({utt: PackageKey}; `keys_path` then only names them in messages).
    Neither: the scores without labels (every key and attack UNKNOWN)."""
    header, rows = _table(scores_path, "score file")
    _require_header(scores_path, header, AS5_CM_SCORES, "Track 1 score file", exact=True)
    unlabelled = keys is None and keys_path is None
    keys, has_codec = (({}, False) if unlabelled else _read_keys(keys_path, "cm") if keys is None
                       else (keys, _any_codec(keys)))
    utt, texts, lines, first_seen = [], [], [], {}
    for number, (u, value) in rows:
        if u in first_seen:
            raise ScoreFileError(f"{scores_path}:{number}: utterance '{u}' listed twice "
                                 f"(first on line {first_seen[u]})")
        first_seen[u] = number
        utt.append(u)
        texts.append(value)
        lines.append(number)
    if not utt:
        raise ScoreFileError(f"{scores_path}: no trials in score file")
    score = _scores(texts, lines, scores_path)
    joined = [UNLABELLED] * len(utt) if unlabelled else _joined(scores_path, keys_path, keys, utt, lines, str)
    return CMScores(utt, [k.attack for k in joined], [k.cm_label for k in joined], np.asarray(score),
                    [k.codec for k in joined] if has_codec else None,
                    [k.codec_q for k in joined] if has_codec else None)


def read_asvspoof5_sasv(scores_path: str | os.PathLike, keys_path: str | os.PathLike | None = None,
                        keys: Mapping[tuple[str, str], PackageKey] | None = None) -> dict[str, SASVScores]:
    """A package Track 2 score file with its key file: {'sasv' | 'asv' | 'cm': scores} for each column the file fills
    (a column is all numbers or all `-`), in score-file order. `keys`: as for `read_asvspoof5_cm`, keyed by
    (spk, filename); neither: the scores without labels."""
    header, rows = _table(scores_path, "score file")
    _require_header(scores_path, header, AS5_SASV_SCORES, "Track 2 score file", exact=True)
    unlabelled = keys is None and keys_path is None
    keys, has_codec = (({}, False) if unlabelled else _read_keys(keys_path, "sasv") if keys is None
                       else (keys, _any_codec(keys)))
    trials, lines, first_seen = [], [], {}
    texts: dict[str, list[str]] = {name: [] for name in SCORE_COLUMNS}
    for number, (spk, utt, cm, asv, sasv) in rows:
        if (spk, utt) in first_seen:
            raise ScoreFileError(f"{scores_path}:{number}: trial '{spk} {utt}' listed twice "
                                 f"(first on line {first_seen[spk, utt]})")
        first_seen[spk, utt] = number
        trials.append((spk, utt))
        lines.append(number)
        texts["cm"].append(cm)
        texts["asv"].append(asv)
        texts["sasv"].append(sasv)
    if not trials:
        raise ScoreFileError(f"{scores_path}: no trials in score file")
    columns: dict[str, np.ndarray] = {}
    for name, column in texts.items():
        empty = [text == NO_SCORE for text in column]
        if all(empty):
            continue
        if any(empty):
            i, j = empty.index(not empty[0]), 0
            raise ScoreFileError(f"{scores_path}:{lines[i]}: {SCORE_COLUMNS[name]} is {column[i]!r} here but "
                                 f"{column[j]!r} on line {lines[j]}; a column holds a score on every line or "
                                 f"{NO_SCORE!r} on every line")
        columns[name] = _scores(column, lines, scores_path)
    if not columns:
        raise ScoreFileError(f"{scores_path}: every score column is {NO_SCORE!r}")
    joined = [UNLABELLED] * len(trials) if unlabelled else _joined(scores_path, keys_path, keys, trials, lines,
                                                                    " ".join)
    spk, utt = [t[0] for t in trials], [t[1] for t in trials]
    attack, key = [k.attack for k in joined], [k.asv_label for k in joined]
    codec = [k.codec for k in joined] if has_codec else None
    codec_q = [k.codec_q for k in joined] if has_codec else None
    return {name: SASVScores(spk, utt, attack, key, values, codec, codec_q)       # the label lists are shared
            for name, values in columns.items()}


def read_asvspoof5_early(path: str | os.PathLike, track: str) -> CMScores | SASVScores:
    """The package's first form `SPK UTT SCORE TRIAL_TYPE`: CM scores (track 'cm', TRIAL_TYPE bonafide|spoof) or
    SASV scores ('sasv', target|nontarget|spoof). It names no attacks: spoofs get `-`."""
    valid = CM_KEYS if track == "cm" else SASV_KEYS
    spk, utt, attack, key, score, first_seen = [], [], [], [], [], {}
    for number, (s, u, value, k) in _lines(path, 4, "SPK UTT SCORE TRIAL_TYPE"):
        _check_key(k, valid, path, number)
        trial = u if track == "cm" else (s, u)
        if trial in first_seen:
            shown = u if track == "cm" else f"{s} {u}"
            raise ScoreFileError(f"{path}:{number}: '{shown}' listed twice (first on line {first_seen[trial]})")
        first_seen[trial] = number
        score.append(_score(value, path, number))
        spk.append(s)
        utt.append(u)
        attack.append(UNKNOWN if k == SPOOF else BONAFIDE)
        key.append(k)
    if not utt:
        raise ScoreFileError(f"{path}: no trials in score file")
    if track == "cm":
        return CMScores(utt, attack, key, np.asarray(score))
    return SASVScores(spk, utt, attack, key, np.asarray(score))


def _conditions(n: int, codec: list[str] | None, codec_q: list[str] | None) -> tuple[list[str], list[str]]:
    return codec if codec is not None else [UNKNOWN] * n, codec_q if codec_q is not None else [UNKNOWN] * n


def write_asvspoof5_cm(scores_path: str | os.PathLike, keys_path: str | os.PathLike, scores: CMScores) -> None:
    """The package's Track 1 score file and its key file (with the attack, codec and codec_q columns), atomically:
    `python evaluation.py --m t1 --cm SCORES --cm_keys KEYS` in the package reads them as they are."""
    codec, codec_q = _conditions(len(scores), scores.codec, scores.codec_q)
    write_lines(scores_path, ["\t".join(AS5_CM_SCORES)] + [f"{u}\t{float(v)!r}" for u, v in
                                                           zip(scores.utt, scores.score, strict=True)])
    write_lines(keys_path, ["\t".join(AS5_CM_KEYS + CONDITION_COLUMNS)] + [
        "\t".join((u, k, BONAFIDE if k == BONAFIDE else a, c, q)) for u, k, a, c, q in
        zip(scores.utt, scores.key, scores.attack, codec, codec_q, strict=True)])


def write_asvspoof5_sasv(scores_path: str | os.PathLike, keys_path: str | os.PathLike | None,
                         columns: Mapping[str, SASVScores], texts: Mapping[str, Sequence[str]] | None = None) -> None:
    """The package's Track 2 score file with the columns given ({'sasv' | 'asv' | 'cm': scores of the same trials in
    the same order}; `-` in the others) and its key file (with attack, codec, codec_q), atomically; no key file when
    `keys_path` is None (trials without labels). `texts`: {column: its scores already formatted by `score_texts`}
    for some of the columns."""
    unknown = set(columns) - set(SCORE_COLUMNS)
    if unknown or not columns:
        raise ValueError(f"write_asvspoof5_sasv: columns {sorted(columns)}; valid: {', '.join(SCORE_COLUMNS)}")
    first = next(iter(columns.values()))
    if any(c.utt != first.utt or c.spk != first.spk for c in columns.values()):
        raise ValueError("write_asvspoof5_sasv: the score columns hold different trials")
    texts = texts or {}
    cells = [(texts[name] if name in texts else score_texts(columns[name].score)) if name in columns
             else itertools.repeat(NO_SCORE, len(first)) for name in SCORE_COLUMNS]
    if any(len(texts[name]) != len(first) for name in texts):
        raise ValueError(f"write_asvspoof5_sasv: score texts of another length than the {len(first)} trials")
    write_lines(scores_path, itertools.chain(["\t".join(AS5_SASV_SCORES)], (
        "\t".join((s, u, *values)) for s, u, *values in zip(first.spk, first.utt, *cells, strict=True))))
    if keys_path is None:
        return
    codec, codec_q = _conditions(len(first), first.codec, first.codec_q)
    write_lines(keys_path, itertools.chain(["\t".join(AS5_SASV_KEYS + CONDITION_COLUMNS)], (
        "\t".join((s, u, SPOOF if k == SPOOF else BONAFIDE, k, a, c, q)) for s, u, a, k, c, q in
        zip(first.spk, first.utt, first.attack, first.key, codec, codec_q, strict=True))))


# ------------------------------------------------------------------------------------------- CSV with named columns

# Canonical column -> the header spellings read as it (case-insensitive; '-' and ' ' read as '_').
CSV_COLUMNS = {
    "spk": ("spk", "speaker", "enrolment", "enrollment", "enrol", "enroll", "model", "tar_spk_anon"),
    "utt": ("utt", "utterance", "filename", "file", "test", "trial_anon"),
    "key": ("key", "label", "trial_type", "asv_label", "cm_label"),
    "attack": ("attack",),
    "score": ("score",),
    "asv": ("asv_score",),
    "cm": ("cm_score",),
    "sasv": ("sasv_score",),
}
_CSV_NAMES = {spelling: name for name, spellings in CSV_COLUMNS.items() for spelling in spellings}


def _csv_name(text: str) -> str | None:
    """The canonical CSV column a header cell names, or None."""
    return _CSV_NAMES.get(text.strip().lower().replace("-", "_").replace(" ", "_"))


def _csv_header(path: str | os.PathLike, header: list[str]) -> dict[str, int]:
    """{canonical column: index}; one line for a column named twice or a CSV that names no utterances."""
    at: dict[str, int] = {}
    for i, text in enumerate(header):
        name = _csv_name(text)
        if name is None:
            continue
        if name in at:
            raise ScoreFileError(f"{path}: CSV columns '{header[at[name]]}' and '{text}' both name the {name} column")
        at[name] = i
    if "utt" not in at:
        raise ScoreFileError(f"{path}: the CSV header '{','.join(header)}' names no trials (no utterance column: "
                             f"{', '.join(CSV_COLUMNS['utt'])}); scores are matched to trials by (speaker, "
                             f"utterance), never by line order")
    return at


def read_score_csv(path: str | os.PathLike, column: str) -> SASVScores | CMScores:
    """A CSV score file: trial-level scores (SASVScores; it has a speaker column) or one CM score per utterance
    (CMScores; no speaker column). `column` ('asv' | 'cm' | 'sasv') picks `<column>_score`, else the one `score`
    column. Without a `key` column every key and attack is UNKNOWN; with one, the keys are checked as the other
    readers check them, and a spoof without an `attack` column gets UNKNOWN as its attack."""
    try:
        text = read_text(path, "score file")
    except InputError as e:
        raise ScoreFileError(str(e)) from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise ScoreFileError(f"{path}: no trials in score file")
    rows = csv.reader([line for _, line in lines])
    header = next(rows)
    at = _csv_header(path, header)
    score_at = at.get(column, at.get("score"))
    if score_at is None:
        given = [n for n in ("score", "asv", "cm", "sasv") if n in at]
        raise ScoreFileError(f"{path}: the CSV has no {column}_score or score column (its score columns: "
                             f"{', '.join(header[at[n]] for n in given) or 'none'})")
    per_utterance = "spk" not in at
    valid = CM_KEYS if per_utterance else SASV_KEYS
    spk, utt, attack, key, texts, numbers, first_seen = [], [], [], [], [], [], {}
    for (number, _), fields in zip(lines[1:], rows, strict=True):
        if len(fields) != len(header):
            raise ScoreFileError(f"{path}:{number}: expected {len(header)} CSV columns '{','.join(header)}', got "
                                 f"{len(fields)}")
        u = fields[at["utt"]].strip()
        s = "" if per_utterance else fields[at["spk"]].strip()
        trial = u if per_utterance else (s, u)
        if trial in first_seen:
            shown = u if per_utterance else f"{s} {u}"
            raise ScoreFileError(f"{path}:{number}: {'utterance' if per_utterance else 'trial'} '{shown}' listed "
                                 f"twice (first on line {first_seen[trial]})")
        first_seen[trial] = number
        if "key" in at:
            k = fields[at["key"]].strip()
            _check_key(k, valid, path, number)
            if "attack" in at:
                a = fields[at["attack"]].strip()
                a = BONAFIDE if a == "-" and k != SPOOF else a       # '-': bona fide as in ASVspoof 2019 CM files
                _check_attack(a, k != SPOOF, k, path, number)
            else:
                a = UNKNOWN if k == SPOOF else BONAFIDE
        else:
            k, a = UNKNOWN, UNKNOWN
        spk.append(s)
        utt.append(u)
        key.append(k)
        attack.append(a)
        texts.append(fields[score_at].strip())
        numbers.append(number)
    if not utt:
        raise ScoreFileError(f"{path}: no trials in score file")
    score = _scores(texts, numbers, path)
    if per_utterance:
        return CMScores(utt, attack, key, score)
    return SASVScores(spk, utt, attack, key, score)


def _early_track(path: str | os.PathLike) -> str:
    """Whether an early-form file holds CM scores ('cm': TRIAL_TYPE bonafide|spoof) or SASV ones ('sasv')."""
    for _, line in text_lines(path, "score file"):
        fields = line.split()
        if fields and fields[-1] == BONAFIDE:
            return "cm"
        if fields and fields[-1] in SASV_KEYS and fields[-1] != SPOOF:
            return "sasv"
    return "sasv"


def read_scores(path: str | os.PathLike, column: str) -> SASVScores | CMScores:
    """Any score file of SCORE_FORMATS (not a key file) as what it holds: trial-level scores (SASVScores) or one score
    per utterance (CMScores: ASVspoof 2019 CM, package Track 1, early CM form, CSV without speakers). `column`
    ('asv' | 'cm' | 'sasv') picks the score of a file with several (package Track 2, CSV). The package score files
    are read without their key files: every key and attack UNKNOWN (labels come from elsewhere, or there are none)."""
    found = detect_score_format(path)
    if found == "sasv2022":
        return read_sasv_scores(path)
    if found == "asvspoof2019_cm":
        return read_cm_scores(path)
    if found == "asvspoof5_early":
        return read_asvspoof5_early(path, _early_track(path) if column == "cm" else "sasv")
    if found == "asvspoof5_cm":
        return read_asvspoof5_cm(path)
    if found == "asvspoof5_sasv":
        columns = read_asvspoof5_sasv(path)
        if column not in columns:
            raise ScoreFileError(f"{path}: its {SCORE_COLUMNS[column]} column is '{NO_SCORE}' (it fills "
                                 f"{', '.join(SCORE_COLUMNS[c] for c in columns)})")
        return columns[column]
    if found == "csv":
        return read_score_csv(path, column)
    raise ScoreFileError(f"{path}: is a key file ({SCORE_FORMATS[found]}), not a score file")
