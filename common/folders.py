"""Which folders and files a run may write, move or replace: only what a run of this toolkit wrote.

A config value is enough to point a run at the wrong place: `output_dir` set to a database root, an empty
`output_dir` (the current folder: from the repository root, the repository), `verify.py --out` naming the
very list it reads. Each of those once moved or replaced a user's files with exit 0. The rules here make them
one-line errors before anything is written:

- `check_output_folder`: a folder a run writes must be named (never empty), and be new, empty, or a folder a
  toolkit run wrote (`is_run_folder`). A folder holding anything else is refused: the run could overwrite the
  user's files in it, and `--overwrite` would move them.
- `move_aside` (`--overwrite`, the demo's redone steps): moves a previous run into `replaced-<time>/`, and only
  when every entry is one a run writes (`RUN_OUTPUTS`); anything else in the folder stops it, naming the entry.
- `check_inputs_kept`: no output of a command may be one of its own inputs (a file it reads, or a file inside
  a folder it moves aside).
"""
from __future__ import annotations

import datetime
import fnmatch
import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from common.errors import InputError
from common.io import is_stale_temporary, writing

LOCK_NAME = ".sasv-run.lock"          # every folder a run writes holds it (common/locking.py)
STARTED, RESULTS = "started.json", "results.json"
REPLACED_PREFIX = "replaced-"

# Every name a run of the toolkit writes at the top of its output folder (main.py's tasks, the stage scripts,
# the demo's step folders). `move_aside` moves only these; tests/test_folders.py checks that every task's
# output folder holds nothing else, so a new output file must be added here.
RUN_OUTPUTS = (
    "config.yaml", "results.json", "results.previous.json", STARTED,        # the run's record (common/runs.py)
    "scores", "embeddings", "det_*.png", "backend_state.json",              # the SASV stages
    "backend.pt", "backend_train", "joint_train", "asv_finetuned.pt", "cm_finetuned.pt",   # task sasv
    "last.pt", "best.pt", "train_log.csv", "epoch_log.csv",                 # the training engine
    "asv_model.pt", "cm_model.pt", "sasv_embedding.pt",                     # tasks asv, cm, sasv_e2e
    "ablation",                                                             # ablate.py's default folder
)
EMBEDDING_CACHES = ("asv_*.npz", "cm_*.npz")   # what the stages write into an embeddings folder
# The records of the toolkit's writers of data folders (synthetic.layout.MANIFEST, data.vocoders.MANIFEST_NAME)
TOOL_RECORDS = ("synthetic_corpus.json", ".synthetic_corpus.incomplete", "copy_synthesis.json")


def check_output_path(path: str | os.PathLike | None, key: str) -> Path:
    """`path` (config key or flag `key`) as a folder to write: named (an empty path would be the current folder)
    and not a file. The checks of every entry point and stage call it; `check_output_folder` adds ownership."""
    if path is None or not str(path).strip():
        raise InputError(f"{key} is empty: name the folder (an empty path means the current folder, {Path.cwd()}, "
                         f"and would write into it)")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{key} {folder}: is a file, not a folder")
    return folder


def check_output_folder(path: str | os.PathLike | None, key: str) -> Path:
    """`path` as a folder a run starts writing: named, and new, empty or written by a toolkit run (one line
    naming `key` otherwise). common.locking.hold_folders calls it for every folder an entry point locks, so it
    holds for every entry point; subfolders a run makes under its lock (the demo's steps, ablation systems)
    are its own. Returns it as a Path."""
    folder = check_output_path(path, key)
    if folder.is_dir() and not is_run_folder(folder):
        entries = sorted(e.name for e in os.scandir(folder))
        if entries:
            raise InputError(f"{key} {folder}: holds files that no run of this toolkit wrote ({_first(entries)}); "
                             f"a run writes and replaces files in its folder: choose a new or empty folder")
    return folder


def is_run_folder(folder: str | os.PathLike) -> bool:
    """Whether a run of this toolkit wrote `folder`: it holds the lock file every run takes on the folders it
    writes, or a record of a tool that writes without it (a synthetic corpus, a copy-synthesis output) or of a
    run made before there was one (started.json, a results.json with provenance); or it holds embedding caches
    and nothing else (a run's default <output_dir>/embeddings, or one the demo wrote under its own lock)."""
    folder = Path(folder)
    if any((folder / name).is_file() for name in (LOCK_NAME, STARTED, *TOOL_RECORDS)):
        return True
    names = [e.name for e in os.scandir(folder)] if folder.is_dir() else []
    if names and all(is_stale_temporary(Path(n)) or any(fnmatch.fnmatchcase(n, p) for p in EMBEDDING_CACHES)
                     for n in names):
        return True
    try:
        with open(folder / RESULTS, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("provenance"), dict)


def is_run_output(name: str) -> bool:
    """Whether a top-level entry called `name` is one a run writes (RUN_OUTPUTS, its lock, replaced-* folders of
    earlier --overwrite, and the temporaries of an interrupted atomic write)."""
    return (name == LOCK_NAME or name.startswith(REPLACED_PREFIX) or is_stale_temporary(Path(name))
            or any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_OUTPUTS))


def _first(names: Sequence[str]) -> str:
    return f"'{names[0]}'" + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def replaceable_entries(folder: str | os.PathLike, keep: Sequence[str] = (), key: str = "folder") -> list[Path]:
    """The entries `move_aside` would move (all but `keep`, the lock and earlier replaced-* folders); one line
    naming `key` when the folder is not a run's or holds anything a run does not write."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    entries = [Path(e.path) for e in os.scandir(folder)]
    if not entries:
        return []
    if not is_run_folder(folder):
        raise InputError(f"{key} {folder}: no run of this toolkit wrote this folder (it holds "
                         f"{_first(sorted(p.name for p in entries))}, and no {LOCK_NAME}, {STARTED} or {RESULTS}); "
                         f"replacing a run moves only a run's own files: choose another {key}")
    foreign = sorted(p.name for p in entries if not is_run_output(p.name))
    if foreign:
        raise InputError(f"{key} {folder}: holds {_first(foreign)}, which no run of this toolkit writes; replacing "
                         f"the run there moves only a run's own files: move it out first, or choose another {key}")
    return [p for p in entries if p.name not in keep and p.name != LOCK_NAME
            and not p.name.startswith(REPLACED_PREFIX)]


def move_aside(folder: str | os.PathLike, keep: Sequence[str] = (), key: str = "folder") -> Path | None:
    """Moves a previous run in `folder` (everything but `keep`, the lock file and earlier `replaced-*` folders)
    into a new `replaced-<time>/` inside it, never deleting; returns that folder, or None when there was nothing
    to move. Refuses (one line) a folder that is not a run's or that holds anything a run does not write."""
    folder = Path(folder)
    items = replaceable_entries(folder, keep, key)
    if not items:
        return None
    dest = folder / f"{REPLACED_PREFIX}{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while dest.exists():
        suffix += 1
        dest = dest.with_name(f"{dest.name.split('.')[0]}.{suffix}")
    with writing(folder, key):
        dest.mkdir()
        for item in items:
            os.replace(item, dest / item.name)
    return dest


# ---------------------------------------------------------------------------------------------
# Outputs never replace inputs
# ---------------------------------------------------------------------------------------------
def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_inputs_kept(inputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]],
                      *,
                      files: Mapping[str, str | os.PathLike | None] | None = None,
                      replaced: Sequence[Path] = (), how: str = "") -> None:
    """One line when an input (label -> path) is one of the output `files` (label -> path) a command writes, or
    lies in one of the files or folders the command `replaced` (`how` says what it does to them, e.g. "--overwrite
    moves into replaced-<time>/"). Files are compared by device and inode (one stat each: links and other
    spellings of a path are caught; an output that does not exist yet replaces nothing)."""
    pairs = list(inputs.items() if isinstance(inputs, Mapping) else inputs)
    for out_label, out in (files or {}).items():
        target = _file_id(out) if out else None     # an output that does not exist yet replaces nothing
        if target is None:
            continue
        for in_label, given in pairs:
            if given and _file_id(given) == target:
                raise InputError(f"{out_label} {out}: is also an input of this command ({in_label}); writing it "
                                 f"would replace what it reads: choose another output")
    for entry in replaced:
        for in_label, given in pairs:
            if given and _inside(Path(given), entry):
                raise InputError(f"{in_label} {given}: lies in {entry}, which {how}; copy it elsewhere first, "
                                 f"or choose another output")
