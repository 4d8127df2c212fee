"""Input checks, accuracy and the learnt cosine scale shared by the speaker losses (voxceleb_trainer
convention: x is (B, M, D))."""
from __future__ import annotations

import torch
from torch import nn

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


class ScaledCosineLoss(nn.Module):
    """Base of the metric losses that turn cosine similarities into logits `w * cos + b` with a learnt scale
    and bias (parameters `w`, `b` as voxceleb_trainer's `__L__.w`, `__L__.b`). The seeds intend w > 0 but
    their clamp is a no-op; here w is clamped for real in the forward pass."""

    def __init__(self, init_w: float = 10.0, init_b: float = -5.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(init_w))
        self.b = nn.Parameter(torch.tensor(init_b))

    def logits(self, cos: torch.Tensor) -> torch.Tensor:
        return cos * self.w.clamp(min=1e-6) + self.b
