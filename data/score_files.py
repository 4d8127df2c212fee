"""Trial-level score files in the community formats.

* SASV 2022: `SPK UTT ATTACK KEY SCORE`, ATTACK `bonafide` or an attack id (A07...), KEY target|nontarget|spoof.
* ASVspoof 2019 CM: `UTT ATTACK KEY SCORE`, KEY bonafide|spoof; a bona fide ATTACK is written `-` in the
  official files and `bonafide` in some tools: both are read (and kept as `bonafide`).

Reading is strict, since a silently skipped or duplicated trial changes every metric: a bad line is an
error naming the file and line. Writing is atomic and uses the shortest exact float repr, so a
write/read round trip gives the same scores bit for bit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from common.errors import InputError
from common.io import read_text, write_lines
from data.trial_kinds import CM_KEYS, SASV_KEYS

BONAFIDE = "bonafide"


class ScoreFileError(InputError):
    """A score file that is missing, malformed, or does not match the file it is compared with."""


@dataclass(eq=False)  # numpy columns make field-wise == ambiguous
class SASVScores:
    """One score per SASV trial (enrolment speaker SPK, test utterance UTT), with the trial's labels."""
    spk: list[str]
    utt: list[str]
    attack: list[str]
    key: list[str]
    score: np.ndarray

    def __post_init__(self) -> None:
        self.score = np.asarray(self.score, dtype=np.float64)
        sizes = {len(self.spk), len(self.utt), len(self.attack), len(self.key), self.score.size}
        if len(sizes) != 1:
            raise ValueError(f"SASVScores: columns of different lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.utt)

    def trials(self) -> list[tuple[str, str]]:
        return list(zip(self.spk, self.utt, strict=True))


@dataclass(eq=False)  # numpy columns make field-wise == ambiguous
class CMScores:
    """One countermeasure score per utterance, with its attack id and bona fide / spoof key."""
    utt: list[str]
    attack: list[str]
    key: list[str]
    score: np.ndarray

    def __post_init__(self) -> None:
        self.score = np.asarray(self.score, dtype=np.float64)
        sizes = {len(self.utt), len(self.attack), len(self.key), self.score.size}
        if len(sizes) != 1:
            raise ValueError(f"CMScores: columns of different lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.utt)


def _lines(path: str | os.PathLike, columns: int, layout: str) -> Iterator[tuple[int, list[str]]]:
    """Yields (line number, fields) of every non-blank line, checking the column count."""
    try:
        text = read_text(path, "score file")
    except InputError as e:
        raise ScoreFileError(str(e)) from None
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns:
            raise ScoreFileError(f"{path}:{number}: expected {columns} columns '{layout}', got {len(fields)}")
        yield number, fields


def _score(text: str, path: str | os.PathLike, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScoreFileError(f"{path}:{number}: score {text!r} is not a number") from None
    if not np.isfinite(value):
        raise ScoreFileError(f"{path}:{number}: score {text!r} is not a finite number")
    return value


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
    for number, (s, u, a, k, value) in _lines(path, 5, "SPK UTT ATTACK KEY SCORE"):
        _check_key(k, SASV_KEYS, path, number)
        _check_attack(a, k != "spoof", k, path, number)
        score.append(_score(value, path, number))
        if (s, u) in first_seen:
            raise ScoreFileError(f"{path}:{number}: trial '{s} {u}' listed twice (first on line {first_seen[s, u]})")
        first_seen[s, u] = number
        spk.append(s)
        utt.append(u)
        attack.append(a)
        key.append(k)
    if not utt:
        raise ScoreFileError(f"{path}: no trials in score file")
    return SASVScores(spk, utt, attack, key, np.asarray(score))


def write_sasv_scores(path: str | os.PathLike, scores: SASVScores) -> None:
    """Writes `SPK UTT ATTACK KEY SCORE` lines atomically (re-running overwrites)."""
    write_lines(path, [f"{s} {u} {a} {k} {float(v)!r}" for s, u, a, k, v in
                       zip(scores.spk, scores.utt, scores.attack, scores.key, scores.score, strict=True)])


def read_cm_scores(path: str | os.PathLike) -> CMScores:
    """Reads an ASVspoof 2019 CM score file (`-` or `bonafide` as the bona fide ATTACK)."""
    utt, attack, key, score = [], [], [], []
    first_seen: dict[str, int] = {}
    for number, (u, a, k, value) in _lines(path, 4, "UTT ATTACK KEY SCORE"):
        _check_key(k, CM_KEYS, path, number)
        a = BONAFIDE if a == "-" else a
        _check_attack(a, k == BONAFIDE, k, path, number)
        score.append(_score(value, path, number))
        if u in first_seen:
            raise ScoreFileError(f"{path}:{number}: utterance '{u}' listed twice (first on line {first_seen[u]})")
        first_seen[u] = number
        utt.append(u)
        attack.append(a)
        key.append(k)
    if not utt:
        raise ScoreFileError(f"{path}: no trials in score file")
    return CMScores(utt, attack, key, np.asarray(score))


def write_cm_scores(path: str | os.PathLike, scores: CMScores, bonafide_attack: str = "-") -> None:
    """Writes `UTT ATTACK KEY SCORE` lines atomically; bona fide ATTACK as `-` (ASVspoof 2019) by default."""
    write_lines(path, [f"{u} {bonafide_attack if a == BONAFIDE else a} {k} {float(v)!r}" for u, a, k, v in
                       zip(scores.utt, scores.attack, scores.key, scores.score, strict=True)])


def align_scores(reference: SASVScores, other: SASVScores,
                 names: tuple[str, str] = ("reference", "other")) -> SASVScores:
    """`other` reordered to `reference`'s trial order; both must hold the same trials with the same labels."""
    index = {trial: i for i, trial in enumerate(other.trials())}
    missing = next((t for t in reference.trials() if t not in index), None)
    if missing is None and len(other) != len(reference):
        mine = set(reference.trials())
        missing_from_ref = next(t for t in other.trials() if t not in mine)
        raise ScoreFileError(f"{names[0]} and {names[1]} disagree on trials ({len(reference)} vs {len(other)}): "
                             f"'{' '.join(missing_from_ref)}' is in {names[1]} but not in {names[0]}")
    if missing is not None:
        raise ScoreFileError(f"{names[0]} and {names[1]} disagree on trials ({len(reference)} vs {len(other)}): "
                             f"'{' '.join(missing)}' is in {names[0]} but not in {names[1]}")
    order = np.fromiter((index[t] for t in reference.trials()), dtype=np.int64, count=len(reference))
    for i, j in enumerate(order):
        if (reference.key[i], reference.attack[i]) != (other.key[j], other.attack[j]):
            raise ScoreFileError(
                f"trial '{reference.spk[i]} {reference.utt[i]}' is '{reference.attack[i]} {reference.key[i]}' "
                f"in {names[0]} but '{other.attack[j]} {other.key[j]}' in {names[1]}")
    return SASVScores(list(reference.spk), list(reference.utt), list(reference.attack), list(reference.key),
                      other.score[order])
