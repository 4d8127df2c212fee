"""Input checks and accuracy shared by the speaker losses (voxceleb_trainer convention: x is (B, M, D))."""
from __future__ import annotations

import torch

from common.errors import InputError


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy in percent, as a detached 0-d tensor."""
    with torch.no_grad():
        return (logits.argmax(dim=1) == target).float().mean() * 100.0


def flatten_for_classification(x: torch.Tensor, label: torch.Tensor, embedding_dim: int,
                               loss_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M, D) embeddings + (B,) speaker labels -> (B*M, D) and (B*M,). A (B, D) batch is taken as M = 1."""
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() != 3 or x.shape[-1] != embedding_dim:
        raise InputError(f"{loss_name}: expected embeddings of shape (B, M, {embedding_dim}), got {tuple(x.shape)}")
    if label is None or label.shape != (x.shape[0],):
        raise InputError(f"{loss_name}: expected labels of shape ({x.shape[0]},), "
                         f"got {None if label is None else tuple(label.shape)}")
    return x.reshape(-1, embedding_dim), label.repeat_interleave(x.shape[1])


def check_metric_input(x: torch.Tensor, loss_name: str) -> None:
    """Metric losses compare utterances of the same speaker: they need (B, M, D) with M >= 2 and B >= 2."""
    if x.dim() != 3 or x.shape[1] < 2:
        raise InputError(f"{loss_name}: needs at least 2 utterances per speaker, i.e. embeddings of shape "
                         f"(B, M>=2, D); got {tuple(x.shape)} (set the sampler's utterances per speaker >= 2)")
    if x.shape[0] < 2:
        raise InputError(f"{loss_name}: needs at least 2 speakers per batch, got embeddings of shape {tuple(x.shape)}")
