"""Checkpoints as plain containers of tensors, written atomically and read with `weights_only=True`.

`last.pt` (every epoch, enough to resume) holds: format, kind="last", epoch (epochs completed), global_step,
model, optimizer, scheduler, scaler, rng (per-rank RNG states, stacked tensors), best {metric, mode, value,
epoch}, history (one dict per epoch), csv_rows {file name: data rows}, world_size, config.
`best.pt` (when the dev metric improves) holds: format, kind="best", epoch, global_step, model, metrics
(that epoch's record), best, config.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from common.errors import InputError, MissingFilesError
from common.io import atomic_write

FORMAT = "sasv-engine-checkpoint/1"


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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt file or one holding pickled objects
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a loadable checkpoint, damaged or cut short? ({first})") from None
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
        raise CheckpointError(f"{source}: checkpoint of a different architecture: missing keys {result.missing_keys[:3]}, "
                         f"unexpected keys {result.unexpected_keys[:3]}")


def load_model_weights(model: nn.Module, path: str | os.PathLike) -> dict:
    """Loads the weights of `best.pt` / `last.pt` into `model`; returns the checkpoint (metrics, epoch, ...)."""
    ckpt = load_checkpoint(path)
    load_model_state(model, ckpt["model"], str(path))
    return ckpt
