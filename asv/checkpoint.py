"""Loading speaker-model checkpoints from the community layouts into our models, and saving our own.

Accepted layouts (all read with `torch.load(..., weights_only=True)`):
- ours: {"model": state, "loss": state (optional), ...metadata} as written by `save_asv_state`;
- voxceleb_trainer: flat `__S__.` (model) / `__L__.` (loss) keys, bare or inside {"model_state_dict": ...},
  or the legacy {"model": state} without prefixes; the SASV2 baseline (SASVNet.saveParameters) writes the same;
- TaoRuijie ECAPA-TDNN: flat `speaker_encoder.` / `speaker_loss.` keys;
- a bare model state dict; any of these with DDP `module.` prefixes.
Our models compute their window and mel filterbank as non-persistent buffers, so the torchaudio buffers the seeds
store (`torchfb.1.spectrogram.window`, `torchfb.1.mel_scale.fb`, `torchfbank.0.flipped_filter`, ...) are checked
against the model's front-end (shape and values) and then dropped.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from asv.features import N_FFT, WIN_LENGTH
from common.errors import InputError
from common.io import atomic_write, load_weights

MODEL_PREFIXES = ("__S__.", "speaker_encoder.")
LOSS_PREFIXES = ("__L__.", "speaker_loss.")
# torchaudio MelSpectrogram / PreEmphasis buffers stored by the seeds: (torchfb|torchfbank)[.index].<buffer>
FRONTEND_BUFFER = re.compile(r"^(torchfb|torchfbank)\.(\d+\.)?(flipped_filter|spectrogram\.window|mel_scale\.fb)$")
SHOWN = 4   # key names quoted per category in an error message


@dataclass
class LoadReport:
    """What `load_asv_state` did: the layout it recognised and every key it did not load."""
    layout: str
    dropped_frontend: list[str] = field(default_factory=list)   # torchaudio buffers checked and dropped
    ignored_loss: list[str] = field(default_factory=list)       # loss keys present while no loss module was given
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)          # "key: checkpoint (..) vs model (..)"


def save_asv_state(path: str | os.PathLike, model: nn.Module, loss: Optional[nn.Module] = None, **metadata) -> None:
    """Our format: {"model": state, "loss": state, **metadata}, written atomically. Metadata must be plain
    Python values (str, numbers, lists, dicts) so the file stays loadable with weights_only=True."""
    clash = sorted({"model", "loss"} & set(metadata))
    if clash:
        raise InputError(f"{path}: metadata keys {clash} are reserved for the state dicts")
    state = {**metadata, "model": model.state_dict()}
    if loss is not None:
        state["loss"] = loss.state_dict()
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_asv_state(model: nn.Module, loss: Optional[nn.Module], path_or_state: str | os.PathLike | Mapping,
                   strict: bool = True) -> LoadReport:
    """Loads a checkpoint in any accepted layout into `model` (and `loss`, when given).

    strict=True: any missing, unexpected or mis-shaped key raises one ValueError naming the file, the keys, and the
    architecture the checkpoint looks like. strict=False: loads every key that fits and reports the rest.
    BatchNorm `num_batches_tracked` counters absent from old checkpoints are not counted as missing.
    """
    name, raw = _read(path_or_state)
    layout, model_state, loss_state = _split(raw, name)
    report = LoadReport(layout)
    model_state = _drop_frontend_buffers(model, model_state, report)
    if loss is None:
        report.ignored_loss = sorted(loss_state)
    model_fit = _match(model.state_dict(), model_state, report, "")
    loss_fit = _match(loss.state_dict(), loss_state, report, "loss ") if loss is not None else None
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise InputError(_message(name, report, model_state, loss_state))
    model.load_state_dict(model_fit)
    if loss is not None:
        loss.load_state_dict(loss_fit)
    return report


def _read(path_or_state: str | os.PathLike | Mapping) -> tuple[str, Mapping]:
    if isinstance(path_or_state, Mapping):
        return "<state dict>", path_or_state
    return Path(path_or_state).name, load_weights(path_or_state)


def _is_state(d: object) -> bool:
    return isinstance(d, Mapping) and len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


def _strip_ddp(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def _split(raw: Mapping, name: str) -> tuple[str, dict, dict]:
    """(layout, model state, loss state) with all prefixes removed."""
    if "model" in raw and _is_state(raw["model"]):                      # ours, or voxceleb_trainer's legacy file
        loss = raw.get("loss", {})
        if not (len(loss) == 0 or _is_state(loss)):
            raise InputError(f"{name}: 'loss' entry is not a state dict")
        layout = "ours" if len(raw) > 1 else "voxceleb_trainer legacy"
        model_state, loss_state, _ = _route(raw["model"])
        loss_state.update(_route(loss, default=LOSS_PREFIXES[0])[1])
        return layout, model_state, loss_state
    container = None
    if "model_state_dict" in raw and _is_state(raw["model_state_dict"]):  # newer SpeakerNet.saveParameters
        raw, container = raw["model_state_dict"], "voxceleb_trainer"
    if not _is_state(raw):
        raise InputError(f"{name}: no model state dict found (top-level keys: {', '.join(map(str, list(raw)[:8]))})")
    model_state, loss_state, prefixes = _route(raw)
    if prefixes & {"__S__.", "__L__."}:
        layout = "voxceleb_trainer"
    elif prefixes:
        layout = "ECAPA-TDNN (TaoRuijie)"
    else:
        layout = container or "bare model state"
    return layout, model_state, loss_state


def _route(state: Mapping, default: str = MODEL_PREFIXES[0]) -> tuple[dict, dict, set]:
    """Sorts keys into model and loss parts by their prefix (DDP `module.` stripped anywhere it leads);
    keys without a known prefix go to the part named by `default`."""
    model_state, loss_state, seen = {}, {}, set()
    for key, value in state.items():
        key = _strip_ddp(key)
        prefix = next((p for p in MODEL_PREFIXES + LOSS_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            seen.add(prefix)
            key = _strip_ddp(key[len(prefix):])
        target = loss_state if (prefix or default) in LOSS_PREFIXES else model_state
        target[key] = value
    return model_state, loss_state, seen


def _drop_frontend_buffers(model: nn.Module, state: dict, report: LoadReport) -> dict:
    """Removes the seeds' torchaudio buffers after checking they describe the same front-end as the model's."""
    frontend = getattr(model, "features", None)
    kept = {}
    for key, value in state.items():
        match = FRONTEND_BUFFER.match(key)
        if match is None:
            kept[key] = value
            continue
        buffer = match.group(3)
        if frontend is None:
            report.unexpected.append(key)
            continue
        if buffer == "mel_scale.fb":
            ours = frontend.mel_fb.T.cpu()
        elif buffer == "spectrogram.window":                # torchaudio keeps the unpadded 400-sample window
            pad = (N_FFT - WIN_LENGTH) // 2
            ours = frontend.window.cpu()[pad:pad + WIN_LENGTH]
        else:  # flipped_filter
            if frontend.pre_emphasis is None:
                report.unexpected.append(key)   # a pre-emphasised front-end the model does not have
                continue
            ours = torch.tensor([[[-frontend.pre_emphasis, 1.0]]])
        if tuple(value.shape) != tuple(ours.shape):
            report.mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(ours.shape)}")
        elif not torch.allclose(value.float().cpu(), ours, atol=1e-3):
            report.mismatched.append(f"{key}: values differ from the model's front-end (other mel range or window?)")
        else:
            report.dropped_frontend.append(key)
    return kept


def _match(own: Mapping, state: Mapping, report: LoadReport, label: str) -> dict:
    """Our state updated with every checkpoint tensor of the right name and shape; records the rest in `report`."""
    merged = dict(own)
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(label + key)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{label}{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            merged[key] = value
    for key in own:
        if key not in state and not key.endswith("num_batches_tracked"):
            report.missing.append(label + key)
    return merged


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")


def _message(name: str, report: LoadReport, model_state: Mapping, loss_state: Mapping) -> str:
    parts = []
    for count, noun, keys in ((len(report.missing), "missing key", report.missing),
                              (len(report.unexpected), "unexpected key", report.unexpected),
                              (len(report.mismatched), "shape mismatch", report.mismatched)):
        if count:
            plural = noun + ("es" if noun.endswith("mismatch") else "s") if count > 1 else noun
            parts.append(f"{count} {plural} ({_shown(keys)})")
    message = f"{name}: {report.layout} checkpoint does not fit: " + ", ".join(parts)
    problems = report.missing + report.unexpected + report.mismatched
    guess = guess_architecture(model_state)
    if guess and any(not k.startswith("loss ") for k in problems):
        message += f" — is this {'an' if guess[0] in 'AEIOU' else 'a'} {guess} checkpoint?"
    loss_guess = guess_loss(loss_state)
    if loss_guess and any(k.startswith("loss ") for k in problems):
        message += f" (its loss looks like {loss_guess})"
    return message


def guess_architecture(state: Mapping) -> str:
    """Which of our architectures (and configuration) a prefix-free model state dict looks like; '' if unknown."""
    if any(k.startswith("encoder.model.") for k in state):         # an SSL encoder first: SSL-ECAPA has ECAPA's body
        if "weights_k" in state:
            return "SSL-MHFA"
        if "conv1.weight" in state:
            return f"SSL-ECAPA (C={state['conv1.weight'].shape[0]})"
    if "frt_conv1.weight" in state and "conv1.weight" in state:     # before ECAPA-TDNN: it has the same 1-D body
        return f"SKA-TDNN (C={state['conv1.weight'].shape[0]})"
    if "layer1.convs.0.weight" in state and "conv1.weight" in state:
        return f"ECAPA-TDNN (C={state['conv1.weight'].shape[0]})"
    if "sap_linear.weight" in state and "conv1.weight" in state:
        width = state["sap_linear.weight"].shape[0]
        encoder = "ASP" if "fc.weight" in state and state["fc.weight"].shape[1] == 2 * width else "SAP"
        return f"ResNetSE34L ({encoder})"
    if "attention.0.weight" in state and "layer4.0.conv1.weight" in state:
        width = state["layer4.0.conv1.weight"].shape[0]
        pooled = state["attention.0.weight"].shape[1]
        encoder = "ASP" if "fc.weight" in state and state["fc.weight"].shape[1] == 2 * pooled else "SAP"
        return f"ResNetSE34V2 (n_mels={pooled // width * 8}, {encoder})"
    if "conformer.embed.conv.0.weight" in state:
        blocks = len({k.split(".")[2] for k in state if k.startswith("conformer.encoders.")})
        return f"MFA-Conformer ({blocks} blocks, d_model={state['conformer.embed.conv.0.weight'].shape[0]})"
    return ""


def guess_loss(state: Mapping) -> str:
    """Which of our losses a prefix-free loss state dict looks like; '' if unknown or empty."""
    keys = set(state)
    if {"softmax.fc.weight", "angleproto.w"} <= keys:
        return "softmaxproto"
    if "weight" in keys:
        return "aamsoftmax"
    if "W" in keys:
        return "amsoftmax"
    if "fc.weight" in keys:
        return "softmax"
    if {"w", "b"} <= keys:
        return "angleproto or ge2e"
    return ""
