"""VoxCeleb train and trial lists (voxceleb_trainer formats) and the corpus folder that holds them.

Layout: `<root>/wav/idNNNNN/VIDEO/NNNNN.wav`, `<root>/train_list.txt` (`id00012 id00012/21Uxsk56VDQ/00001.wav`),
`<root>/veri_test.txt` (`1 id1/v/00001.wav id2/v/00002.wav`). Paths in the lists are relative to `wav/`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data.asvspoof import MissingFilesError, RepeatCheck, check_files_exist, line_error, protocol_lines

__all__ = ["VoxTrainEntry", "VoxTrial", "VoxCeleb", "read_train_list", "read_trial_list", "speaker_index",
           "MissingFilesError", "check_files_exist"]


@dataclass(frozen=True, slots=True)
class VoxTrainEntry:
    """One line `SPK REL_PATH` of a train list."""

    speaker: str
    path: str  # relative to <root>/wav


@dataclass(frozen=True, slots=True)
class VoxTrial:
    """One line `LABEL ENROL TEST` of a trial list; label 1 = same speaker."""

    label: int
    enrol: str
    test: str


def read_train_list(path: str | os.PathLike) -> list[VoxTrainEntry]:
    """Parses a train list, in file order."""
    out = []
    seen = RepeatCheck(path, "file")
    for number, f in protocol_lines(path, "train list"):
        if len(f) != 2:
            raise line_error(path, number, f"expected 2 columns 'SPK PATH', got {len(f)}: {' '.join(f)!r}")
        seen.check(f[1], number, f[1])
        out.append(VoxTrainEntry(f[0], f[1]))
    return out


def read_trial_list(path: str | os.PathLike) -> list[VoxTrial]:
    """Parses a trial list, in file order."""
    out = []
    seen = RepeatCheck(path, "trial")
    for number, f in protocol_lines(path, "trial list"):
        if len(f) != 3:
            raise line_error(path, number, f"expected 3 columns 'LABEL ENROL TEST', got {len(f)}: {' '.join(f)!r}")
        if f[0] not in ("0", "1"):
            raise line_error(path, number, f"unknown label {f[0]!r}; expected 0 or 1")
        seen.check((f[1], f[2]), number, f"'{f[1]} {f[2]}'")
        out.append(VoxTrial(int(f[0]), f[1], f[2]))
    return out


def speaker_index(speakers: Sequence[str]) -> dict[str, int]:
    """Speaker id -> class index, by sorted id (voxceleb_trainer convention, stable across list orderings)."""
    return {spk: i for i, spk in enumerate(sorted(set(speakers)))}


class VoxCeleb:
    """A VoxCeleb folder in the voxceleb_trainer layout."""

    def __init__(self, root: str | os.PathLike, train_list: str | os.PathLike | None = None,
                 trial_list: str | os.PathLike | None = None):
        self.root = Path(root)
        self.wav_dir = self.root / "wav"
        self.train_list_path = Path(train_list) if train_list is not None else self.root / "train_list.txt"
        self.trial_list_path = Path(trial_list) if trial_list is not None else self.root / "veri_test.txt"

    def __repr__(self) -> str:
        return f"VoxCeleb({str(self.root)!r})"

    def wav(self, rel: str) -> Path:
        return self.wav_dir / rel

    def train_entries(self) -> list[VoxTrainEntry]:
        return read_train_list(self.train_list_path)

    def train_set(self, check: bool = True) -> tuple[list[Path], list[int], dict[str, int]]:
        """(audio paths, speaker labels, speaker -> label) of the train list; checks the files exist first."""
        entries = self.train_entries()
        if not entries:
            raise ValueError(f"{self.train_list_path}: train list is empty")
        index = speaker_index([e.speaker for e in entries])
        paths = [self.wav(e.path) for e in entries]
        if check:
            check_files_exist(paths, f"VoxCeleb train audio listed in {self.train_list_path}")
        return paths, [index[e.speaker] for e in entries], index

    def trials(self) -> list[VoxTrial]:
        return read_trial_list(self.trial_list_path)

    def trial_files(self, check: bool = True) -> list[str]:
        """Unique relative paths a trial list needs, in first-use order; checks the files exist first."""
        rels = list(dict.fromkeys(r for t in self.trials() for r in (t.enrol, t.test)))
        if check:
            check_files_exist((self.wav(r) for r in rels), f"VoxCeleb audio listed in {self.trial_list_path}")
        return rels
