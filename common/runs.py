"""A run's output folder stays self-consistent: config.yaml describes what is in it, results.json says what
made it, and an earlier run is never deleted without a word.

- `start_run`: called once a run has passed its checks and starts writing (not before: a run that fails
  validation leaves the folder as it was). From then on config.yaml describes the run; a results.json that
  another config made is moved to results.previous.json, so the two never disagree.
- `write_results`: results.json with a `provenance` section (common/provenance.py).
- `move_aside`: `--overwrite` moves the previous run into `replaced-<time>/` instead of deleting it.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.config import dump_config, plain
from common.errors import MissingFilesError
from common.io import file_sha256, read_json, write_json
from common.locking import LOCK_NAME

RESULTS, CONFIG, PREVIOUS_RESULTS = "results.json", "config.yaml", "results.previous.json"
REPLACED_PREFIX = "replaced-"


LOCATION_KEYS = ("output_dir", "embeddings_dir")   # where a run writes, not what it computes

# Keys added to the schemas after runs were recorded, each with the value that does what a task's runs did before
# the key existed (by `task`; "" for every other task). Configs are compared without such a key while it holds
# that value, so adding a key does not make every finished run (demo steps, ablation systems) look like another
# config's.
ADDED_KEYS = {"asv.enrol_mean": {"sasv_e2e": "unit", "": "raw"}, "train.eval_every": {"": 1},
              "train.select_initial": {"": False}}


def _normal(cfg: Mapping) -> Any:
    return json.loads(json.dumps(plain(cfg), default=str))


def comparable(cfg: Mapping | None) -> Any:
    """`cfg` as plain JSON data for comparing configs: without the ADDED_KEYS that hold their earlier value."""
    out = _normal(cfg)
    if not isinstance(out, dict):
        return out
    for dotted, earlier in ADDED_KEYS.items():
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and node[last] == earlier.get(out.get("task"), earlier[""]):
            del node[last]
    return out


def _what_it_computes(cfg: Any) -> Any:
    return {k: v for k, v in cfg.items() if k not in LOCATION_KEYS} if isinstance(cfg, Mapping) else cfg


def made_by_config(results: Mapping | None, cfg: Mapping) -> bool:
    """Whether a results.json payload records `cfg` as the config that made it (the folders it was written to
    aside: a copied experiment folder still holds the results of its config)."""
    record = (results or {}).get("provenance") or {}
    return isinstance(record, Mapping) and (_what_it_computes(comparable(record.get("config")))
                                            == _what_it_computes(comparable(cfg)))


@dataclass(frozen=True)
class RunFolders:
    """Where a main.py task writes: its output_dir, the engine's training folder (None when nothing is trained),
    the folders it locks (config key, path), and what `--overwrite` leaves in place (caches, checked on use)."""
    output_dir: Path
    training: Path | None
    locked: tuple[tuple[str, str | None], ...]
    kept: tuple[str, ...] = ()

    @classmethod
    def trained_in_output_dir(cls, output_dir: str | os.PathLike) -> "RunFolders":
        """A task that trains into output_dir itself and writes nowhere else (task asv, task cm)."""
        return cls(Path(output_dir), Path(output_dir), (("output_dir", str(output_dir)),))


def _checkpoint_record(checkpoints: Mapping[str, str | os.PathLike | None]) -> dict:
    return {name: (None if not p else {"path": str(p), "sha256": file_sha256(p)}) for name, p in checkpoints.items()}


def is_current(path: str | os.PathLike, cfg: Mapping, checkpoints: Mapping[str, str | os.PathLike | None],
               protocols: Mapping[str, str]) -> bool:
    """Whether the results.json at `path` was made by `cfg` with these checkpoints (same content now) and these
    protocol files (SHA-256 as recorded by provenance): the test for reusing a finished step."""
    payload = read_json(path)
    if not made_by_config(payload, cfg):
        return False
    record = payload["provenance"]
    try:
        want = _checkpoint_record(checkpoints)
    except MissingFilesError:
        return False
    return record.get("checkpoints") == want and record.get("protocols") == dict(protocols)


STARTED = "started.json"


def resumable(folder: str | os.PathLike, cfg: Mapping, checkpoints: Mapping[str, str | os.PathLike | None],
              protocols: Mapping[str, str]) -> bool:
    """Whether an unfinished run in `folder` was started with exactly these inputs (see `mark_started`), so that
    continuing its checkpoints cannot mix two configurations."""
    started = read_json(Path(folder) / STARTED)
    if not isinstance(started, Mapping):
        return False
    try:
        return {**started, "config": comparable(started.get("config"))} == {
            "config": comparable(cfg), "checkpoints": _checkpoint_record(checkpoints), "protocols": dict(protocols)}
    except MissingFilesError:
        return False


def mark_started(folder: str | os.PathLike, cfg: Mapping, checkpoints: Mapping[str, str | os.PathLike | None],
                 protocols: Mapping[str, str]) -> None:
    write_json(Path(folder) / STARTED, {"config": _normal(cfg), "checkpoints": _checkpoint_record(checkpoints),
                                        "protocols": dict(protocols)})


def start_run(folder: str | os.PathLike, cfg: Mapping) -> None:
    folder = Path(folder)
    old = read_json(folder / RESULTS)
    if old is not None and not made_by_config(old, cfg):
        os.replace(folder / RESULTS, folder / PREVIOUS_RESULTS)
        print(f"{folder / RESULTS}: made by another config; moved to {PREVIOUS_RESULTS} (this run writes a new one)",
              file=sys.stderr, flush=True)
    dump_config(cfg, folder / CONFIG)


def write_results(folder: str | os.PathLike, payload: Mapping, provenance: Mapping) -> Path:
    """results.json = the payload plus its `provenance` section, written atomically."""
    path = Path(folder) / RESULTS
    write_json(path, {**payload, "provenance": dict(provenance)})
    return path


def move_aside(folder: str | os.PathLike, keep: Sequence[str] = ()) -> Path | None:
    """Moves everything in `folder` (except `keep`, the lock file and earlier `replaced-*` folders) into a new
    `replaced-<time>/` inside it; returns that folder, or None when there was nothing to move."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    items = [p for p in folder.iterdir()
             if p.name not in keep and p.name != LOCK_NAME and not p.name.startswith(REPLACED_PREFIX)]
    if not items:
        return None
    dest = folder / f"{REPLACED_PREFIX}{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while dest.exists():
        suffix += 1
        dest = dest.with_name(f"{dest.name.split('.')[0]}.{suffix}")
    dest.mkdir()
    for item in items:
        os.replace(item, dest / item.name)
    return dest
