"""What the readers of countermeasure-only evaluation sets share (ASVspoof 2021 LA / DF, In-the-Wild): the
Database calls that have no answer there (SASV trials, enrolment) refused in one line, and the whole-split
helpers written once.

Why a base class: these layouts differ only in where the labels and the audio are and how a label line reads;
what a CM-only layout says when asked for speaker-verification trials, and how a split is checked before any
compute (labels parse, every audio file the labels name exists, else `LIST:LINE: audio ... does not exist`),
must be the same for all of them.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from common.errors import InputError
from data.asvspoof import CMEntry, ParseCache, SASVTrial, check_listed_files

log = logging.getLogger(__name__)


def refuse_enr_audio(title: str, enr_audio: str | os.PathLike | None) -> None:
    """`enr_audio` names concatenated enrolment recordings; a layout without them refuses the key rather than
    record an input it never reads."""
    if enr_audio is not None:
        raise InputError(f"enr_audio: {title} has no concatenated enrolment recordings (enrolment: concat is "
                         f"ASVspoof 2019 LA's); unset enr_audio")


def report_unknown(values: Iterable[str], documented: Sequence[str], what: str, path: str | os.PathLike
                   ) -> dict[str, int]:
    """Logs, once per parse, the values of a condition column outside the set the organisers document (accepted:
    a newer release may add one; a typo shows up here). Returns them with their counts (of lines)."""
    known = set(documented)
    unknown = {v: n for v, n in Counter(values).items() if v not in known}
    if unknown:
        shown = ", ".join(f"{v!r} ({n})" for v, n in sorted(unknown.items())[:6]) + (" ..." if len(unknown) > 6 else "")
        log.warning(f"{path}: {what} outside the documented set ({', '.join(documented)}): {shown}; "
                    f"accepted, reported as they are")
    return dict(unknown)


class CMOnlyDatabase:
    """Base of the CM-only layout readers (data.databases.Database with no SASV trials). A subclass sets
    `format`, `title`, `splits`, and implements `missing`, `audio_dir`, `audio`, `cm_protocol_path`,
    `cm_entries` and `_where` (the list file and line that name an utterance)."""

    format: str
    title: str
    splits: tuple[str, ...]
    trial_splits: tuple[str, ...] = ()
    concat_enrolment = False

    def __init__(self, root: str | os.PathLike, enr_audio: str | os.PathLike | None = None):
        refuse_enr_audio(self.title, enr_audio)
        self.root = Path(root)
        self._read = ParseCache()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def _check(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} of {self.title}; choose one of {', '.join(self.splits)}")

    def _where(self, split: str, utt: str) -> tuple[Path, int]:
        raise NotImplementedError

    # ---- no speaker verification here ---------------------------------------------------------
    def _no_trials(self, split: str):
        raise InputError(f"{self.root}: {self.title} (data.format {self.format}) is a countermeasure-only set: it "
                         f"has no SASV trials or enrolment for split {split!r}; use it with task cm "
                         f"(docs/datasets.md)")

    def sasv_trials_path(self, split: str) -> Path:
        self._no_trials(split)

    def sasv_trials(self, split: str) -> list[SASVTrial]:
        self._no_trials(split)

    def enrolment_lists(self, split: str) -> list[Path]:
        self._no_trials(split)

    def enrolment(self, split: str) -> dict[str, list[str]]:
        self._no_trials(split)

    # ---- whole-split helpers ------------------------------------------------------------------
    def protocol_files(self, splits: Sequence[str], concat: bool = False) -> list[Path]:
        """The label files the splits are read from (one file holds every split of these layouts)."""
        return list(dict.fromkeys(self.cm_protocol_path(s) for s in splits))

    def utterances(self, split: str) -> list[str]:
        """The utterances of the split's labels, in file order."""
        return [e.utt for e in self.cm_entries(split)]

    def cm_entries(self, split: str) -> list[CMEntry]:
        raise NotImplementedError

    def cm_protocol_path(self, split: str) -> Path:
        raise NotImplementedError

    def audio(self, split: str, utt: str) -> Path:
        raise NotImplementedError

    def check_split(self, split: str, enr_audio: bool = False) -> list[str]:
        """The labels of the split parse, and every audio file they name exists (else one line naming the label
        file and line of the first missing one); returns the utterance ids. `enr_audio` has no meaning here."""
        ids = self.utterances(split)
        check_listed_files(((u, self.audio(split, u)) for u in ids), "audio",
                           lambda utt: self._where(split, utt))
        return ids
