"""In-the-Wild (Müller et al., "Does audio deepfake detection generalize?", Interspeech 2022) as
data.databases.Database (`data.format: in_the_wild`): the official release folder `release_in_the_wild/`, with

    meta.csv      `file,speaker,label`: `0.wav,Alec Guinness,spoof`; label `bona-fide` or `spoof`
    0.wav ...     the audio, beside meta.csv

`database` may name the release folder or the folder that holds it. One split, `eval`, CM-only.

What is read from each column:
- file: the utterance id is the name without `.wav` (`0`); the audio is `<folder>/<file>`.
- speaker: kept (papers report results per speaker); the names hold spaces, which every whitespace-separated list
  and score file of the toolkit would split, so each run of whitespace becomes `_` (`Alec_Guinness`).
- label: `bona-fide` -> key `bonafide` (system `-`); `spoof` -> key `spoof`. The release names no attack or
  synthesis system, so every spoof gets the attack `unknown` (data.trial_kinds.UNKNOWN_ATTACK): per-attack results
  have one row, equal to the pooled one, instead of an invented breakdown.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Iterator

from common.errors import ProtocolError, line_error
from common.io import text_lines
from data.asvspoof import CMEntry, RepeatCheck
from data.cm_only import CMOnlyDatabase
from data.names import check_name
from data.trial_kinds import BONAFIDE, SPOOF, UNKNOWN_ATTACK

RELEASE = "release_in_the_wild"
META = "meta.csv"
COLUMNS = ("file", "speaker", "label")
LABELS = {"bona-fide": BONAFIDE, "spoof": SPOOF}
SPLITS = ("eval",)
_SPACE = re.compile(r"\s+")


def meta_rows(path: str | os.PathLike) -> Iterator[tuple[int, str, str, str]]:
    """(line number, file, speaker, label) of each row of meta.csv, by the header's column names (the release's
    order is file,speaker,label; any order works, extra columns are ignored)."""
    lines = (line for _, line in text_lines(path, "metadata file"))
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ProtocolError(f"{path}: the metadata file is empty; expected the header 'file,speaker,label'")
    header = [h.strip() for h in header]
    lacking = [c for c in COLUMNS if c not in header]
    if lacking:
        raise line_error(path, 1, f"the header {','.join(header)!r} lacks {', '.join(lacking)}; "
                                  f"expected 'file,speaker,label'")
    at = [header.index(c) for c in COLUMNS]
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise line_error(path, reader.line_num, f"expected {len(header)} comma-separated columns "
                                                    f"({','.join(header)}), got {len(row)}")
        yield reader.line_num, *(row[i].strip() for i in at)


def read_meta(path: str | os.PathLike) -> list[CMEntry]:
    """meta.csv as CM entries, in file order (see the module docstring for what each column becomes)."""
    entries = []
    seen = RepeatCheck(path, "file")
    for number, file, speaker, label in meta_rows(path):
        if not file.endswith(".wav"):
            raise line_error(path, number, f"file {file!r} is not a .wav file name")
        utt = check_name(file[:-4], path, number)
        if label not in LABELS:
            raise line_error(path, number, f"unknown label {label!r}; expected 'bona-fide' or 'spoof'")
        spk = _SPACE.sub("_", speaker)
        if not spk:
            raise line_error(path, number, f"file {file} has no speaker")
        key = LABELS[label]
        seen.check(utt, number, file)
        entries.append(CMEntry(spk, utt, "-" if key == BONAFIDE else UNKNOWN_ATTACK, key))
    if not entries:
        raise ProtocolError(f"{path}: the metadata file lists no files")
    return entries


class InTheWildDatabase(CMOnlyDatabase):
    """The In-the-Wild release (`data.format: in_the_wild`); see the module docstring."""

    format, title = "in_the_wild", "In-the-Wild"
    splits = SPLITS

    @staticmethod
    def release_folder(root: str | os.PathLike) -> Path:
        """The folder that holds meta.csv: `root` itself, or `root/release_in_the_wild`."""
        root = Path(root)
        return root / RELEASE if not (root / META).is_file() and (root / RELEASE / META).is_file() else root

    @classmethod
    def missing(cls, root: str | os.PathLike) -> list[str]:
        return [] if (cls.release_folder(root) / META).is_file() else [f"{META} (or {RELEASE}/{META})"]

    def audio_dir(self, split: str) -> Path:
        self._check(split)
        return self.release_folder(self.root)

    def audio(self, split: str, utt: str) -> Path:
        return self.audio_dir(split) / f"{utt}.wav"

    def cm_protocol_path(self, split: str) -> Path:
        return self.audio_dir(split) / META

    def cm_entries(self, split: str) -> list[CMEntry]:
        return list(self._read(self.cm_protocol_path(split), read_meta))

    def _where(self, split: str, utt: str) -> tuple[Path, int]:
        path = self.cm_protocol_path(split)
        return path, next((n for n, file, _, _ in meta_rows(path) if file == f"{utt}.wav"), 0)
