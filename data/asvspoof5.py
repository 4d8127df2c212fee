"""ASVspoof 5 layout and protocol parsers (Track 1 CM lists, Track 2 SASV trials and enrolment), as
data.databases.Database (`data.format: asvspoof5`).

The official database README (ASVspoof5_protocols.tar.gz, 2024) fixes the layout this reader follows:
- audio `flac_T/`, `flac_D/`, `flac_E_eval/` (`flac_E/` accepted too), `UTT.flac` at 16 kHz; a split's Track 2
  enrolment files lie in its folder but are not in its Track 1 list;
- protocols at the database root or in `ASVspoof5_protocols/`, space-separated despite the `.tsv` suffix:
  `ASVspoof5.train.tsv`, `ASVspoof5.{dev,eval}.track_1.tsv`: SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC
  CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP (ten columns; the README says "FIVE" and lists ten);
  `ASVspoof5.{dev,eval}.track_2.trial.tsv`: TARGET_SPEAKER_ID FLAC_FILE_NAME TARGET_GENDER ATTACK_LABEL ASV_KEY;
  `ASVspoof5.{dev,eval}.track_2.enroll.tsv`: TARGET_SPEAKER_ID FILE,FILE,... (some speakers have fewer than 3).
- Official counts: train 182,357 utterances; dev 140,950 Track 1 utterances, 398 enrolled speakers with 1,184
  files, 282,456 trials; eval 680,774 Track 1 utterances, 367 speakers with 1,098 files, 834,536 trials.

Every naming in circulation is read. The README's file list also writes `ASVspoof5.{dev,eval}.{trial,enroll}.tsv`
and `ASVspoof5.dev.{trial,enroll}.txt`; the challenge's phase-2 release (still read by the published SASV
baseline) had `ASVspoof5.train.metadata.txt` and `ASVspoof5.dev.metadata.txt` with six columns
`SPEAKER UTT GENDER CODEC ATTACK KEY`, `ASVspoof5.dev.trial.txt` with three, `SPK UTT KEY`, and the same
enrolment format. A file's role comes from its name and its format from its column count, so any of these
names holding either format is read. Where several names of one role are present the final one is read, and
`layout_notes` says which (logged when work starts, data.databases.say_layout).

Parsers handle the million-line lists: one `split()` a line, NamedTuples, the few-valued columns (speakers,
genders, codecs, attacks) interned, no regex beyond the id check (data/names.py). A codec label outside
C01-C11 is accepted (later releases may add conditions) and reported in one log line with its counts.
"""
from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from common.errors import InputError, MissingFilesError, ProtocolError, line_error
from data.asvspoof import (
    CMEntry,
    ParseCache,
    RepeatCheck,
    SASVTrial,
    check_files_exist,
    listed_at,
    protocol_lines,
    read_enrolment,
)
from data.names import check_name
from data.trial_kinds import CM_KEYS, SASV_KEYS

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "eval")
TRIAL_SPLITS = ("dev", "eval")
PROTOCOL_DIR = "ASVspoof5_protocols"
AUDIO_DIRS = {"train": ("flac_T",), "dev": ("flac_D",), "eval": ("flac_E_eval", "flac_E")}
CODECS = tuple(f"C{i:02d}" for i in range(1, 12))        # the codec conditions of the official lists
GENDERS = ("F", "M")
OFFICIAL_COUNTS = {      # from the database README; docs/datasets.md
    "train": {"utterances": 182_357},
    "dev": {"utterances": 140_950, "enrolled_speakers": 398, "enrolment_files": 1_184, "trials": 282_456},
    "eval": {"utterances": 680_774, "enrolled_speakers": 367, "enrolment_files": 1_098, "trials": 834_536},
}
# role -> the names a file of that role has had, the one read first when several are present
NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("cm", "train"): ("ASVspoof5.train.tsv", "ASVspoof5.train.metadata.txt"),
    ("cm", "dev"): ("ASVspoof5.dev.track_1.tsv", "ASVspoof5.dev.metadata.txt"),
    ("cm", "eval"): ("ASVspoof5.eval.track_1.tsv",),
    **{("trial", s): (f"ASVspoof5.{s}.track_2.trial.tsv", f"ASVspoof5.{s}.trial.tsv", f"ASVspoof5.{s}.trial.txt")
       for s in TRIAL_SPLITS},
    **{("enrol", s): (f"ASVspoof5.{s}.track_2.enroll.tsv", f"ASVspoof5.{s}.enroll.tsv", f"ASVspoof5.{s}.enroll.txt")
       for s in TRIAL_SPLITS},
}
PHASE2_NAMES = frozenset({"ASVspoof5.train.metadata.txt", "ASVspoof5.dev.metadata.txt", "ASVspoof5.dev.trial.txt",
                          "ASVspoof5.dev.enroll.txt"})
_WHAT = {"cm": "Track 1 list", "trial": "Track 2 trial list", "enrol": "Track 2 enrolment list"}
_NO_CONCAT = ("enrolment: concat needs one concatenated enrolment recording per speaker, which ASVspoof 5 does not "
              "have; use enrolment: lists (the Track 2 enrolment files are averaged)")
_intern = sys.intern


def _is_attack(label: str) -> bool:
    """A01..A99 (ASVspoof 5: A01-A08 train, A09-A16 dev, A17-A32 eval), without a regex per line."""
    return len(label) == 3 and label[0] == "A" and label[1:].isdigit()


def read_track1(path: str | os.PathLike) -> list[CMEntry]:
    """Parses a Track 1 / train list, in file order: the ten-column final format or the six-column phase-2
    `SPEAKER UTT GENDER CODEC ATTACK KEY` (every line as the first). SYSTEM is the attack, "-" for bona fide
    (the toolkit's convention); SOURCE is CODEC_SEED, the uncoded utterance a coded copy was made from."""
    entries: list[CMEntry] = []
    seen = RepeatCheck(path, "utterance")
    width = 0
    for number, f in protocol_lines(path, "Track 1 list"):
        if len(f) != width:
            if width or len(f) not in (10, 6):
                expected = ({10: "10 columns 'SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED "
                                 "ATTACK_TAG ATTACK_LABEL KEY TMP'", 6: "6 columns 'SPEAKER UTT GENDER CODEC ATTACK "
                                 "KEY' (phase-2 format)"}.get(width, "10 columns (or the phase-2 format's 6)"))
                raise line_error(path, number, f"expected {expected}, got {len(f)}: {' '.join(f)!r}")
            width = len(f)
        if width == 10:
            spk, utt, gender, codec, codec_q, source, _tag, attack, key, _tmp = f
        else:
            spk, utt, gender, codec, attack, key = f
            codec_q = source = "-"
        check_name(utt, path, number)
        if key not in CM_KEYS:
            raise line_error(path, number, f"unknown key {key!r}; expected 'bonafide' or 'spoof'")
        if key == "bonafide":
            if attack != "bonafide" and not (width == 6 and attack == "-"):
                raise line_error(path, number, f"bona fide utterance {utt} has attack {attack!r}, expected 'bonafide'")
            attack = "-"
        elif not _is_attack(attack):
            raise line_error(path, number, f"spoof utterance {utt} has attack {attack!r}, expected A01..A32")
        if gender not in GENDERS:
            raise line_error(path, number, f"unknown gender {gender!r}; expected F or M")
        if codec_q != "-" and not codec_q.isdigit():
            raise line_error(path, number, f"codec quality {codec_q!r} is not a number or '-'")
        if source != "-":
            check_name(source, path, number, "CODEC_SEED utterance id")
        seen.check(utt, number, utt)
        entries.append(CMEntry(_intern(spk), utt, _intern(attack), _intern(key), _intern(codec), _intern(codec_q),
                               _intern(gender), source))
    if not entries:
        raise ProtocolError(f"{path}: the Track 1 list lists no utterances")
    _report_codecs(path, entries)
    return entries


def _report_codecs(path: str | os.PathLike, entries: list[CMEntry]) -> None:
    """One log line naming the codec labels outside C01-C11 and how many utterances carry each (accepted: the
    breakdowns show them as their own conditions)."""
    counts = Counter(e.codec for e in entries)
    other = {c: n for c, n in counts.items() if c != "-" and c not in CODECS}
    if other:
        shown = ", ".join(f"{c} ({n} utterance{'s' if n > 1 else ''})" for c, n in sorted(other.items()))
        log.warning(f"{path}: codec labels outside C01-C11 accepted: {shown}")


def read_track2_trials(path: str | os.PathLike, attacks: dict[str, str] | None = None) -> list[SASVTrial]:
    """Parses a Track 2 trial list, in file order: the five-column final format (TARGET_GENDER is checked and
    dropped) or the three-column phase-2 `SPK UTT KEY`, whose spoof trials take their attack from `attacks`
    (utt -> attack, the split's Track 1 list; "-" where it is not there, which the pipeline's trial check then
    refuses as a trial outside the Track 1 list)."""
    trials: list[SASVTrial] = []
    seen = RepeatCheck(path, "trial")
    width = 0
    for number, f in protocol_lines(path, "trial list"):
        if len(f) != width:
            if width or len(f) not in (5, 3):
                expected = {5: "5 columns 'TARGET_SPEAKER_ID FLAC_FILE_NAME TARGET_GENDER ATTACK_LABEL ASV_KEY'",
                            3: "3 columns 'SPK UTT KEY' (phase-2 format)"}.get(width, "5 columns (or the phase-2 "
                                                                                  "format's 3)")
                raise line_error(path, number, f"expected {expected}, got {len(f)}: {' '.join(f)!r}")
            width = len(f)
        if width == 5:
            spk, utt, gender, attack, key = f
            if gender not in GENDERS:
                raise line_error(path, number, f"unknown gender {gender!r}; expected F or M")
        else:
            spk, utt, key = f
            attack = "bonafide" if key != "spoof" else (attacks or {}).get(utt, "-")
        check_name(utt, path, number)
        if key not in SASV_KEYS:
            raise line_error(path, number, f"unknown key {key!r}; expected 'target', 'nontarget' or 'spoof'")
        if width == 5:
            if (key == "spoof") != (attack != "bonafide"):
                raise line_error(path, number, f"key {key!r} does not fit attack {attack!r}")
            if attack != "bonafide" and not _is_attack(attack):
                raise line_error(path, number, f"unknown attack {attack!r}; expected 'bonafide' or A01..A32")
        seen.check((spk, utt), number, f"'{spk} {utt}'")
        trials.append(SASVTrial(_intern(spk), utt, _intern(attack), _intern(key)))
    if not trials:
        raise ProtocolError(f"{path}: the trial list has no trials")
    return trials


class ASVspoof5Database:
    """The ASVspoof 5 folder (config key `database`) as data.databases.Database (`data.format: asvspoof5`):
    splits train, dev, eval; Track 2 trials and list enrolment on dev and eval; no concatenated enrolment.
    Counts of the official release: see OFFICIAL_COUNTS (module docstring)."""

    format, title = "asvspoof5", "ASVspoof 5"
    splits, trial_splits, concat_enrolment = SPLITS, TRIAL_SPLITS, False

    @classmethod
    def missing(cls, root: str | os.PathLike) -> list[str]:
        """What of the layout `root` lacks: a Track 1 list (any name, at the root or in ASVspoof5_protocols/) and
        an audio folder."""
        root = Path(root)
        lacking = []
        if not any(_present(root, name) for (role, _), names in NAMES.items() if role == "cm" for name in names):
            lacking.append(f"ASVspoof5.train.tsv or ASVspoof5.{{dev,eval}}.track_1.tsv (or {PROTOCOL_DIR}/...)")
        folders = [d for ds in AUDIO_DIRS.values() for d in ds]
        if not any((root / d).is_dir() for d in folders):
            lacking.append("/ ".join(folders) + "/")
        return lacking

    def __init__(self, root: str | os.PathLike, enr_audio: str | os.PathLike | None = None):
        self.root = Path(root)
        if enr_audio is not None:
            raise InputError(f"enr_audio is set ({enr_audio}), but {self.title} has no concatenated enrolment "
                             f"recordings; unset it (Track 2 enrolment is by lists)")
        self._read = ParseCache()

    def __repr__(self) -> str:
        return f"ASVspoof5Database({str(self.root)!r})"

    # ---- which files ---------------------------------------------------------------------------
    def _candidates(self, role: str, split: str) -> list[Path]:
        """The present files of a role, the one to read first: names in NAMES order, each in ASVspoof5_protocols/
        before the root."""
        _check_split(split, SPLITS if role == "cm" else TRIAL_SPLITS)
        return [p for name in NAMES[role, split] for p in (self.root / PROTOCOL_DIR / name, self.root / name)
                if p.is_file()]

    def _protocol(self, role: str, split: str) -> Path:
        """The file read for a role; the final name under ASVspoof5_protocols/ when none is present (then the
        checks and the reader name it as missing)."""
        present = self._candidates(role, split)
        return present[0] if present else self.root / PROTOCOL_DIR / NAMES[role, split][0]

    def layout_notes(self) -> list[str]:
        """One line per role that has several of its names present: which file is read (logged at work start by
        data.databases.say_layout, never before a refusal)."""
        notes = []
        for (role, split), _ in NAMES.items():
            present = self._candidates(role, split)
            if len(present) > 1:
                others = ", ".join(f"{self._rel(p)}{' (phase-2 name)' if p.name in PHASE2_NAMES else ''}"
                                   for p in present[1:])
                notes.append(f"database {self.root}: {split} {_WHAT[role]}: reading {self._rel(present[0])}, "
                             f"not {others}")
        for split, names in AUDIO_DIRS.items():
            dirs = [d for d in names if (self.root / d).is_dir()]
            if len(dirs) > 1:
                notes.append(f"database {self.root}: {split} audio: reading {dirs[0]}/, not {', '.join(dirs[1:])}/")
        return notes

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    # ---- paths ---------------------------------------------------------------------------------
    def audio_dir(self, split: str) -> Path:
        _check_split(split, SPLITS)
        names = AUDIO_DIRS[split]
        return next((self.root / d for d in names if (self.root / d).is_dir()), self.root / names[0])

    def audio(self, split: str, utt: str) -> Path:
        """Audio of an utterance of `split`: its Track 1 list or its enrolment list."""
        return self.audio_dir(split) / f"{utt}.flac"

    def cm_protocol_path(self, split: str) -> Path:
        return self._protocol("cm", split)

    def sasv_trials_path(self, split: str) -> Path:
        return self._protocol("trial", split)

    def enrolment_lists(self, split: str) -> list[Path]:
        return [self._protocol("enrol", split)]

    def enrolment_concat_path(self, split: str) -> Path:
        raise InputError(_NO_CONCAT)

    def enr_audio_file(self, split: str, stem: str) -> Path:
        raise InputError(_NO_CONCAT)

    # ---- parsed protocols ----------------------------------------------------------------------
    def cm_entries(self, split: str) -> list[CMEntry]:
        return list(self._read(self.cm_protocol_path(split), read_track1))

    def sasv_trials(self, split: str) -> list[SASVTrial]:
        path, track1 = self.sasv_trials_path(split), self.cm_protocol_path(split)

        def read(p: Path) -> list[SASVTrial]:     # the phase-2 format has no attack column: from the Track 1 list
            return read_track2_trials(p, _attacks_if_needed(p, lambda: self.cm_entries(split)))
        return list(self._read(path, read, key=("track 2 trials", split), also=(track1,)))

    def enrolment(self, split: str) -> dict[str, list[str]]:
        """Speaker -> enrolment utterance ids; audio in `audio(split, utt)`."""
        return dict(self._read(self._protocol("enrol", split), read_enrolment))

    def enrolment_concat(self, split: str) -> dict[str, str]:
        raise InputError(_NO_CONCAT)

    def protocol_files(self, splits: Sequence[str], concat: bool = False) -> list[Path]:
        """Every protocol file the given splits are read from (Track 1 lists, trial and enrolment lists): the
        files read, where several names are present."""
        if concat:
            raise InputError(_NO_CONCAT)
        files = []
        for split in splits:
            files.append(self.cm_protocol_path(split))
            if split in TRIAL_SPLITS:
                files += [self.sasv_trials_path(split), *self.enrolment_lists(split)]
        return files

    # ---- whole-split helpers -------------------------------------------------------------------
    def utterances(self, split: str) -> list[str]:
        """Every utterance id whose audio a split needs: its Track 1 list, then (dev/eval) its enrolment files.
        Order is stable, duplicates removed."""
        ids = [e.utt for e in self.cm_entries(split)]
        if split in TRIAL_SPLITS:
            for utts in self.enrolment(split).values():
                ids.extend(utts)
        return list(dict.fromkeys(ids))

    def check_split(self, split: str, enr_audio: bool = False) -> list[str]:
        """Checks a split before compute: its lists exist and parse (trial list too); no utterance of it is listed
        in another split present; all its audio exists, a missing file named with the list and line that name it
        (enrolment, trial, Track 1 list, in that order). Returns `utterances(split)`."""
        if enr_audio:
            raise InputError(_NO_CONCAT)
        _check_split(split, SPLITS)
        roles = ["cm"] + (["enrol", "trial"] if split in TRIAL_SPLITS else [])
        for role in roles:
            if not self._candidates(role, split):
                names = " or ".join(NAMES[role, split])
                raise MissingFilesError(f"{self.title} {split}: no {_WHAT[role]} in {self.root} or "
                                        f"{self.root / PROTOCOL_DIR} (expected {names})")
        ids = self.utterances(split)
        trial_utts: Iterable[str] = ()
        if split in TRIAL_SPLITS:
            trial_utts = dict.fromkeys(t.utt for t in self.sasv_trials(split))
        self._check_other_splits(split, ids)
        folder = self.audio_dir(split)
        check_files_exist((self.audio(split, u) for u in dict.fromkeys((*trial_utts, *ids))),
                          f"{self.title} {split} audio in {folder}", lambda p: listed_at(self, split, p))
        return ids

    def _check_other_splits(self, split: str, ids: list[str]) -> None:
        """A file listed in two splits (two lists of this corpus) is refused naming both lines: its scores would
        count in both, and a model trained on it is scored on it."""
        mine = set(ids)
        for other in SPLITS:
            if other == split or not self._candidates("cm", other):
                continue
            theirs = self.utterances(other) if other in TRIAL_SPLITS and self._candidates("enrol", other) \
                else [e.utt for e in self.cm_entries(other)]
            twice = next((u for u in theirs if u in mine), None)
            if twice is not None:
                here = listed_at(self, split, self.audio(split, twice))
                there = listed_at(self, other, self.audio(other, twice))
                raise InputError(f"{here}: utterance {twice} is also listed in the {other} split, at {there}")


def _attacks_if_needed(path: Path, entries) -> dict[str, str] | None:
    """utt -> attack of the split's Track 1 list, only for a three-column (phase-2) trial list."""
    for _, f in protocol_lines(path, "trial list"):
        return {e.utt: e.system for e in entries()} if len(f) == 3 else None
    return None


def _present(root: Path, name: str) -> bool:
    return (root / PROTOCOL_DIR / name).is_file() or (root / name).is_file()


def _check_split(split: str, valid: Sequence[str]) -> None:
    if split not in valid:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(valid)}")
