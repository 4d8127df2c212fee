"""A run's output folder stays self-consistent: config.yaml describes what is in it, results.json says what
made it, and an earlier run is never deleted, moved or misdescribed without a word.

- `run_record`: entered once a run has passed its checks and starts writing (not before: a run that fails
  validation leaves the folder as it was). From then on config.yaml describes the run; a results.json that
  another config made is moved to results.previous.json, so the two never disagree. A run that fails before it
  wrote anything else puts the previous config.yaml and results.json back as they were.
- `mark_started` / `resume_check`: started.json records what a training run was started with (config,
  checkpoints, protocol files). Resuming it with settings that change what is computed is refused, naming the
  keys; settings that cannot (RUNTIME_KEYS: workers, progress, logging) are allowed, and recorded in
  started.json and results.json (`resumed`).
- `write_results`: results.json with a `provenance` section (common/provenance.py).
- Moving a previous run aside (`--overwrite`) and which folders a run may write: common/folders.py.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from common.config import dump_config, plain
from common.errors import InputError, MissingFilesError
from common.folders import LOCK_NAME, REPLACED_PREFIX, STARTED
from common.io import atomic_write, file_sha256, is_stale_temporary, read_json, write_json, writing

RESULTS, CONFIG, PREVIOUS_RESULTS = "results.json", "config.yaml", "results.previous.json"


LOCATION_KEYS = ("output_dir", "embeddings_dir")   # where a run writes, not what it computes

# Keys added to the schemas after runs were recorded, each with the value that does what a task's runs did before
# the key existed (by `task`; "" for every other task). Configs are compared without such a key while it holds
# that value, so adding a key does not make every finished run (demo steps, ablation systems) look like another
# config's.
ADDED_KEYS = {"asv.enrol_mean": {"sasv_e2e": "unit", "": "raw"}, "train.eval_every": {"": 1},
              "train.select_initial": {"": False}, "data.format": {"": "auto"},
              "train.tensorboard": {"": False}}


def _normal(cfg: Mapping) -> Any:
    return json.loads(json.dumps(plain(cfg), default=str))


def comparable(cfg: Mapping | None) -> Any:
    """`cfg` as plain JSON data for comparing configs: without the ADDED_KEYS that hold their earlier value (and
    without a section that only such a key made: task sasv's `data`, which holds `format` alone)."""
    out = _normal(cfg)
    if not isinstance(out, dict):
        return out
    for dotted, earlier in ADDED_KEYS.items():
        *parents, last = dotted.split(".")
        path = [out]
        for key in parents:
            path.append(path[-1].get(key) if isinstance(path[-1], dict) else None)
        node = path[-1]
        if isinstance(node, dict) and last in node and node[last] == earlier.get(out.get("task"), earlier[""]):
            del node[last]
            if not node and parents:
                del path[-2][parents[-1]]
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
    the folders it locks (config key, path), what `--overwrite` leaves in place (caches, checked on use), and the
    files it writes into output_dir (an input checkpoint may not be one of them)."""
    output_dir: Path
    training: Path | None
    locked: tuple[tuple[str, str | None], ...]
    kept: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @classmethod
    def trained_in_output_dir(cls, output_dir: str | os.PathLike, model_file: str) -> "RunFolders":
        """A task that trains into output_dir itself, exports `model_file` there and writes nowhere else (task asv,
        task cm, task sasv_e2e)."""
        return cls(Path(output_dir), Path(output_dir), (("output_dir", str(output_dir)),),
                   writes=(model_file, "last.pt", "best.pt"))


def _checkpoint_record(checkpoints: Mapping[str, str | os.PathLike | None]) -> dict:
    return {name: (None if not p else {"path": str(p), "sha256": file_sha256(p)}) for name, p in checkpoints.items()}


def config_checkpoints(cfg: Mapping, prefix: str = "") -> dict[str, str | None]:
    """Every checkpoint file a config names (each `checkpoint` key, e.g. asv.checkpoint, cm.checkpoint,
    backend.checkpoint, an SSL encoder's asv.model.encoder.checkpoint), by dotted key; folders (a Hugging Face
    model folder) are left out: they are recorded by path in the config."""
    found: dict[str, str | None] = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            found.update(config_checkpoints(value, f"{prefix}{key}."))
        elif key == "checkpoint" and (not value or not Path(str(value)).is_dir()):
            found[prefix + key] = str(value) if value else None
    return found


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


# ---------------------------------------------------------------------------------------------
# What a training run was started with, and resuming it
# ---------------------------------------------------------------------------------------------
# Keys that say how a run goes, not what it computes: data-loading workers (every random draw is a function of
# seed, epoch and item, not of the worker: data/datasets.py), progress bars, logging, timeouts, DET pictures.
# Changing them on --resume is allowed and recorded. `train.epochs` may grow (training goes on; no schedule
# depends on the total) but not below the epochs already trained.
RUNTIME_KEYS = ("num_workers", "det", "train.num_workers", "train.progress", "train.log_every_steps",
                "train.dist_timeout_s", "train.tensorboard")
EPOCHS_KEY = "train.epochs"


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value (an empty section has no leaves: `options: {}` and a missing one compare equal)."""
    if not isinstance(node, Mapping):
        return {prefix.rstrip("."): node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def config_changes(recorded: Mapping, cfg: Mapping) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (recorded value, value now) for every key whose value differs (the folders aside)."""
    old, new = (_flat(_what_it_computes(comparable(c))) for c in (recorded, cfg))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def refused_changes(changes: Mapping[str, tuple[Any, Any]], epochs_done: int) -> dict[str, tuple[Any, Any]]:
    """The changes (from `config_changes`) that resuming a run trained for `epochs_done` epochs may not make: all but
    RUNTIME_KEYS and more epochs."""
    def allowed(key: str, now: Any) -> bool:
        return key in RUNTIME_KEYS or (key == EPOCHS_KEY and isinstance(now, int) and now >= epochs_done)
    return {k: (was, now) for k, (was, now) in changes.items() if not allowed(k, now)}


def mark_started(folder: str | os.PathLike, cfg: Mapping, checkpoints: Mapping[str, str | os.PathLike | None],
                 protocols: Mapping[str, str]) -> None:
    """started.json: what a run starts with (its config, the SHA-256 of its checkpoints and protocol files)."""
    write_json(Path(folder) / STARTED, {"config": _normal(cfg), "checkpoints": _checkpoint_record(checkpoints),
                                        "protocols": dict(protocols)})


def resumable(folder: str | os.PathLike, cfg: Mapping, checkpoints: Mapping[str, str | os.PathLike | None],
              protocols: Mapping[str, str]) -> bool:
    """Whether an unfinished run in `folder` was started with exactly these inputs (see `mark_started`), so that
    continuing its checkpoints cannot mix two configurations."""
    started = read_json(Path(folder) / STARTED)
    if not isinstance(started, Mapping):
        return False
    try:
        return (comparable(started.get("config")) == comparable(cfg)
                and started.get("checkpoints") == _checkpoint_record(checkpoints)
                and started.get("protocols") == dict(protocols))
    except MissingFilesError:
        return False


def recorded_config(folder: str | os.PathLike) -> tuple[Mapping | None, str]:
    """The config a run in `folder` was started with, and where it was read: started.json, else (runs started
    before it existed) results.json's provenance, else config.yaml."""
    import yaml

    folder = Path(folder)
    started = read_json(folder / STARTED)
    if isinstance(started, Mapping) and isinstance(started.get("config"), Mapping):
        return started["config"], str(folder / STARTED)
    results = read_json(folder / RESULTS) or {}
    config = (results.get("provenance") or {}).get("config")
    if isinstance(config, Mapping):
        return config, str(folder / RESULTS)
    try:
        config = yaml.safe_load((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        config = None
    return (config, str(folder / CONFIG)) if isinstance(config, Mapping) else (None, "")


def _shown(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def resume_check(folder: str | os.PathLike, cfg: Mapping, checkpoints: Mapping[str, str | os.PathLike | None],
                 protocols: Mapping[str, str], epochs_done: int | None = None) -> dict[str, tuple[Any, Any]]:
    """Before resuming the trained run in `folder` with `cfg`: one line (InputError) naming every key whose change
    would change what is trained, and any checkpoint or protocol file whose content changed since the run
    started. Returns the allowed changes (RUNTIME_KEYS, more epochs) for `note_resume`."""
    recorded, source = recorded_config(folder)
    if recorded is None:
        raise InputError(f"{folder}: holds a trained run but no record of the config it was trained with "
                         f"({STARTED}, {RESULTS} or {CONFIG}); resuming could mix two configurations: start a new "
                         f"run (--overwrite, or another output_dir)")
    changes = config_changes(recorded, cfg)
    refused = refused_changes(changes, epochs_done or 0)
    allowed = {k: v for k, v in changes.items() if k not in refused}
    if refused:
        shown = "; ".join(f"{k} {_shown(a)} -> {_shown(b)}" for k, (a, b) in list(refused.items())[:4])
        more = f" and {len(refused) - 4} more" if len(refused) > 4 else ""
        raise InputError(f"{folder}: --resume with settings that change what was trained ({shown}{more}; the run's "
                         f"record: {source}); resume with the settings it was started with, or start a new run "
                         f"(--overwrite, or another output_dir)")
    started = read_json(Path(folder) / STARTED)
    if isinstance(started, Mapping):
        try:
            now = _checkpoint_record(checkpoints)
        except MissingFilesError as e:
            raise InputError(f"--resume: {e}") from None
        then = started.get("checkpoints") or {}
        name = _first_difference(then, now)
        if name is not None:
            raise InputError(f"{folder}: --resume: {name} is not the file the run started from "
                             f"({_shown(then.get(name))}, now {_shown(now.get(name))}); resume with that file, "
                             f"or start a new run")
        path = _first_difference(started.get("protocols") or {}, protocols)
        if path is not None:
            raise InputError(f"{folder}: --resume: the list {path} changed since the run started (its SHA-256 "
                             f"differs, or it was not read then); resume with the lists it started with, or start "
                             f"a new run")
    return allowed


def _first_difference(then: Mapping, now: Mapping) -> str | None:
    return next((k for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)), None)


def note_resume(folder: str | os.PathLike, allowed: Mapping[str, tuple[Any, Any]], epochs_done: int) -> None:
    """Records a resume and the settings it changed (that cannot change the result) in started.json; results.json
    repeats them under `resumed`."""
    path = Path(folder) / STARTED
    started = read_json(path)
    if not isinstance(started, Mapping):
        return
    entry = {"at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "after_epoch": epochs_done,
             "changed": {k: list(v) for k, v in allowed.items()}}
    write_json(path, {**started, "resumed": [*started.get("resumed", []), entry]})


# ---------------------------------------------------------------------------------------------
# The run record: config.yaml and results.json
# ---------------------------------------------------------------------------------------------
_RECORD = (CONFIG, RESULTS, PREVIOUS_RESULTS, STARTED)


def _outputs_snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime, inode) of every file in `folder` but its record, lock, temporaries, embedding caches (they say
    themselves what made them) and earlier replaced-* runs: what a failed run may have changed."""
    snapshot: dict[str, tuple[int, int, int]] = {}
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here == folder:
            dirs[:] = [d for d in dirs if d != "embeddings" and not d.startswith(REPLACED_PREFIX)]
            files = [f for f in files if f not in _RECORD and f != LOCK_NAME]
        for name in files:
            path = here / name
            if is_stale_temporary(path):
                continue
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                snapshot[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return snapshot


def _put_back(path: Path, data: bytes | None) -> None:
    if data is None:
        path.unlink(missing_ok=True)
        return
    with atomic_write(path, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def run_record(folder: str | os.PathLike, cfg: Mapping, replaced: Path | None = None) -> Iterator[None]:
    """The block is a run writing `folder`: config.yaml is written now, a results.json of another config is moved to
    results.previous.json. When the block fails before anything else in the folder changed (a checkpoint that does
    not fit, a bad file found late, Ctrl-C before the first output), config.yaml and results.json are put back as
    they were, and a previous run that --overwrite moved into `replaced` (common.folders.move_aside) is moved back:
    the finished run is never described by a config that never ran, nor set aside for one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    before = _outputs_snapshot(folder)
    saved = {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in _RECORD}
    start_run(folder, cfg)
    try:
        yield
    except BaseException:
        results = folder / RESULTS
        wrote_results = results.is_file() and results.read_bytes() != saved[RESULTS]
        if not wrote_results and _outputs_snapshot(folder) == before:
            for name, data in saved.items():
                _put_back(folder / name, data)
            if replaced is not None:
                _move_back(replaced, folder)
            if replaced is not None or saved[CONFIG] is not None or saved[RESULTS] is not None:
                print(f"{folder}: the run stopped before writing anything; the previous run's files are as they were",
                      file=sys.stderr, flush=True)
        raise


def _move_back(replaced: Path, folder: Path) -> None:
    """The entries move_aside put into `replaced`, back where they were (the folder removed once empty)."""
    with writing(folder):
        for entry in list(replaced.iterdir()):
            if not (folder / entry.name).exists():
                os.replace(entry, folder / entry.name)
        with contextlib.suppress(OSError):
            replaced.rmdir()


def start_run(folder: str | os.PathLike, cfg: Mapping) -> None:
    """config.yaml := `cfg`; a results.json made by another config is moved to results.previous.json (use
    `run_record`, which also puts both back when the run fails before writing anything)."""
    folder = Path(folder)
    old = read_json(folder / RESULTS)
    if old is not None and not made_by_config(old, cfg):
        with writing(folder / PREVIOUS_RESULTS):
            os.replace(folder / RESULTS, folder / PREVIOUS_RESULTS)
        print(f"{folder / RESULTS}: made by another config; moved to {PREVIOUS_RESULTS} (this run writes a new one)",
              file=sys.stderr, flush=True)
    dump_config(cfg, folder / CONFIG)


def write_results(folder: str | os.PathLike, payload: Mapping, provenance: Mapping) -> Path:
    """results.json = the payload plus its `provenance` section, written atomically; a resumed run's changed
    settings (started.json) are repeated under `resumed`."""
    folder = Path(folder)
    started = read_json(folder / STARTED) or {}
    resumed = {}
    if started.get("resumed") and isinstance(provenance.get("config"), Mapping) and all(
            k in RUNTIME_KEYS or k == EPOCHS_KEY for k in config_changes(started.get("config") or {},
                                                                         provenance["config"])):
        resumed = {"resumed": started["resumed"]}     # the training run of these results was resumed
    path = folder / RESULTS
    write_json(path, {**payload, **resumed, "provenance": dict(provenance)})
    return path
