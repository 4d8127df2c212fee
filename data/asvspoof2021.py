"""ASVspoof 2021 LA and DF evaluation sets (`data.format: asvspoof2021_la`, `asvspoof2021_df`), read from the
official audio release and the organisers' full keys (LA-keys-full.tar.gz, DF-keys-full.tar.gz):

    <database>/ASVspoof2021_{LA,DF}_eval/flac/{LA,DF}_E_*.flac
    <database>/keys/{LA,DF}/CM/trial_metadata.txt          (or ASVspoof2021_{LA,DF}_eval/keys/...)
    <database>/keys/LA/ASV/trial_metadata.txt              (LA, optional: the ASV trials behind the t-DCF)
    <database>/keys/LA/ASV/ASVTorch_Kaldi/score.txt        (LA, optional: the organisers' ASV scores of them)

Key columns, as the organisers' evaluation package (asvspoof-challenge/2021, eval-package/config.py) names them:
- LA: `SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET`, e.g. `LA_0009 LA_E_9332881 alaw ita_tx A07 spoof
  notrim eval`; a bona fide line has ATTACK `bonafide`.
- DF: `SPK UTT COMPRESSION SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR LANGUAGE`, e.g.
  `LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -` (the last four
  are `-` except for the VCC 2018/2020 sources).
- LA ASV: the LA columns, with KEY `target`, `nontarget` or `spoof`, speakers and utterances named per channel
  (`LA_0007-alaw-ita_tx LA_E_5013670-alaw-ita_tx alaw ita_tx bonafide nontarget notrim eval`).

Splits: the SUBSET column. `eval` is the evaluation subset the organisers rank and papers report; `progress` and
`hidden` (non-speech trimmed) are the other two; `all` is every trial of the key. So `splits: [eval]` scores what
the challenge scored, and the other subsets are further split names, each cached and reported on its own.

No SASV trials: the ASV key's enrolment models and test files are channel-coded copies of the 2019 LA eval speakers
and utterances (`LA_0007-alaw-ita_tx`) that the release does not ship, nor their enrolment lists; the package gives
the organisers' ASV scores instead, which is all a t-DCF needs of the ASV (`LA2021Database.asv_key_scores`).
Both layouts are CM-only (`trial_splits` empty).

Keys have 181,566 (LA) and 611,829 (DF) lines: parsed streamed into NamedTuples, the condition strings
interned, once per database object while the file is unchanged.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from common.errors import ProtocolError, line_error
from data.asvspoof import CMEntry, RepeatCheck, line_of, protocol_lines
from data.cm_only import CMOnlyDatabase, report_unknown
from data.names import check_name
from data.trial_kinds import BONAFIDE, CM_KEYS, SASV_KEYS, SPOOF

log = logging.getLogger(__name__)

SUBSETS = ("eval", "progress", "hidden")     # the SUBSET column
ALL = "all"                                   # every trial of the key
SPLITS = (*SUBSETS, ALL)
TRIMS = ("notrim", "trim")

# The condition values the organisers' README documents, in the order of their tables (LA-C1..C7, DF-C1..C9);
# a value outside them is accepted and reported (`report_unknown`).
LA_CODECS = ("none", "alaw", "pstn", "g722", "ulaw", "gsm", "opus")
LA_TRANSMISSIONS = ("ita_tx", "sin_tx", "loc_tx", "mad_tx")
DF_COMPRESSIONS = ("nocodec", "low_mp3", "high_mp3", "low_m4a", "high_m4a", "low_ogg", "high_ogg", "mp3m4a", "oggm4a")
DF_SOURCES = ("asvspoof", "vcc2018", "vcc2020")
DF_VOCODERS = ("traditional_vocoder", "waveform_concatenation", "neural_vocoder_autoregressive",
               "neural_vocoder_nonautoregressive", "unknown")
# codec value -> the condition name of the organisers' result tables
CONDITION_NAMES = {**{c: f"LA-C{i}" for i, c in enumerate(LA_CODECS, 1)},
                   **{c: f"DF-C{i}" for i, c in enumerate(DF_COMPRESSIONS, 1)}}
ASV_SCORE_FOLDERS = ("ASVTorch_Kaldi", "ASVtorch_kaldi")   # the package's spelling, and its README's


class ASVKeyLine(NamedTuple):
    """One line of keys/LA/ASV/trial_metadata.txt: an ASV trial of the organisers' ASV system."""
    speaker: str         # the enrolment model, per channel: LA_0007-alaw-ita_tx
    utt: str             # the test file, per channel: LA_E_5013670-alaw-ita_tx
    codec: str
    transmission: str
    attack: str          # 'bonafide' or the attack
    key: str             # target | nontarget | spoof
    trim: str
    subset: str


class CMKey(NamedTuple):
    """A parsed CM key: the entries in file order and the SUBSET of each."""
    entries: list[CMEntry]
    subsets: list[str]


def _bad_line(f: list[str], path, number: int) -> None:
    """Says what is wrong with the KEY, TRIM or SUBSET column (5, 6, 7) of a CM key line."""
    if f[5] not in CM_KEYS:
        raise line_error(path, number, f"unknown key {f[5]!r}; expected 'bonafide' or 'spoof'")
    if f[6] not in TRIMS:
        raise line_error(path, number, f"unknown trim {f[6]!r}; expected 'notrim' or 'trim'")
    raise line_error(path, number, f"unknown subset {f[7]!r}; expected one of {', '.join(SUBSETS)}")


def _read_cm_key(path: str | os.PathLike, columns: str, conditions: tuple[int, ...]) -> CMKey:
    """The lines of a CM key as CMEntry (system = ATTACK, '-' for bona fide; codec, codec_q and, with three
    `conditions`, vocoder = the columns they index) with each line's SUBSET, every line checked: the column count,
    an utterance id that is a name (data/names.py) and listed once, known key / trim / subset, an attack that fits
    the key. One loop with the checks inline: the DF key has 611,829 lines (docs/benchmarks.md)."""
    n_columns = len(columns.split())
    entries, subsets = [], []
    first: dict[str, int] = {}
    intern = sys.intern
    for number, f in protocol_lines(path, "key file"):
        if len(f) != n_columns:
            raise line_error(path, number, f"expected {n_columns} columns {columns!r}, got {len(f)}: {' '.join(f)!r}")
        utt, attack, key = f[1], f[4], f[5]
        check_name(utt, path, number)
        if first.setdefault(utt, number) != number:
            raise line_error(path, number, f"trial {utt} listed twice (first on line {first[utt]})")
        if key not in CM_KEYS or f[6] not in TRIMS or f[7] not in SUBSETS:
            _bad_line(f, path, number)
        if key == BONAFIDE:
            if attack not in (BONAFIDE, "-"):
                raise line_error(path, number, f"bona fide trial {utt} has attack {attack!r}, expected 'bonafide'")
            system = vocoder = "-"
        else:
            if attack in (BONAFIDE, "-"):
                raise line_error(path, number, f"spoof trial {utt} has attack {attack!r}; a spoof names its attack")
            system = intern(attack)
            vocoder = intern(f[conditions[2]]) if len(conditions) > 2 else "-"
            if vocoder in (BONAFIDE, "-") and len(conditions) > 2:
                raise line_error(path, number, f"spoof trial {utt} has vocoder {vocoder!r}; expected its type")
        entries.append(CMEntry(intern(f[0]), utt, system, intern(key), intern(f[conditions[0]]),
                               intern(f[conditions[1]]), vocoder=vocoder))
        subsets.append(intern(f[7]))
    return CMKey(entries, subsets)


def read_la_cm_key(path: str | os.PathLike) -> CMKey:
    """The LA CM key as CMEntry (system = ATTACK, codec = CODEC, codec_q = TRANSMISSION) with each line's subset."""
    key = _read_cm_key(path, "SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET", (2, 3))
    return _finish(path, key, [("codec", LA_CODECS, "codec"), ("transmission", LA_TRANSMISSIONS, "codec_q")])


def read_df_cm_key(path: str | os.PathLike) -> CMKey:
    """The DF CM key as CMEntry (system = ATTACK, codec = COMPRESSION, codec_q = SOURCE, vocoder = VOCODER, '-' for
    bona fide) with each line's subset. TASK, TEAM, GENDER_PAIR and LANGUAGE (VCC sources only) are not read."""
    key = _read_cm_key(path, "SPK UTT COMPRESSION SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR "
                             "LANGUAGE", (2, 3, 8))
    return _finish(path, key, [("compression", DF_COMPRESSIONS, "codec"), ("source", DF_SOURCES, "codec_q"),
                               ("vocoder type", DF_VOCODERS, "vocoder")])


def _finish(path, key: CMKey, conditions) -> CMKey:
    if not key.entries:
        raise ProtocolError(f"{path}: the key lists no trials")
    for what, known, field in conditions:
        report_unknown((v for e in key.entries if (v := getattr(e, field)) != "-"), known, f"{what} values", path)
    return key


def read_asv_key(path: str | os.PathLike) -> list[ASVKeyLine]:
    """The LA ASV key (8 columns, KEY target / nontarget / spoof), in file order. Its ids never become file names
    (no audio of them is shipped), so they are not held to the name rule."""
    lines = []
    seen = RepeatCheck(path, "trial")
    intern = sys.intern
    for number, f in protocol_lines(path, "ASV key file"):
        if len(f) != 8:
            raise line_error(path, number, f"expected 8 columns 'SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET', "
                                           f"got {len(f)}: {' '.join(f)!r}")
        spk, utt, codec, trans, attack, key, trim, subset = f
        if key not in SASV_KEYS:
            raise line_error(path, number, f"unknown key {key!r}; expected 'target', 'nontarget' or 'spoof'")
        if (key == SPOOF) == (attack in (BONAFIDE, "-")):
            raise line_error(path, number, f"key {key!r} does not fit attack {attack!r}")
        if trim not in TRIMS:
            raise line_error(path, number, f"unknown trim {trim!r}; expected 'notrim' or 'trim'")
        if subset not in SUBSETS:
            raise line_error(path, number, f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
        seen.check((spk, utt), number, f"'{spk} {utt}'")
        lines.append(ASVKeyLine(intern(spk), utt, intern(codec), intern(trans), intern(attack), intern(key),
                                intern(trim), intern(subset)))
    if not lines:
        raise ProtocolError(f"{path}: the ASV key lists no trials")
    return lines


def read_asv_scores(path: str | os.PathLike, key: list[ASVKeyLine], key_path: str | os.PathLike) -> np.ndarray:
    """The organisers' ASV scores (`SPK UTT SCORE`), one per line of the ASV key and in its order, as the
    package pairs them; a line that names another trial than the key's line of the same number is an error."""
    scores = np.empty(len(key), dtype=np.float64)
    n = 0
    for number, f in protocol_lines(path, "ASV score file"):
        if len(f) != 3:
            raise line_error(path, number, f"expected 3 columns 'SPK UTT SCORE', got {len(f)}: {' '.join(f)!r}")
        if n >= len(key):
            raise line_error(path, number, f"more scores than the {len(key)} trials of {key_path}")
        k = key[n]
        if (f[0], f[1]) != (k.speaker, k.utt):
            raise line_error(path, number, f"scores '{f[0]} {f[1]}' but trial {n + 1} of {key_path} is "
                                           f"'{k.speaker} {k.utt}'; the file pairs with the key line by line")
        try:
            score = float(f[2])
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise line_error(path, number, f"score {f[2]!r} is not a finite number")
        scores[n] = score
        n += 1
    if n != len(key):
        raise ProtocolError(f"{path}: {n} scores for the {len(key)} trials of {key_path}")
    return scores


class ASVspoof2021Database(CMOnlyDatabase):
    """An ASVspoof 2021 evaluation set as data.databases.Database; `track` is LA or DF (see the module docstring).
    CM-only: `trial_splits` is empty."""

    track: str
    splits = SPLITS

    @classmethod
    def _keys_candidates(cls, root: Path) -> list[Path]:
        return [root / "keys", root / f"ASVspoof2021_{cls.track}_eval" / "keys"]

    @classmethod
    def _cm_key_rel(cls) -> str:
        return f"{cls.track}/CM/trial_metadata.txt"

    @classmethod
    def missing(cls, root: str | os.PathLike) -> list[str]:
        """What of the layout `root` lacks: the audio folder and the CM key."""
        root = Path(root)
        out = []
        if not (root / f"ASVspoof2021_{cls.track}_eval" / "flac").is_dir():
            out.append(f"ASVspoof2021_{cls.track}_eval/flac/")
        if not any((k / cls._cm_key_rel()).is_file() for k in cls._keys_candidates(root)):
            out.append(f"keys/{cls._cm_key_rel()}")
        return out

    def keys_dir(self) -> Path:
        """`<database>/keys`, or `ASVspoof2021_<track>_eval/keys` when only that holds the CM key."""
        first, second = self._keys_candidates(self.root)
        if not (first / self._cm_key_rel()).is_file() and (second / self._cm_key_rel()).is_file():
            return second
        if (second / self._cm_key_rel()).is_file() and (first / self._cm_key_rel()).is_file():
            self._say_once(f"{self.root}: keys in both {first} and {second}; reading {first}")
        return first

    def _say_once(self, message: str) -> None:
        if message not in _SAID:
            _SAID.add(message)
            log.info(message)

    # ---- paths --------------------------------------------------------------------------------
    def audio_dir(self, split: str) -> Path:
        self._check(split)
        return self.root / f"ASVspoof2021_{self.track}_eval" / "flac"

    def audio(self, split: str, utt: str) -> Path:
        return self.audio_dir(split) / f"{utt}.flac"

    def cm_protocol_path(self, split: str) -> Path:
        self._check(split)
        return self.keys_dir() / self._cm_key_rel()

    def _where(self, split: str, utt: str) -> tuple[Path, int]:
        path = self.cm_protocol_path(split)
        return path, line_of(path, utt, 1, "key file")

    # ---- parsed keys --------------------------------------------------------------------------
    def _key(self) -> CMKey:
        raise NotImplementedError

    def cm_entries(self, split: str) -> list[CMEntry]:
        """The entries of one subset (`all`: every line), in key order."""
        self._check(split)
        key = self._key()
        if split == ALL:
            return list(key.entries)
        return [e for e, s in zip(key.entries, key.subsets, strict=True) if s == split]


_SAID: set[str] = set()


class LA2021Database(ASVspoof2021Database):
    """ASVspoof 2021 LA eval (`data.format: asvspoof2021_la`)."""

    format, title, track = "asvspoof2021_la", "ASVspoof 2021 LA eval", "LA"

    def _key(self) -> CMKey:
        return self._read(self.cm_protocol_path(ALL), read_la_cm_key)

    def asv_key_path(self) -> Path:
        return self.keys_dir() / "LA" / "ASV" / "trial_metadata.txt"

    def asv_scores_path(self) -> Path:
        """The organisers' ASV scores (`ASVTorch_Kaldi/score.txt`; the README's `ASVtorch_kaldi` is accepted)."""
        folder = self.keys_dir() / "LA" / "ASV"
        return next((folder / f / "score.txt" for f in ASV_SCORE_FOLDERS if (folder / f / "score.txt").is_file()),
                    folder / ASV_SCORE_FOLDERS[0] / "score.txt")

    def asv_key(self, split: str) -> list[ASVKeyLine]:
        """The ASV trials of one subset (`all`: every line), in key order."""
        self._check(split)
        lines = self._read(self.asv_key_path(), read_asv_key)
        return list(lines) if split == ALL else [t for t in lines if t.subset == split]

    def asv_key_scores(self, split: str) -> tuple[list[ASVKeyLine], np.ndarray]:
        """The ASV trials of one subset and the organisers' ASV score of each: the ASV side of the t-DCF, as the
        package computes it when asked to recompute C012 from the official scores (its precomputed C012 files are
        pickled, and the toolkit never unpickles)."""
        self._check(split)
        lines = self._read(self.asv_key_path(), read_asv_key)
        scores = read_asv_scores(self.asv_scores_path(), lines, self.asv_key_path())
        if split == ALL:
            return list(lines), scores
        keep = np.fromiter((t.subset == split for t in lines), dtype=bool, count=len(lines))
        return [t for t, k in zip(lines, keep, strict=True) if k], scores[keep]

    def protocol_files(self, splits, concat: bool = False) -> list[Path]:
        """The CM key, and the ASV key and scores where present (what a t-DCF of the run was computed from)."""
        files = super().protocol_files(splits)
        return files + [p for p in (self.asv_key_path(), self.asv_scores_path()) if p.is_file()]


class DF2021Database(ASVspoof2021Database):
    """ASVspoof 2021 DF eval (`data.format: asvspoof2021_df`)."""

    format, title, track = "asvspoof2021_df", "ASVspoof 2021 DF eval", "DF"

    def _key(self) -> CMKey:
        return self._read(self.cm_protocol_path(ALL), read_df_cm_key)
