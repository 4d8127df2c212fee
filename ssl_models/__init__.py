"""Self-supervised speech encoders (wav2vec 2.0 / XLS-R, HuBERT, WavLM) as front-ends, from `torchaudio.models`.

An encoder section in a config (a model option such as `cm.model.encoder`) is a dict of the keys of `CONFIG`;
`build_encoder(**section)` turns it into an `SSLEncoder` (`ssl_models.encoder`) with weights read from local
files only (`ssl_models.checkpoint`: Hugging Face folders, fairseq checkpoints, torchaudio state dicts; nothing
is ever downloaded). A training task that holds encoders anywhere in its model calls `param_groups(model)` for
the optimizer (the encoders' own learning rate) and `set_epoch(model, epoch)` at each epoch start (fine-tuning
from epoch N). See docs/ssl.md.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from common.dispatch import check_kwargs
from ssl_models.encoder import ENCODERS, SSLEncoder, weighted_sum

__all__ = ["CONFIG", "ENCODERS", "SSLEncoder", "build_encoder", "param_groups", "set_epoch", "weighted_sum"]

# Every key of an encoder section, with its default.
CONFIG: dict[str, Any] = {
    "name": "wavlm_base_plus",   # a key of ENCODERS (torchaudio's builders)
    "checkpoint": None,          # local weights: Hugging Face folder, fairseq .pt, torchaudio state dict; None = random
    "layer": "weighted",         # 'last' | 'weighted' (learnt softmax weights over layers 0..L) | an int in 0..L
    "freeze": True,              # True: never trained (no_grad, eval mode) | False: fine-tuned | N: frozen for N epochs
    "lr": 1e-6,                  # the encoder's own learning rate (its optimizer group)
    "grad_checkpointing": False,  # recompute each transformer layer (and the CNN) in backward: less memory
    "normalize": False,          # zero-mean unit-variance waveform (fairseq `normalize`, HF `do_normalize`)
    "options": {},               # keyword arguments of the torchaudio builder (dropouts; architecture for *_model)
}


def build_encoder(**section: Any) -> SSLEncoder:
    """The encoder a config section describes; keys it leaves out take `CONFIG`'s defaults, an unknown key is one
    InputError naming it and the valid ones."""
    check_kwargs(SSLEncoder, "encoder section", section, "SSL")
    return SSLEncoder(**{**CONFIG, **section})


def encoders(model: nn.Module) -> list[SSLEncoder]:
    """Every SSL encoder inside `model` (itself included)."""
    return [m for m in model.modules() if isinstance(m, SSLEncoder)]


def param_groups(model: nn.Module) -> list[dict]:
    """Optimizer groups for a model that may hold SSL encoders: one group per encoder with its pre-trained weights
    at the encoder's `lr`, and one group of everything else (the head, and the encoders' learnt layer weights, which
    start from scratch) at the optimizer's lr. A model without encoders gives the single default group.
    Suits `engine.Task.param_groups`; `engine.optim.resolve_param_groups` drops frozen parameters and empty groups."""
    found = encoders(model)
    pretrained = {id(p) for enc in found for p in enc.encoder_parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in pretrained]}]
    groups += [{"params": list(enc.encoder_parameters()), "lr": enc.lr} for enc in found]
    return groups


def set_epoch(model: nn.Module, epoch: int) -> None:
    """Tells every encoder in `model` which (0-based) epoch starts: one with `freeze: N` is fine-tuned from epoch N.
    Suits `engine.Task.on_epoch_start`."""
    for enc in encoders(model):
        enc.set_epoch(epoch)
