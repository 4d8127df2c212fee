"""Loading countermeasure checkpoints (official clovaai/aasist weights or ours) strictly, and saving ours.

Accepted layouts, all read with `torch.load(..., weights_only=True, map_location="cpu")` (the official files
were saved from CUDA): a bare model state dict (the official `AASIST.pth` / `AASIST-L.pth`, and SSL-AASIST's
released `LA_model.pth`, whose XLS-R is in fairseq's names), ours {"model": state, "loss": state (optional),
**metadata}, either with DDP `module.` prefixes.
"""
from __future__ import annotations

import functools
import os
from typing import Mapping, Optional

import torch
from torch import nn

from common.errors import InputError
from common.io import atomic_write, load_weights

SHOWN = 4  # key names quoted per category in an error message
SSL_ENCODER = "ssl_model.model."   # SSL-AASIST's encoder inside its state dict (ours and the paper's)


def save_cm_state(path: str | os.PathLike, model: nn.Module, loss: Optional[nn.Module] = None, **metadata) -> None:
    """Writes {"arch": model.arch, **metadata, "model": state, "loss": state} atomically. Metadata must be plain
    Python values so the file stays loadable with weights_only=True."""
    if {"model", "loss"} & set(metadata):
        raise InputError(f"{path}: metadata keys 'model' and 'loss' are reserved for the state dicts")
    state = {"arch": getattr(model, "arch", type(model).__name__), **metadata, "model": model.state_dict()}
    if loss is not None:
        state["loss"] = loss.state_dict()
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_cm_state(model: nn.Module, path_or_state: str | os.PathLike | Mapping,
                  loss: Optional[nn.Module] = None) -> dict:
    """Loads a checkpoint into `model` (and `loss`, when given and stored) strictly.

    Any missing, unexpected or mis-shaped key raises one InputError naming the file, the keys and, when
    the shapes fit another known architecture, which one. Returns the checkpoint's metadata (empty for
    the official files)."""
    name, raw = _read(path_or_state)
    if "model" in raw and isinstance(raw["model"], Mapping):
        model_state, loss_state = raw["model"], raw.get("loss")
        metadata = {k: v for k, v in raw.items() if k not in ("model", "loss")}
    else:
        model_state, loss_state, metadata = raw, None, {}
    model_state = _torchaudio_encoder_names(_strip_ddp(model_state), name)
    _check(name, model, model_state, "model")
    model.load_state_dict(model_state)
    if loss is not None and loss_state is not None:
        loss_state = _strip_ddp(loss_state)
        _check(name, loss, loss_state, "loss")
        loss.load_state_dict(loss_state)
    return metadata


def _read(path_or_state: str | os.PathLike | Mapping) -> tuple[str, Mapping]:
    if isinstance(path_or_state, Mapping):
        return "<state dict>", path_or_state
    return str(path_or_state), load_weights(path_or_state)


def _strip_ddp(state: Mapping) -> dict:
    """Removes the `module.` prefix that DistributedDataParallel adds, when every key carries it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _torchaudio_encoder_names(state: dict, name: str) -> dict:
    """SSL-AASIST as released with its paper (TakHemlata/SSL_Anti-spoofing `LA_model.pth`) holds the fairseq XLS-R
    model under `ssl_model.model.` in fairseq's parameter names, where ours has torchaudio's; its back-end names are
    ours. Converted here (`ssl_models.checkpoint.convert_fairseq`, which drops the pre-training heads: quantizer,
    project_q, final_proj, mask_emb), so the file loads strictly like any other; other states are returned as they
    are."""
    sub = {k[len(SSL_ENCODER):]: v for k, v in state.items() if k.startswith(SSL_ENCODER)}
    if not sub:
        return state
    from ssl_models.checkpoint import convert_fairseq, in_fairseq_names  # the SSL stack only where it is needed
    if not in_fairseq_names(sub):
        return state
    converted, _ = convert_fairseq(sub, name)
    rest = {k: v for k, v in state.items() if not k.startswith(SSL_ENCODER)}
    return {**rest, **{SSL_ENCODER + k: v for k, v in converted.items()}}


def _check(name: str, module: nn.Module, state: Mapping, what: str) -> None:
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = [f"{k}: checkpoint {got[k]} vs {what} {expected[k]}"
                  for k in expected if k in got and got[k] != expected[k]]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{len(v)} {label} ({', '.join(v[:SHOWN])}{', ...' if len(v) > SHOWN else ''})"
             for label, v in (("missing keys", missing), ("unexpected keys", unexpected),
                              ("mis-shaped keys", mismatched)) if v]
    arch = getattr(module, "arch", type(module).__name__)
    message = f"{name}: checkpoint does not fit the {arch} {what}: {'; '.join(parts)}"
    if what == "model":
        looks = [a for a, shapes in _known_shapes().items() if shapes == got]
        if looks and arch not in looks:
            message += f"; this looks like an {looks[0]} checkpoint, config says {arch}"
    raise InputError(message)


@functools.lru_cache(maxsize=1)
def _known_shapes() -> dict[str, dict[str, tuple]]:
    """State-dict key shapes of every known CM architecture, to name the one a checkpoint was made for."""
    from cm import MODELS
    return {arch: {k: tuple(v.shape) for k, v in _shape_model(cls, config).state_dict().items()}
            for arch, (cls, config) in MODELS.items()}


def _shape_model(cls: type, config: dict) -> nn.Module:
    """`cls(**config)` for its shapes: on the meta device (no memory, no initialisation: SSL-AASIST's XLS-R encoder
    would take GBs and seconds), or on the CPU for constructors that compute with numpy (AASIST's sinc filters)."""
    try:
        with torch.device("meta"):
            return cls(**config)
    except (TypeError, RuntimeError, NotImplementedError):
        return cls(**config)
