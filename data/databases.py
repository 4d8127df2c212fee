"""Which corpus layout a `database` folder holds, and the one interface every layout reader gives the pipeline.

Every stage, recipe and tool sees a corpus through `Database`: where an utterance's audio is, the CM labels of
a split (`cm_entries`), its SASV trials and enrolment. One reader module per layout implements it (`LADatabase`
in data/asvspoof.py for ASVspoof 2019 LA, `ASVspoof5Database` in data/asvspoof5.py for ASVspoof 5, ...), and
`FORMATS` below names them: `data.format` in a config chooses one, or `auto` takes the one layout the folder fits
(`detect_format`), so a wrong folder is one line saying, per layout, what was expected and what is missing.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, Sequence

from common.config import Rule
from common.errors import InputError
from data.asvspoof import CMEntry, LADatabase, SASVTrial
from data.asvspoof5 import ASVspoof5Database
from data.asvspoof2021 import DF2021Database, LA2021Database
from data.in_the_wild import InTheWildDatabase
from data.kaldi_lists import ListsDatabase

log = logging.getLogger(__name__)


class Database(Protocol):
    """A corpus as the pipeline reads it. Ids are names (data/names.py); `split` is one of `splits`."""

    format: str                     # its key in FORMATS
    title: str                      # for messages: "ASVspoof 2019 LA"
    root: Path
    splits: tuple[str, ...]         # splits with CM labels
    trial_splits: tuple[str, ...]   # splits with SASV trials and enrolment (may be none)
    concat_enrolment: bool          # has the concatenated enrolment recordings (`enrolment: concat`)

    def audio_dir(self, split: str) -> Path: ...
    def audio(self, split: str, utt: str) -> Path: ...
    def cm_protocol_path(self, split: str) -> Path: ...
    def cm_entries(self, split: str) -> list[CMEntry]: ...
    def sasv_trials_path(self, split: str) -> Path: ...
    def sasv_trials(self, split: str) -> list[SASVTrial]: ...
    def enrolment_lists(self, split: str) -> list[Path]: ...
    def enrolment(self, split: str) -> dict[str, list[str]]: ...
    def protocol_files(self, splits: Sequence[str], concat: bool = False) -> list[Path]: ...
    def utterances(self, split: str) -> list[str]: ...
    def check_split(self, split: str, enr_audio: bool = False) -> list[str]: ...


# name -> reader class, built as `Reader(root, enr_audio)` (enr_audio: only where `concat_enrolment`); each has the
# class method `missing(root) -> list[str]`: what of its layout a folder lacks (empty: the folder fits it); a reader
# whose layout accepts several names for one file may have `layout_notes() -> list[str]`, saying which it reads
FORMATS: dict[str, type] = {
    "asvspoof2019_la": LADatabase,
    "asvspoof5": ASVspoof5Database,
    "asvspoof2021_la": LA2021Database,
    "asvspoof2021_df": DF2021Database,
    "in_the_wild": InTheWildDatabase,
    "lists": ListsDatabase,
}
FORMAT_CHOICES = ("auto", *FORMATS)
FORMAT = Rule("auto", choices=FORMAT_CHOICES)     # the `data.format` key of every config that reads a corpus


def detect_format(root: str | os.PathLike) -> str:
    """The one layout `root` fits; one line otherwise: per layout, what it expects and what is missing (or which
    layouts fit when several do)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"database {root}: " + ("is a file, not a folder" if root.exists() else "does not exist"))
    lacking = {name: reader.missing(root) for name, reader in FORMATS.items()}
    fits = [name for name, missing in lacking.items() if not missing]
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise InputError(f"database {root}: fits several layouts ({', '.join(fits)}); set data.format to one of them")
    shown = "; ".join(f"{name}: no {', '.join(missing[:2])}" + (" ..." if len(missing) > 2 else "")
                      for name, missing in lacking.items())
    raise InputError(f"database {root}: matches no known layout ({shown}); set data.format, or see docs/datasets.md")


def open_database(root: str | os.PathLike, format: str = "auto", enr_audio: str | os.PathLike | None = None
                  ) -> Database:
    """The reader of `root`: `format` as named, or the one layout the folder fits (`auto`)."""
    if format not in FORMAT_CHOICES:
        raise InputError(f"data.format must be one of {', '.join(FORMAT_CHOICES)}, got {format!r}")
    return FORMATS[detect_format(root) if format == "auto" else format](root, enr_audio)


_SAID: set[tuple[str, str]] = set()


def say_layout(db: Database) -> None:
    """Logs which layout a corpus is read as, once per process (results.json records it too): called when work
    starts, not by the checks, so that a refused run prints its one error line alone."""
    key = (str(db.root), db.format)
    if key not in _SAID:
        _SAID.add(key)
        log.info(f"database {db.root}: read as {db.title} (data.format {db.format})")
        for note in getattr(db, "layout_notes", list)():
            log.info(note)
