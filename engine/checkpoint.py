"""Checkpoints as plain containers of tensors, written atomically and read with `weights_only=True`.

`last.pt` (every epoch, enough to resume) holds: format, kind="last", epoch (epochs completed), global_step,
model, optimizer, scheduler, scaler, rng (per-rank RNG states, stacked tensors), best {metric, mode, value,
epoch}, history (one dict per epoch), csv_rows {file name: data rows}, world_size, config.
`best.pt` (when the dev metric improves) holds: format, kind="best", epoch, global_step, model, metrics
(that epoch's record), best, config.
`save_epoch_checkpoints` writes both after an epoch of `engine.fit`, `restore_last_checkpoint` resumes from
`last.pt`; the other functions read and write single files.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from common.errors import InputError, MissingFilesError
from common.io import atomic_write, torch_load_problem, zip_damage
from common.runs import config_changes, refused_changes
from engine.distributed import DistContext
from engine.seeding import derive_seed, seed_everything, set_rng_state

logger = logging.getLogger(__name__)

FORMAT = "sasv-engine-checkpoint/1"
LAST, BEST = "last.pt", "best.pt"


class CheckpointError(InputError):
    """A checkpoint that cannot be used: damaged (e.g. cut short by a kill), of another format, or of another
    architecture. One line naming the file, like every input error."""


def plain(node: Any) -> Any:
    """Converts dict subclasses (config FreeForm sections), tuples and numpy scalars to plain containers."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    if isinstance(node, (str, int, float, bool, type(None), torch.Tensor)):
        return node
    if hasattr(node, "item"):  # numpy scalar
        return node.item()
    raise TypeError(f"checkpoint: cannot store a {type(node).__name__} without pickling it")


def save_checkpoint(path: str | os.PathLike, payload: Mapping) -> None:
    """Writes `payload` atomically: an interrupted save leaves the previous file intact."""
    with atomic_write(path, "wb") as f:
        torch.save(dict(payload), f)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Loads an engine checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise MissingFilesError(f"{path}: checkpoint does not exist")
    damage = zip_damage(path)                    # torch.load does not check the archive's CRCs
    if damage:
        raise CheckpointError(f"{path}: not a loadable checkpoint, damaged or cut short? ({damage})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt file or one holding pickled objects
        raise CheckpointError(f"{path}: not a loadable checkpoint, damaged or cut short? ({torch_load_problem(e)})"
                              ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an engine checkpoint (format {FORMAT!r} expected)")
    return ckpt


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """`model.load_state_dict` with a one-line error naming the file when the architecture does not fit."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise CheckpointError(f"{source}: checkpoint of a different architecture: {detail}") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{source}: checkpoint of a different architecture: "
                              f"missing keys {result.missing_keys[:3]}, unexpected keys {result.unexpected_keys[:3]}")


def load_model_weights(model: nn.Module, path: str | os.PathLike) -> dict:
    """Loads the weights of `best.pt` / `last.pt` into `model`; returns the checkpoint (metrics, epoch, ...)."""
    ckpt = load_checkpoint(path)
    load_model_state(model, ckpt["model"], str(path))
    return ckpt


@dataclass
class Resumed:
    """Where a resumed run stands, as `last.pt` recorded it (the modules' states are loaded in place)."""
    epoch: int                      # epochs completed
    global_step: int
    best: dict                      # {metric, mode, value, epoch}
    history: list[dict]             # the epoch-log rows
    csv_rows: dict[str, int]        # data rows of each CSV log the checkpoint accounts for


def save_epoch_checkpoints(out_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                           scaler: torch.amp.GradScaler, *, epoch: int, global_step: int, best: Mapping,
                           history: list[dict], record: Mapping, improved: bool, rng: Mapping[str, torch.Tensor],
                           csv_rows: Mapping[str, int], world_size: int, config: Mapping) -> None:
    """After an epoch: `best.pt` when the selection metric `improved` (with that epoch's `record`), then
    `last.pt`, which holds everything `restore_last_checkpoint` needs (`rng`: every rank's RNG states)."""
    common = {"format": FORMAT, "epoch": epoch, "global_step": global_step,
              "model": model.state_dict(), "best": dict(best), "config": plain(config)}
    if improved:  # best.pt before last.pt: an interrupt in between never leaves last.pt ahead of best.pt
        save_checkpoint(out_dir / BEST, {**common, "kind": "best", "metrics": plain(record)})
    save_checkpoint(out_dir / LAST, {
        **common, "kind": "last", "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": dict(rng),
        "history": plain(history), "csv_rows": dict(csv_rows), "world_size": world_size})


def restore_last_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                            scaler: torch.amp.GradScaler, config: Mapping, ctx: DistContext) -> Resumed:
    """Loads `last.pt` into the model, optimizer, scheduler and scaler and restores this rank's RNG states
    (reseeded instead, with a warning, when the run had another number of ranks). Refuses a `best.pt` and any
    changed training setting but those that cannot change what is trained (common.runs.RUNTIME_KEYS, and more
    epochs); main.py checks the whole config the same way before it touches the folder."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "last":
        raise CheckpointError(f"{path}: a {ckpt.get('kind')!r} checkpoint cannot be resumed (needs last.pt)")
    best = ckpt["best"]
    if (best["metric"], best["mode"]) != (config["select_metric"], config["select_mode"]):
        raise CheckpointError(f"{path}: select_metric/select_mode changed from {best['metric']}/{best['mode']} to "
                              f"{config['select_metric']}/{config['select_mode']}; resume with the same ones")
    changed = config_changes({"train": ckpt["config"]}, {"train": config})
    refused = refused_changes(changed, int(ckpt["epoch"]))
    if refused:
        shown = "; ".join(f"{k} {was!r} -> {now!r}" for k, (was, now) in list(refused.items())[:4])
        raise CheckpointError(f"{path}: resuming with training settings that change what was trained ({shown}); "
                              f"resume with the settings it was trained with, or start a new run")
    if changed and ctx.is_main:
        logger.info(f"resuming with changed settings that do not change what is trained: {', '.join(changed)}")
    load_model_state(model, ckpt["model"], str(path))
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: optimizer state does not fit (other parameter groups?): "
                              f"{str(e).splitlines()[0]}") from None
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler.is_enabled() and ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    resumed = Resumed(int(ckpt["epoch"]), int(ckpt["global_step"]), dict(best),
                      [dict(r) for r in ckpt["history"]], dict(ckpt["csv_rows"]))
    if int(ckpt["world_size"]) == ctx.world_size:
        set_rng_state({k: v[ctx.rank] for k, v in ckpt["rng"].items()}, ctx.device)
    else:
        if ctx.is_main:
            logger.warning(f"{path}: saved with {ckpt['world_size']} ranks, resuming on {ctx.world_size}: "
                           f"RNG streams are reseeded, so the run is not bit-identical to an uninterrupted one")
        seed_everything(derive_seed(config["seed"], ctx.rank, resumed.epoch))
    if ctx.is_main:
        logger.info(f"resuming from {path} after epoch {resumed.epoch} (step {resumed.global_step})")
    return resumed

