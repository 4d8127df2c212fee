"""ASVspoof 2019 LA layout and protocol parsers (CM protocols, SASV trials, enrolment lists).

Everything downstream identifies audio by utterance id; this module is the one place that knows where an
id lives on disk and what the protocol columns mean. Parsers are strict: a malformed line fails with the
file and line number, because a silently skipped trial changes every metric computed from the list; an id that
becomes a file name must be a name, not a path (data/names.py); a list with no entries is an error too (it
would only fail later, after the embeddings were computed, with an error that names no file).
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, NamedTuple, Sequence

from common.errors import MissingFilesError, ProtocolError, line_error
from common.file_identity import identity
from common.io import text_lines
from data.names import check_name
from data.trial_kinds import CM_KEYS, SASV_KEYS

SPLITS = ("train", "dev", "eval")
ENROLMENT_SPLITS = ("dev", "eval")
GENDERS = ("female", "male")
_ATTACK_RE = re.compile(r"^A\d\d$")
_CM_PROTOCOL_SUFFIX = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


class CMEntry(NamedTuple):
    """One utterance of a CM protocol (ASVspoof 2019 LA: the line `SPK UTT - SYSTEM KEY`). `speaker` is the source
    speaker, also of spoofs. The fields after `key` are the conditions other layouts label, "-" where a layout has
    none; results break metrics down by them (per attack, per codec, per codec quality, per vocoder type).

    A NamedTuple rather than a frozen dataclass: an eval protocol has 71k lines (ASVspoof 5: 681k), and building
    frozen dataclasses cost more than reading the file."""

    speaker: str
    utt: str
    system: str  # the attack: "-" for bona fide, A01..A19 (2019 LA), A01..A32 (ASVspoof 5), ...
    key: str  # "bonafide" | "spoof"
    codec: str = "-"     # codec condition: ASVspoof 5 CODEC (C01..C11), 2021 LA codec, 2021 DF compression
    codec_q: str = "-"   # its quality / channel: ASVspoof 5 CODEC_Q, 2021 LA transmission, 2021 DF source corpus
    gender: str = "-"    # the speaker's gender where the layout says (ASVspoof 5: F / M)
    source: str = "-"    # the utterance a coded copy was made from (ASVspoof 5 CODEC_SEED)
    vocoder: str = "-"   # the spoof's vocoder type where the layout says (2021 DF: the organisers' first table axis)

    @property
    def is_bonafide(self) -> bool:
        return self.key == "bonafide"

    @property
    def label(self) -> int:
        """AASIST convention: 1 = bona fide, 0 = spoof."""
        return 1 if self.key == "bonafide" else 0


class SASVTrial(NamedTuple):
    """One line `SPK UTT ATTACK KEY` of a SASV trial list (`*.gi.trl.txt`); `speaker` is the claimed identity."""

    speaker: str
    utt: str
    attack: str  # "bonafide" or A01..A19
    key: str  # "target" | "nontarget" | "spoof"


def protocol_lines(path: str | os.PathLike, what: str = "protocol file") -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of the non-blank lines of a user's list file.

    A missing file is a MissingFilesError; UTF-16 or non-UTF-8 bytes an InputError; a byte-order mark is dropped."""
    for number, line in text_lines(path, what):
        fields = line.split()
        if fields:
            yield number, fields


class RepeatCheck:
    """Finds repeated keys in a list file: one rule for every list, a repeat is an error naming both lines
    (a duplicated trial or utterance would be scored twice and weigh twice in every metric)."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what, self.lines = path, what, {}

    def check(self, key, number: int, shown: str) -> None:
        first = self.lines.setdefault(key, number)
        if first != number:
            raise line_error(self.path, number, f"{self.what} {shown} listed twice (first on line {first})")


def read_cm_protocol(path: str | os.PathLike) -> list[CMEntry]:
    """Parses a CM protocol (`ASVspoof2019.LA.cm.*.txt`), in file order."""
    entries = []
    seen = RepeatCheck(path, "utterance")
    for number, f in protocol_lines(path):
        if len(f) != 5:
            raise line_error(path, number, f"expected 5 columns 'SPK UTT - SYSTEM KEY', got {len(f)}: {' '.join(f)!r}")
        spk, utt, _, system, key = f
        check_name(utt, path, number)
        if key not in CM_KEYS:
            raise line_error(path, number, f"unknown key {key!r}; expected 'bonafide' or 'spoof'")
        if key == "bonafide" and system != "-":
            raise line_error(path, number, f"bona fide utterance {utt} has system {system!r}, expected '-'")
        if key == "spoof" and not _ATTACK_RE.match(system):
            raise line_error(path, number, f"spoof utterance {utt} has system {system!r}, expected A01..A19")
        seen.check(utt, number, utt)
        entries.append(CMEntry(spk, utt, system, key))
    if not entries:
        raise ProtocolError(f"{path}: the CM protocol lists no utterances")
    return entries


def read_sasv_trials(path: str | os.PathLike) -> list[SASVTrial]:
    """Parses a SASV trial list (`ASVspoof2019.LA.asv.{dev,eval}.gi.trl.txt`), in file order."""
    trials = []
    seen = RepeatCheck(path, "trial")
    labels: dict[str, str] = {}     # one str object per distinct speaker, attack and key, not one per line (835k)
    for number, f in protocol_lines(path, "trial list"):
        if len(f) != 4:
            raise line_error(path, number, f"expected 4 columns 'SPK UTT ATTACK KEY', got {len(f)}: {' '.join(f)!r}")
        spk, utt, attack, key = f
        check_name(utt, path, number)
        if key not in SASV_KEYS:
            raise line_error(path, number, f"unknown key {key!r}; expected 'target', 'nontarget' or 'spoof'")
        if (key == "spoof") != (attack != "bonafide"):
            raise line_error(path, number, f"key {key!r} does not fit attack {attack!r}")
        if attack != "bonafide" and not _ATTACK_RE.match(attack):
            raise line_error(path, number, f"unknown attack {attack!r}; expected 'bonafide' or A01..A19")
        spk = labels.setdefault(spk, spk)
        seen.check((spk, utt), number, f"'{spk} {utt}'")
        trials.append(SASVTrial(spk, utt, labels.setdefault(attack, attack), labels.setdefault(key, key)))
    if not trials:
        raise ProtocolError(f"{path}: the trial list has no trials")
    return trials


def read_enrolment(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> dict[str, list[str]]:
    """Merges per-gender enrolment lists (`SPK UTT1,UTT2,...`) into speaker -> utterance ids.

    A speaker listed twice (in one file or across the female and male lists) is an error: the lists
    partition the speakers, so a repeat means a wrong or concatenated file. So is an utterance listed twice."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for path in paths:
        for number, f in protocol_lines(path, "enrolment list"):
            if len(f) == 1:
                raise line_error(path, number, f"speaker {f[0]} has no enrolment files")
            if len(f) != 2:
                raise line_error(path, number, f"expected 2 columns 'SPK UTT1,UTT2,...', got {len(f)}: {' '.join(f)!r}")
            spk, utts = f[0], f[1].split(",")
            if any(not u for u in utts):
                raise line_error(path, number, f"empty utterance id in the list of speaker {spk}")
            for utt in utts:
                check_name(utt, path, number)
            if spk in out:
                raise line_error(path, number, f"speaker {spk} listed twice (first at {where[spk]})")
            if len(set(utts)) != len(utts):
                twice = next(u for u in utts if utts.count(u) > 1)
                raise line_error(path, number, f"utterance {twice} listed twice for speaker {spk}")
            out[spk] = utts
            where[spk] = f"{path}:{number}"
    if not out:
        lists = "the enrolment lists name" if len(paths) > 1 else "the enrolment list names"
        raise ProtocolError(f"{', '.join(map(str, paths))}: {lists} no speakers")
    return out


def read_enrolment_concat(path: str | os.PathLike) -> dict[str, str]:
    """Parses the joint-optimisation enrolment list `SPK SPK_UTT` (`*.gi.trn.txt`): speaker -> file stem
    of one concatenated enrolment recording under `enr_audio/{split}/`."""
    out: dict[str, str] = {}
    for number, f in protocol_lines(path, "enrolment list"):
        if len(f) != 2:
            raise line_error(path, number, f"expected 2 columns 'SPK SPK_UTT', got {len(f)}: {' '.join(f)!r}")
        spk, stem = f
        check_name(stem, path, number, "enrolment file stem")
        if spk in out:
            raise line_error(path, number, f"speaker {spk} listed twice")
        out[spk] = stem
    if not out:
        raise ProtocolError(f"{path}: the enrolment list names no speakers")
    return out


class FolderListing:
    """`path in listing`: whether a file exists, listing each folder once instead of stat-ing every file, which
    matters for 100k-file corpora on network disks. A folder that cannot be listed holds nothing."""

    def __init__(self):
        self._names: dict[str, set[str] | None] = {}

    def __contains__(self, path: str | os.PathLike) -> bool:
        parent, name = os.path.split(os.path.normpath(os.fspath(path)))
        if parent not in self._names:
            try:
                self._names[parent] = set(os.listdir(parent or "."))
            except (FileNotFoundError, NotADirectoryError):
                self._names[parent] = None
        names = self._names[parent]
        return names is not None and name in names


def check_files_exist(paths: Iterable[str | os.PathLike], what: str,
                      locate: Callable[[str], str | None] | None = None) -> None:
    """Fails (one line: count, total, first few paths) when any of `paths` is missing; call before compute.
    `locate(path)` -> "LIST:LINE" names where the first missing file is listed; it runs only on that error path.

    Paths are consumed one at a time and only the first few missing ones are kept, so a generator of a
    million paths (VoxCeleb2) is never materialised as a list of Path objects (~0.5 GB)."""
    listing = FolderListing()
    missing: list[str] = []
    n_missing = total = 0
    for p in paths:
        total += 1
        if p not in listing:
            n_missing += 1
            if len(missing) < 4:
                missing.append(str(Path(p)))
    if n_missing:
        where = locate(missing[0]) if locate is not None else None
        if where:
            missing[0] += f" (listed at {where})"
        shown = ", ".join(missing[:3])
        more = ", ..." if n_missing > 3 else ""
        raise MissingFilesError(f"{what}: {n_missing} of {total} files missing: {shown}{more}")


def check_listed_files(items: Iterable[tuple[str, str | os.PathLike]], what: str,
                       where: Callable[[str], tuple[str | os.PathLike, int]]) -> None:
    """Fails when a file of `items` ((id, path), in list order) is missing, naming the list file and line that
    names the first one: `LIST:LINE: what PATH does not exist (n of N listed files missing)`.

    `where(id)` gives that (list file, line number); it is called only on failure, so a reader need not keep a
    line number per entry of a 700k-line list. Folders are listed once (`FolderListing`)."""
    listing = FolderListing()
    first: tuple[str, str | os.PathLike] | None = None
    n_missing = total = 0
    for item in items:
        total += 1
        if item[1] not in listing:
            n_missing += 1
            first = first or item
    if first is not None:
        path, number = where(first[0])
        more = f" ({n_missing} of {total} listed files missing)" if n_missing > 1 else ""
        raise MissingFilesError(f"{path}:{number}: {what} {first[1]} does not exist{more}")


def line_of(path: str | os.PathLike, value: str, column: int | None = 1, what: str = "protocol file") -> int:
    """The number of the first line of a list whose `column` (from 0) is `value` (column None: any field, or a
    comma-separated part of one, as enrolment lists have); 0 when none is. For error messages only: readers keep
    no line numbers, and find the line again when something about an entry fails."""
    for number, fields in protocol_lines(path, what):
        if column is None:
            if value in fields or any(value in f.split(",") for f in fields if "," in f):
                return number
        elif len(fields) > column and fields[column] == value:
            return number
    return 0


class ParseCache:
    """`cache(path, reader)`: a protocol parsed once per database object while the file is unchanged (the stages
    ask for the same 100k-line trial list several times per run); parsed again when its identity
    (common/file_identity.py) changes, even with the modification time copied back. Every layout reader keeps one.

    Entries are found by `reader`, which must therefore be the same object on every call (a module-level function):
    a function made per call would never be found, and every call would add another parsed copy of the list. A reader
    that needs more than the path (say, a split's other list) is passed as `key` (a name for what it reads) with the
    other files it reads as `also`, whose identities are part of the entry too."""

    def __init__(self):
        self._parsed: dict[tuple, tuple[tuple, object]] = {}

    def __call__(self, path: Path, reader: Callable[[Path], object], *, key: Hashable = None,
                 also: Sequence[Path] = ()):
        try:
            identities = tuple(identity(p.stat()) for p in (path, *also))
        except OSError:
            return reader(path)     # the reader says what is wrong with it
        entry = (str(path), reader if key is None else key, *(str(p) for p in also))
        held = self._parsed.get(entry)
        if held is None or held[0] != identities:       # a changed file's old parse is dropped, not kept beside
            self._parsed.pop(entry, None)
            self._parsed[entry] = (identities, reader(path))
        return self._parsed[entry][1]


def listed_at(db, split: str, audio_path: str | os.PathLike) -> str | None:
    """"LIST:LINE" of the first of a split's lists (`db.protocol_files([split])`, db a data.databases.Database) that
    names the utterance whose audio is `audio_path`; for the error of a missing file (check_files_exist's `locate`):
    it reads the lists again."""
    target = os.path.normpath(os.fspath(audio_path))
    utt = next((u for u in db.utterances(split) if os.path.normpath(os.fspath(db.audio(split, u))) == target), None)
    if utt is None:
        return None
    for path in reversed(db.protocol_files([split])):     # the most specific first: enrolment, trials, CM protocol
        number = line_of(path, utt, None) if path.is_file() else 0
        if number:
            return f"{path}:{number}"
    return None


def utterances_by_speaker(entries: Iterable[CMEntry]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(bona fide utts per speaker, spoof utts per speaker), speakers and utts in protocol order."""
    bona: dict[str, list[str]] = defaultdict(list)
    spoof: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        (bona if e.key == "bonafide" else spoof)[e.speaker].append(e.utt)
    return dict(bona), dict(spoof)


class LADatabase:
    """The ASVspoof 2019 LA folder (config key `database`, holding `ASVspoof2019_LA_{train,dev,eval}/`), as
    data.databases.Database (`data.format: asvspoof2019_la`).

    `enr_audio` holds `{dev,eval}/SPK_UTT.flac` (concatenated enrolment, joint-optimisation form); it
    defaults to `<database>/enr_audio` as written by the synthetic corpus generator."""

    format, title = "asvspoof2019_la", "ASVspoof 2019 LA"
    splits, trial_splits, concat_enrolment = SPLITS, ENROLMENT_SPLITS, True

    @classmethod
    def missing(cls, root: str | os.PathLike) -> list[str]:
        """What of the layout `root` lacks to be recognised: the CM protocol folder and some split's audio folder
        (a copy with only some splits is still this layout; a missing split is said when it is read)."""
        root = Path(root)
        lacking = [] if (root / "ASVspoof2019_LA_cm_protocols").is_dir() else ["ASVspoof2019_LA_cm_protocols/"]
        if not any((root / f"ASVspoof2019_LA_{s}" / "flac").is_dir() for s in SPLITS):
            lacking.append("ASVspoof2019_LA_{train,dev,eval}/flac/")
        return lacking

    def __init__(self, root: str | os.PathLike, enr_audio: str | os.PathLike | None = None):
        self.root = Path(root)
        self.enr_audio = Path(enr_audio) if enr_audio is not None else self.root / "enr_audio"
        self._read = ParseCache()

    def __repr__(self) -> str:
        return f"LADatabase({str(self.root)!r}, enr_audio={str(self.enr_audio)!r})"

    # ---- paths --------------------------------------------------------------------------------
    def audio_dir(self, split: str) -> Path:
        _check_split(split, SPLITS)
        return self.root / f"ASVspoof2019_LA_{split}" / "flac"

    def audio(self, split: str, utt: str) -> Path:
        """Audio of an utterance (CM protocol or per-gender enrolment list) of `split`."""
        return self.audio_dir(split) / f"{utt}.flac"

    def cm_protocol_path(self, split: str) -> Path:
        _check_split(split, SPLITS)
        name = f"ASVspoof2019.LA.cm.{_CM_PROTOCOL_SUFFIX[split]}.txt"
        return self.root / "ASVspoof2019_LA_cm_protocols" / name

    def _asv(self, split: str, kind: str) -> Path:
        _check_split(split, ENROLMENT_SPLITS)
        return self.root / "ASVspoof2019_LA_asv_protocols" / f"ASVspoof2019.LA.asv.{split}.{kind}.txt"

    def sasv_trials_path(self, split: str) -> Path:
        return self._asv(split, "gi.trl")

    def enrolment_path(self, split: str, gender: str) -> Path:
        if gender not in GENDERS:
            raise ValueError(f"unknown gender {gender!r}; choose one of {', '.join(GENDERS)}")
        return self._asv(split, f"{gender}.trn")

    def enrolment_lists(self, split: str) -> list[Path]:
        """The files `enrolment(split)` reads (the female and male lists)."""
        return [self.enrolment_path(split, g) for g in GENDERS]

    def enrolment_concat_path(self, split: str) -> Path:
        return self._asv(split, "gi.trn")

    def enr_audio_file(self, split: str, stem: str) -> Path:
        """A concatenated enrolment recording named in the `gi.trn` list."""
        _check_split(split, ENROLMENT_SPLITS)
        return self.enr_audio / split / f"{stem}.flac"

    # ---- parsed protocols ---------------------------------------------------------------------
    def cm_entries(self, split: str) -> list[CMEntry]:
        return list(self._read(self.cm_protocol_path(split), read_cm_protocol))

    def sasv_trials(self, split: str) -> list[SASVTrial]:
        return list(self._read(self.sasv_trials_path(split), read_sasv_trials))

    def enrolment(self, split: str) -> dict[str, list[str]]:
        """Speaker -> enrolment utterance ids (female and male lists merged); audio in `flac(split, utt)`."""
        return read_enrolment(self.enrolment_lists(split))   # small files: no cache

    def enrolment_concat(self, split: str) -> dict[str, str]:
        """Speaker -> stem of its concatenated enrolment recording; audio in `enr_audio_file(split, stem)`."""
        return dict(self._read(self.enrolment_concat_path(split), read_enrolment_concat))

    def protocol_files(self, splits: Sequence[str], concat: bool = False) -> list[Path]:
        """Every protocol file the given splits are read from (CM protocols, trial and enrolment lists)."""
        files = []
        for split in splits:
            files.append(self.cm_protocol_path(split))
            if split in ENROLMENT_SPLITS:
                files += [self.sasv_trials_path(split)] + self.enrolment_lists(split)
                if concat:
                    files.append(self.enrolment_concat_path(split))
        return files

    # ---- whole-split helpers ------------------------------------------------------------------
    def utterances(self, split: str) -> list[str]:
        """Every utterance id whose audio a split needs: its CM protocol utts, then (dev/eval) enrolment utts.

        Order is stable (protocol order, then enrolment lists), duplicates removed."""
        ids = [e.utt for e in self.cm_entries(split)]
        if split in ENROLMENT_SPLITS:
            for utts in self.enrolment(split).values():
                ids.extend(utts)
        return list(dict.fromkeys(ids))

    def check_split(self, split: str, enr_audio: bool = False) -> list[str]:
        """Checks that the protocols of a split exist and parse (the trial list too) and that all its audio exists
        (MissingFilesError otherwise); returns the utterance ids (see `utterances`). `enr_audio=True` also checks
        the concatenated enrolment list and files."""
        protocols = [self.cm_protocol_path(split)]
        if split in ENROLMENT_SPLITS:
            protocols += [self.sasv_trials_path(split)] + self.enrolment_lists(split)
            if enr_audio:
                protocols.append(self.enrolment_concat_path(split))
        check_files_exist(protocols, f"ASVspoof 2019 LA {split} protocols under {self.root}")
        ids = self.utterances(split)
        if split in ENROLMENT_SPLITS:
            self.sasv_trials(split)          # parsed once per database object: refused here when malformed or empty
        check_files_exist((self.audio(split, u) for u in ids), f"ASVspoof 2019 LA {split} audio in "
                          f"{self.audio_dir(split)}", lambda p: listed_at(self, split, p))
        if enr_audio and split in ENROLMENT_SPLITS:
            stems = self.enrolment_concat(split).values()
            check_files_exist((self.enr_audio_file(split, s) for s in stems),
                              f"concatenated enrolment audio in {self.enr_audio / split}")
        return ids


def _check_split(split: str, valid: Sequence[str]) -> None:
    if split not in valid:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(valid)}")

