"""A researcher's own corpus in Kaldi-style lists (`data.format: lists`): one folder per split,
`<database>/{train,dev,eval}/` (whichever exist), each with

    wav.scp     `UTT PATH`: the audio file; PATH absolute or relative to the split folder (it may hold spaces)
    utt2spk     `UTT SPK`: every utterance of wav.scp has a speaker
    utt2label   `UTT bonafide|spoof [ATTACK]`: CM labels (optional; a split without them has no CM task)
    trials      `SPK UTT KEY`, KEY target | nontarget | spoof: SASV trials (optional)
    spk2utt     `SPK UTT1 UTT2 ...`: each claimed speaker's enrolment utterances (needed with trials)

What a split has decides what it is used for: with utt2label it is in `splits` (CM training and scoring, the
bona fide speakers of train for ASV training), with trials also in `trial_splits` (SASV scoring, list enrolment).

Kaldi conventions that do not carry over, each refused in one line naming the file and line: a pipe (`sox ... |`)
or an archive offset (`foo.ark:1234`) in wav.scp, since the toolkit reads, caches and checks audio *files*; and
spk2utt as Kaldi's `utt2spk_to_spk2utt.pl` writes it (every utterance of a speaker): here it lists enrolment
utterances only, and a test utterance found in it is refused (it would be scored against a model made from itself).

Checks, all before any compute: ids are names (data/names.py; PATHs are the user's paths); an utterance, speaker,
trial or audio file listed twice; a label, key or trial outside the known set; an utterance of utt2spk, utt2label,
spk2utt or trials that wav.scp lacks; an enrolment line with no files; an enrolment utterance utt2spk gives to
another speaker; a trial whose speaker has no enrolment line, whose test utterance has no CM label or a label that
contradicts its key, a target trial of another speaker or a nontarget trial of the same one; an audio file listed
in two splits; a listed audio file that does not exist (`wav.scp:LINE`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple, Sequence

from common.errors import MissingFilesError, ProtocolError, line_error
from common.file_identity import file_identity
from common.io import text_lines
from data.asvspoof import CMEntry, SASVTrial, check_listed_files, line_of, protocol_lines
from data.cm_only import refuse_enr_audio
from data.names import check_name
from data.trial_kinds import BONAFIDE, NONTARGET, SASV_KEYS, SPOOF, TARGET, UNKNOWN_ATTACK

SPLITS = ("train", "dev", "eval")
WAV_SCP, UTT2SPK, UTT2LABEL, TRIALS, SPK2UTT = "wav.scp", "utt2spk", "utt2label", "trials", "spk2utt"
FILES = (WAV_SCP, UTT2SPK, UTT2LABEL, TRIALS, SPK2UTT)
_ARCHIVE = re.compile(r":\d+(\[[^\]]*\])?$|^(ark|scp)[,a-z]*:")    # foo.ark:1234, foo.ark:12[0:9], ark:...


class ListSplit(NamedTuple):
    """One split's lists, parsed and checked against each other."""
    audio: dict[str, str]                       # utt -> audio path (absolute, or joined onto the split folder)
    speaker: dict[str, str]                     # utt -> speaker (utt2spk)
    entries: list[CMEntry] | None               # utt2label, in file order (None: no utt2label)
    enrolment: dict[str, list[str]] | None      # spk2utt (None: none, or no trials to enrol for)
    trials: list[SASVTrial] | None              # trials (None: none)


def read_wav_scp(path: str | os.PathLike) -> dict[str, str]:
    """wav.scp as utterance -> audio path; a relative PATH is joined onto the file's folder."""
    folder = os.path.dirname(os.fspath(path))
    out: dict[str, str] = {}
    files: dict[str, int] = {}
    for number, line in text_lines(path, "wav.scp"):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        rx = parts[1].strip() if len(parts) == 2 else ""
        if not rx:
            raise line_error(path, number, f"expected 'UTT PATH', got {line.strip()!r}")
        utt = check_name(parts[0], path, number)
        if rx[-1] == "|" or rx[0] == "|" or rx == "-" or _ARCHIVE.search(rx):
            _not_a_file(rx, path, number)
        if utt in out:
            raise line_error(path, number, f"utterance {utt} listed twice (first on line {line_of(path, utt, 0)})")
        audio = rx if rx[0] == "/" else f"{folder}/{rx}"
        if "/." in audio or "//" in audio:          # the same file spelled two ways would be two files
            audio = os.path.normpath(audio)
        first = files.setdefault(audio, number)
        if first != number:
            raise line_error(path, number, f"audio {rx} is listed twice (first on line {first})")
        out[utt] = audio
    if not out:
        raise ProtocolError(f"{path}: wav.scp lists no utterances")
    return out


def _not_a_file(rx: str, path, number: int) -> None:
    if rx[-1] == "|" or rx[0] == "|":
        raise line_error(path, number, f"{rx!r} is a Kaldi pipe; the toolkit reads audio files, not commands: "
                                       f"write the command's output to a file and list the file")
    raise line_error(path, number, f"{rx!r} is {'standard input' if rx == '-' else 'an archive offset'}; "
                                   f"list the audio files themselves")


def _unknown(utt: str, path, number: int, wav_scp) -> None:
    """The error for an utterance of a list that wav.scp lacks (an id that is no name says so first)."""
    check_name(utt, path, number)
    raise line_error(path, number, f"utterance {utt} is not in {wav_scp}")


def _twice(what: str, shown: str, path, number: int, column: int = 0) -> None:
    raise line_error(path, number, f"{what} {shown} listed twice (first on line {line_of(path, shown, column)})")


def read_utt2spk(path: str | os.PathLike, audio: dict[str, str], wav_scp: str | os.PathLike) -> dict[str, str]:
    """utt2spk as utterance -> speaker; it covers wav.scp exactly."""
    out: dict[str, str] = {}
    speakers: dict[str, str] = {}          # one string object per speaker, not one per line
    for number, f in protocol_lines(path, "utt2spk"):
        if len(f) != 2:
            raise line_error(path, number, f"expected 2 columns 'UTT SPK', got {len(f)}: {' '.join(f)!r}")
        utt = f[0]
        if utt not in audio:
            _unknown(utt, path, number, wav_scp)
        if utt in out:
            _twice("utterance", utt, path, number)
        out[utt] = speakers.setdefault(f[1], f[1])
    if len(out) != len(audio):
        lacking = next(u for u in audio if u not in out)
        raise line_error(wav_scp, line_of(wav_scp, lacking, 0, "wav.scp"),
                         f"utterance {lacking} has no speaker in {path}")
    return out


def read_utt2label(path: str | os.PathLike, audio: dict[str, str], speaker: dict[str, str],
                   wav_scp: str | os.PathLike) -> list[CMEntry]:
    """utt2label as CM entries: system '-' for bona fide, the ATTACK column for a spoof (`unknown` without one)."""
    entries = []
    seen: set[str] = set()
    for number, f in protocol_lines(path, "utt2label"):
        if len(f) not in (2, 3):
            raise line_error(path, number, f"expected 'UTT bonafide|spoof [ATTACK]', got {len(f)} columns: "
                                           f"{' '.join(f)!r}")
        utt, label = f[0], f[1]
        attack = f[2] if len(f) == 3 else None
        if utt not in audio:
            _unknown(utt, path, number, wav_scp)
        if label == BONAFIDE:
            if attack not in (None, "-", BONAFIDE):
                raise line_error(path, number, f"bona fide utterance {utt} has attack {attack!r}")
            system = "-"
        elif label == SPOOF:
            if attack in ("-", BONAFIDE):
                raise line_error(path, number, f"spoof utterance {utt} has attack {attack!r}; name the attack, "
                                               f"or leave the column out")
            system = attack or UNKNOWN_ATTACK
        else:
            raise line_error(path, number, f"unknown label {label!r}; expected 'bonafide' or 'spoof'")
        if utt in seen:
            _twice("utterance", utt, path, number)
        seen.add(utt)
        entries.append(CMEntry(speaker[utt], utt, system, BONAFIDE if label == BONAFIDE else SPOOF))
    if not entries:
        raise ProtocolError(f"{path}: utt2label lists no utterances")
    return entries


def read_spk2utt(path: str | os.PathLike, audio: dict[str, str], speaker: dict[str, str], wav_scp: str | os.PathLike,
                 utt2spk: str | os.PathLike) -> dict[str, list[str]]:
    """spk2utt as enrolment: claimed speaker -> enrolment utterances, each of that speaker by utt2spk."""
    out: dict[str, list[str]] = {}
    where: dict[str, int] = {}
    for number, f in protocol_lines(path, "spk2utt"):
        spk, utts = f[0], f[1:]
        if not utts:
            raise line_error(path, number, f"speaker {spk} has no enrolment utterances")
        if spk in out:
            raise line_error(path, number, f"speaker {spk} listed twice (first on line {where[spk]})")
        listed: set[str] = set()
        for utt in utts:
            if utt not in audio:
                _unknown(utt, path, number, wav_scp)
            if utt in listed:
                raise line_error(path, number, f"utterance {utt} listed twice for speaker {spk}")
            listed.add(utt)
            if speaker[utt] != spk:
                raise line_error(path, number, f"enrolment utterance {utt} of speaker {spk} is of speaker "
                                               f"{speaker[utt]} by {utt2spk}")
        out[spk], where[spk] = utts, number
    if not out:
        raise ProtocolError(f"{path}: spk2utt names no speakers")
    return out


def read_trials(path: str | os.PathLike, split: ListSplit, files: dict[str, Path]) -> list[SASVTrial]:
    """trials as SASV trials (attack: 'bonafide', or the test utterance's utt2label attack for a spoof)."""
    labels = {e.utt: e for e in split.entries}
    enrolled = {u: spk for spk, utts in split.enrolment.items() for u in utts}
    speaker, enrolment = split.speaker, split.enrolment
    claimed = {spk: spk for spk in enrolment}            # one string object per speaker and key, not one per line
    keys = {k: k for k in SASV_KEYS}
    trials = []
    seen: set[tuple[str, str]] = set()
    for number, f in protocol_lines(path, "trial list"):
        if len(f) != 3:
            raise line_error(path, number, f"expected 3 columns 'SPK UTT KEY', got {len(f)}: {' '.join(f)!r}")
        spk, utt, key = f
        entry = labels.get(utt)
        if entry is None:
            if utt not in split.audio:
                _unknown(utt, path, number, files[WAV_SCP])
            if utt in enrolled:
                raise line_error(path, number, f"test utterance {utt} is an enrolment utterance of speaker "
                                               f"{enrolled[utt]} in {files[SPK2UTT]}; spk2utt lists enrolment "
                                               f"utterances only (not every utterance of a speaker, as Kaldi's does)")
            raise line_error(path, number, f"test utterance {utt} has no CM label in {files[UTT2LABEL]}")
        utt, key, spk = entry.utt, keys.get(key, key), claimed.get(spk, spk)
        if key not in keys:
            raise line_error(path, number, f"unknown key {key!r}; expected 'target', 'nontarget' or 'spoof'")
        if spk not in claimed:
            raise line_error(path, number, f"speaker {spk} has no enrolment line in {files[SPK2UTT]}")
        if utt in enrolled:
            raise line_error(path, number, f"test utterance {utt} is an enrolment utterance of speaker "
                                           f"{enrolled[utt]} in {files[SPK2UTT]}; spk2utt lists enrolment "
                                           f"utterances only (not every utterance of a speaker, as Kaldi's does)")
        if (key == SPOOF) != (entry.key == SPOOF):
            raise line_error(path, number, f"key {key} but {files[UTT2LABEL]} labels {utt} {entry.key}")
        if key == TARGET and speaker[utt] != spk:
            raise line_error(path, number, f"target trial of speaker {spk}, but {utt} is of speaker "
                                           f"{speaker[utt]} by {files[UTT2SPK]}")
        if key == NONTARGET and speaker[utt] == spk:
            raise line_error(path, number, f"nontarget trial, but {utt} is of the claimed speaker {spk} by "
                                           f"{files[UTT2SPK]}")
        n = len(seen)
        seen.add((spk, utt))
        if len(seen) == n:
            first = next(k for k, g in protocol_lines(path, "trial list") if g[:2] == [spk, utt])
            raise line_error(path, number, f"trial '{spk} {utt}' listed twice (first on line {first})")
        trials.append(SASVTrial(spk, utt, entry.system if key == SPOOF else BONAFIDE, key))
    if not trials:
        raise ProtocolError(f"{path}: the trial list has no trials")
    return trials


def read_split(folder: str | os.PathLike) -> ListSplit:
    """Every list of one split folder, parsed and checked against each other (see the module docstring)."""
    files = {name: Path(folder) / name for name in FILES}
    has = {name: path.is_file() for name, path in files.items()}
    audio = read_wav_scp(files[WAV_SCP])
    speaker = read_utt2spk(files[UTT2SPK], audio, files[WAV_SCP])
    entries = read_utt2label(files[UTT2LABEL], audio, speaker, files[WAV_SCP]) if has[UTT2LABEL] else None
    if not has[TRIALS]:
        return ListSplit(audio, speaker, entries, None, None)
    for needed, what in ((UTT2LABEL, "the CM labels of its test utterances"), (SPK2UTT, "its enrolment")):
        if not has[needed]:
            raise MissingFilesError(f"{files[needed]}: does not exist; the trials of {folder} need {what} "
                                    f"(docs/datasets.md)")
    enrolment = read_spk2utt(files[SPK2UTT], audio, speaker, files[WAV_SCP], files[UTT2SPK])
    partial = ListSplit(audio, speaker, entries, enrolment, None)
    return partial._replace(trials=read_trials(files[TRIALS], partial, files))


class ListsDatabase:
    """Kaldi-style lists of a researcher's own corpus (`data.format: lists`), as data.databases.Database; see the
    module docstring. `splits` and `trial_splits` are what the folders hold now."""

    format, title = "lists", "Kaldi-style lists"
    concat_enrolment = False

    @classmethod
    def missing(cls, root: str | os.PathLike) -> list[str]:
        """Empty when at least one split folder holds wav.scp and utt2spk."""
        root = Path(root)
        if any((root / s / WAV_SCP).is_file() and (root / s / UTT2SPK).is_file() for s in SPLITS):
            return []
        return [f"{'/, '.join(SPLITS[:-1])}/ or {SPLITS[-1]}/ holding {WAV_SCP} and {UTT2SPK}"]

    def __init__(self, root: str | os.PathLike, enr_audio: str | os.PathLike | None = None):
        refuse_enr_audio(self.title, enr_audio)
        self.root = Path(root)
        self._parsed: dict[tuple, ListSplit] = {}
        self._latest: dict[str, ListSplit] = {}
        self._disjoint: set[tuple[int, ...]] = set()

    def __repr__(self) -> str:
        return f"ListsDatabase({str(self.root)!r})"

    def _has(self, split: str, name: str) -> bool:
        return (self.root / split / name).is_file()

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits with CM labels (utt2label)."""
        return tuple(s for s in SPLITS if self._has(s, WAV_SCP) and self._has(s, UTT2LABEL))

    @property
    def trial_splits(self) -> tuple[str, ...]:
        """Splits with SASV trials."""
        return tuple(s for s in SPLITS if self._has(s, WAV_SCP) and self._has(s, TRIALS))

    def _split(self, split: str) -> ListSplit:
        """The split's lists, parsed once while none of its files changes (their identities: file_identity.py)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        folder = self.root / split
        if not (folder / WAV_SCP).is_file():
            raise MissingFilesError(f"{folder / WAV_SCP}: does not exist; split {split} of the lists corpus "
                                    f"{self.root} needs it (docs/datasets.md)")
        key = (split, *(file_identity(folder / name) for name in FILES))
        if key not in self._parsed:
            self._parsed[key] = read_split(folder)
        self._latest[split] = self._parsed[key]
        return self._parsed[key]

    # ---- paths --------------------------------------------------------------------------------
    def audio_dir(self, split: str) -> Path:
        return self.root / split

    def audio(self, split: str, utt: str) -> Path:
        """The audio of an utterance by the split's wav.scp as last parsed (asked once per utterance: it does not
        stat the lists each time; `cm_entries`, `check_split` and the others do)."""
        parsed = self._latest.get(split) or self._split(split)
        return Path(parsed.audio[utt])

    def cm_protocol_path(self, split: str) -> Path:
        return self.root / split / UTT2LABEL

    def sasv_trials_path(self, split: str) -> Path:
        return self.root / split / TRIALS

    def enrolment_lists(self, split: str) -> list[Path]:
        return [self.root / split / SPK2UTT]

    # ---- parsed lists -------------------------------------------------------------------------
    def cm_entries(self, split: str) -> list[CMEntry]:
        entries = self._split(split).entries
        if entries is None:
            raise MissingFilesError(f"{self.cm_protocol_path(split)}: does not exist; split {split} has no CM labels "
                                    f"('UTT bonafide|spoof [ATTACK]', docs/datasets.md)")
        return list(entries)

    def sasv_trials(self, split: str) -> list[SASVTrial]:
        trials = self._split(split).trials
        if trials is None:
            raise MissingFilesError(f"{self.sasv_trials_path(split)}: does not exist; split {split} has no SASV "
                                    f"trials ('SPK UTT target|nontarget|spoof', docs/datasets.md)")
        return list(trials)

    def enrolment(self, split: str) -> dict[str, list[str]]:
        enrolment = self._split(split).enrolment
        if enrolment is None:
            raise MissingFilesError(f"{self.root / split / TRIALS}: does not exist; split {split} has no SASV "
                                    f"trials to enrol speakers for (docs/datasets.md)")
        return {spk: list(utts) for spk, utts in enrolment.items()}

    def protocol_files(self, splits: Sequence[str], concat: bool = False) -> list[Path]:
        """Every list file of the splits (wav.scp included: it decides which audio an id is)."""
        return [self.root / s / name for s in splits for name in FILES if self._has(s, name)]

    # ---- whole-split helpers ------------------------------------------------------------------
    def utterances(self, split: str) -> list[str]:
        """The utterances of utt2label, then the enrolment utterances; file order, each once."""
        ids = [e.utt for e in self.cm_entries(split)]
        enrolment = self._split(split).enrolment
        for utts in (enrolment or {}).values():
            ids.extend(utts)
        return list(dict.fromkeys(ids))

    def check_disjoint(self) -> None:
        """No audio file is listed in two splits (it would be trained on and tested, or tuned and tested on)."""
        present = [s for s in SPLITS if self._has(s, WAV_SCP)]
        parsed = [self._split(s) for s in present]
        done = tuple(map(id, parsed))            # checked already for these very lists (the stages ask per split)
        if len(present) < 2 or done in self._disjoint:
            return
        owner: dict[str, str] = {}
        for split, lists in zip(present, parsed, strict=True):
            for utt, audio in lists.audio.items():
                other = owner.setdefault(audio, split)
                if other != split:
                    here = self.root / split / WAV_SCP
                    first = next(u for u, a in self._split(other).audio.items() if a == audio)
                    raise line_error(here, line_of(here, utt, 0, "wav.scp"),
                                     f"audio {audio} is also listed in {self.root / other / WAV_SCP}:"
                                     f"{line_of(self.root / other / WAV_SCP, first, 0, 'wav.scp')} (split {other}); "
                                     f"a file in two splits would be trained or tuned on and tested")
        self._disjoint.add(done)

    def check_split(self, split: str, enr_audio: bool = False) -> list[str]:
        """The split's lists parse and agree, no audio file is in two splits, and every audio file the split uses
        exists (else one line naming wav.scp and the line); returns the utterance ids (see `utterances`)."""
        ids = self.utterances(split)
        self.check_disjoint()
        wav_scp = self.root / split / WAV_SCP
        audio = self._split(split).audio
        check_listed_files(((u, audio[u]) for u in ids), "audio", lambda utt: (wav_scp, line_of(wav_scp, utt, 0)))
        return ids
