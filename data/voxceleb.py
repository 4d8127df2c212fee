"""VoxCeleb train and trial lists (voxceleb_trainer formats) and the corpus folders that hold them.

Layout: `<root>/wav/idNNNNN/VIDEO/NNNNN.wav`, `<root>/train_list.txt` (`id00012 id00012/21Uxsk56VDQ/00001.wav`),
`<root>/veri_test.txt` (`1 id1/v/00001.wav id2/v/00002.wav`). Paths in the lists are relative to `wav/` and
must stay inside it: names joined by '/' (data/names.py). An empty list is an error naming the file.

The trials may live in another folder than the training data (`trial_root`: a VoxCeleb1 root whose `wav/` holds
the trial audio and which holds the official lists), and the official VoxCeleb1 lists are chosen by name
(`TRIAL_LISTS`): the `data.trial_list` key of task asv and task sasv_e2e is one of those names or a path.
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from common.config import Rule
from common.errors import InputError, MissingFilesError, ProtocolError, line_error
from data.asvspoof import RepeatCheck, check_files_exist, protocol_lines
from data.names import check_relative_path
from data.pathlist import PathList

__all__ = ["VoxTrainEntry", "VoxTrial", "VoxCeleb", "read_train_list", "iter_train_list", "read_trial_list",
           "speaker_index", "MissingFilesError", "check_files_exist", "TRIAL_LISTS", "TRIAL_LIST"]

# The official VoxCeleb1 verification lists by the names papers give them, each a file of the VoxCeleb site
# (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/<file>), `LABEL ENROL TEST` lines with paths under wav/.
# The cleaned lists (`...2.txt`) drop the trials of mislabelled files; published VoxCeleb1-O, -E and -H results
# use them. O is the 40 test speakers of VoxCeleb1; E and H pair files of all 1,251 speakers, so they need the dev
# and test audio of VoxCeleb1 in one wav/ folder and a model trained without VoxCeleb1 (VoxCeleb2 dev).
TRIAL_LISTS: dict[str, str] = {
    "O": "veri_test.txt",             # 37,720 trials (18,860 target)
    "O-clean": "veri_test2.txt",      # 37,611 trials (18,802 target)
    "E": "list_test_all.txt",         # 581,480 trials (290,743 target)
    "E-clean": "list_test_all2.txt",  # 579,818 trials (289,921 target)
    "H": "list_test_hard.txt",        # 552,536 trials (276,270 target); same nationality and gender
    "H-clean": "list_test_hard2.txt", # 550,894 trials (275,488 target)
}
DEFAULT_TRIAL_LIST = "O"              # what a config without data.trial_list has always read: <root>/veri_test.txt
# data.trial_list: one of TRIAL_LISTS, in the trial root, or the path of a list file (null: O)
TRIAL_LIST = Rule(None, kind=str, nonempty=True)


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


def read_train_list(path: str | os.PathLike, wav_dir: str | os.PathLike = "wav/") -> list[VoxTrainEntry]:
    """Parses a train list, in file order (`wav_dir`: see `iter_train_list`)."""
    out = []
    seen = RepeatCheck(path, "file")
    for number, speaker, rel in iter_train_list(path, wav_dir):
        seen.check(rel, number, rel)
        out.append(VoxTrainEntry(speaker, rel))
    return out


def iter_train_list(path: str | os.PathLike, wav_dir: str | os.PathLike = "wav/") -> Iterator[tuple[int, str, str]]:
    """(line number, speaker, relative path) of each line, in file order, read as a stream; `wav_dir` (what the
    paths are relative to) is only named in errors. A list without a line is an error once the stream ends.

    Repeated paths are not checked here (that needs memory per line): callers do it, see `VoxCeleb.train_set`."""
    lines = 0
    for number, f in protocol_lines(path, "train list"):
        if len(f) != 2:
            raise line_error(path, number, f"expected 2 columns 'SPK PATH', got {len(f)}: {' '.join(f)!r}")
        lines += 1
        yield number, f[0], check_relative_path(f[1], path, number, wav_dir)
    if not lines:
        raise ProtocolError(f"{path}: train list is empty")


def read_trial_list(path: str | os.PathLike, wav_dir: str | os.PathLike = "wav/") -> list[VoxTrial]:
    """Parses a trial list, in file order (`wav_dir`: see `iter_train_list`)."""
    out = []
    seen = RepeatCheck(path, "trial")
    for number, f in protocol_lines(path, "trial list"):
        if len(f) != 3:
            raise line_error(path, number, f"expected 3 columns 'LABEL ENROL TEST', got {len(f)}: {' '.join(f)!r}")
        if f[0] not in ("0", "1"):
            raise line_error(path, number, f"unknown label {f[0]!r}; expected 0 or 1")
        check_relative_path(f[1], path, number, wav_dir)
        check_relative_path(f[2], path, number, wav_dir)
        seen.check((f[1], f[2]), number, f"'{f[1]} {f[2]}'")
        out.append(VoxTrial(int(f[0]), f[1], f[2]))
    if not out:
        raise ProtocolError(f"{path}: the trial list has no trials")
    return out


def speaker_index(speakers: Sequence[str]) -> dict[str, int]:
    """Speaker id -> class index, by sorted id (voxceleb_trainer convention, stable across list orderings)."""
    return {spk: i for i, spk in enumerate(sorted(set(speakers)))}


class VoxCeleb:
    """A VoxCeleb folder in the voxceleb_trainer layout: training data under `root`, trials under `trial_root`
    (default `root`). `trial_list`: a name of `TRIAL_LISTS` (the file of that name in `trial_root`), the path of a
    list file, or None (`O`: veri_test.txt)."""

    def __init__(self, root: str | os.PathLike, train_list: str | os.PathLike | None = None,
                 trial_list: str | os.PathLike | None = None, trial_root: str | os.PathLike | None = None):
        self.root = Path(root)
        self.wav_dir = self.root / "wav"
        self.train_list_path = Path(train_list) if train_list is not None else self.root / "train_list.txt"
        self.trial_root = Path(trial_root) if trial_root is not None else self.root
        self.trial_wav_dir = self.trial_root / "wav"
        chosen = DEFAULT_TRIAL_LIST if trial_list is None else trial_list
        self.trial_list_name = chosen if isinstance(chosen, str) and chosen in TRIAL_LISTS else None
        self.trial_list_path = (self.trial_root / TRIAL_LISTS[self.trial_list_name] if self.trial_list_name
                                else Path(chosen))

    @classmethod
    def from_data_section(cls, data: Mapping) -> VoxCeleb:
        """The folder a recipe's `data` section names (`voxceleb`, `train_list`, `trial_list`, `trial_root`)."""
        return cls(data["voxceleb"], data["train_list"], data["trial_list"], data.get("trial_root"))

    def __repr__(self) -> str:
        return f"VoxCeleb({str(self.root)!r})"

    @property
    def trial_list_title(self) -> str:
        """The trial list as results and logs name it: 'VoxCeleb1-O-clean (<path>)' or '<path> (VoxCeleb trial
        list)'."""
        if self.trial_list_name:
            return f"VoxCeleb1-{self.trial_list_name} ({self.trial_list_path})"
        return f"{self.trial_list_path} (VoxCeleb trial list)"

    def wav(self, rel: str) -> Path:
        return self.wav_dir / rel

    def train_entries(self) -> list[VoxTrainEntry]:
        return read_train_list(self.train_list_path, self.wav_dir)

    def train_set(self, check: bool = True) -> tuple[PathList, list[int], dict[str, int]]:
        """(audio paths, speaker labels, speaker -> label) of the train list; checks the files exist first.

        Built in one pass over the list without an object per line: the paths are a `PathList` (a sequence of
        `Path` under `wav/` held as one byte buffer) and each distinct speaker id is one string. At VoxCeleb2 size
        (1.09 M lines) that is ~50 MB instead of ~0.5 GB of Path objects (docs/benchmarks.md)."""
        speakers: list[str] = []
        distinct: dict[str, str] = {}
        line_numbers, path_hashes = array("q"), array("q")

        def relative_paths() -> Iterator[str]:
            for number, spk, rel in iter_train_list(self.train_list_path, self.wav_dir):
                speakers.append(distinct.setdefault(spk, spk))
                line_numbers.append(number)
                path_hashes.append(hash(rel))
                yield rel

        paths = PathList(self.wav_dir, relative_paths())
        _check_no_repeats(self.train_list_path, paths, np.frombuffer(path_hashes, np.int64),
                          np.frombuffer(line_numbers, np.int64))
        index = speaker_index(distinct)
        labels = [index[s] for s in speakers]
        if check:
            check_files_exist(paths.strings(), f"VoxCeleb train audio listed in {self.train_list_path}")
        return paths, labels, index

    def trial_wav(self, rel: str) -> Path:
        return self.trial_wav_dir / rel

    def trials(self) -> list[VoxTrial]:
        """The trial list, parsed; a missing list is one line naming the key's value, the file and the names."""
        if not self.trial_list_path.is_file():
            raise MissingFilesError(self._missing_list())
        return read_trial_list(self.trial_list_path, self.trial_wav_dir)

    def trial_files(self, check: bool = True) -> list[str]:
        """Unique relative paths a trial list needs, in first-use order; checks the files exist first."""
        rels = list(dict.fromkeys(r for t in self.trials() for r in (t.enrol, t.test)))
        if check:
            where = f"VoxCeleb audio listed in {self.trial_list_path}"
            if self.trial_list_name and self.trial_list_name[0] in "EH":
                where += (f" (VoxCeleb1-{self.trial_list_name[0]} needs the dev and test audio of VoxCeleb1 in "
                          f"{self.trial_wav_dir})")
            check_files_exist((self.trial_wav(r) for r in rels), where)
        return rels

    def check_disjoint(self, train_speakers: Iterable[str], trial_files: Iterable[str]) -> None:
        """Refuses a trial list whose speakers (the first folder of its `trial_files`, VoxCeleb's speaker id) are
        training speakers: its EER would be measured on voices the model learnt, e.g. VoxCeleb1-E or -H after
        training on VoxCeleb1 dev. One line naming both lists and a few of the speakers."""
        tested = {rel.split("/", 1)[0] for rel in trial_files if "/" in rel}
        shared = sorted(tested.intersection(train_speakers))
        if shared:
            shown = ", ".join(shared[:3]) + (", ..." if len(shared) > 3 else "")
            raise InputError(f"{self.trial_list_path}: {len(shared)} of its {len(tested)} speakers ({shown}) are "
                             f"training speakers of {self.train_list_path}; scores on them would not measure "
                             f"verification of unseen voices (VoxCeleb1-E and -H take all of VoxCeleb1: train without "
                             f"it, e.g. on VoxCeleb2 dev)")

    def _missing_list(self) -> str:
        if self.trial_list_name:
            file = TRIAL_LISTS[self.trial_list_name]
            return (f"data.trial_list {self.trial_list_name}: {self.trial_list_path} does not exist; put the "
                    f"VoxCeleb1-{self.trial_list_name} list (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/"
                    f"{file}) there, or set data.trial_root to the folder that holds it")
        return (f"data.trial_list {self.trial_list_path}: no such file (a name is one of "
                f"{', '.join(TRIAL_LISTS)}: the official VoxCeleb1 lists in the trial root)")


def _check_no_repeats(path: Path, paths: PathList, hashes: np.ndarray, line_numbers: np.ndarray) -> None:
    """The RepeatCheck rule (a repeated file is an error naming both lines) in 16 bytes per line instead of a
    dict of a million strings: equal hashes are found by sorting, then confirmed on the paths themselves."""
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    repeats = []
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    stops = np.r_[starts[1:], len(order)]
    shared = stops - starts > 1           # equal hashes: the same path, or (rarely) a hash collision
    for start, stop in zip(starts[shared].tolist(), stops[shared].tolist(), strict=True):
        first_line: dict[str, int] = {}
        for i in sorted(order[start:stop].tolist()):
            rel = paths.relative(i)
            if rel in first_line:
                repeats.append((int(line_numbers[i]), first_line[rel], rel))
            else:
                first_line[rel] = int(line_numbers[i])
    if repeats:
        number, first, rel = min(repeats)
        raise line_error(path, number, f"file {rel} listed twice (first on line {first})")
