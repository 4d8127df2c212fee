"""Countermeasure training losses, chosen by name.

Every loss: `forward(embedding: (B, D), logits: (B, 2), labels: (B,)) -> loss` with labels 1 = bona fide,
0 = spoof, and `score(embedding, logits) -> (B,)`, the CM score that loss trains (higher = more bona fide).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.dispatch import build


class WeightedCE(nn.Module):
    """Class-weighted cross-entropy on the logits (the official AASIST loss).

    clovaai/aasist main.py uses `CrossEntropyLoss(weight=[0.1, 0.9])` with labels bona fide = 1, spoof = 0,
    so the rare bona fide class weighs 0.9 and spoof 0.1. The score is the raw bona fide logit, as in the
    official score files.
    """

    def __init__(self, spoof_weight: float = 0.1, bonafide_weight: float = 0.9):
        super().__init__()
        self.register_buffer("weight", torch.tensor([spoof_weight, bonafide_weight]))

    def forward(self, embedding: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels.long(), weight=self.weight.to(logits.dtype))

    def score(self, embedding: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, 1]


class OCSoftmax(nn.Module):
    """One-class softmax (Zhang, Jiang & Duan, IEEE SPL 2021): pulls bona fide embeddings within cosine
    r_real of a learnt centre and pushes spoofs below cosine r_fake, so unseen attacks fall outside a
    compact bona fide region. loss = mean softplus(alpha * margin violation)."""

    def __init__(self, embedding_dim: int = 160, r_real: float = 0.9, r_fake: float = 0.2, alpha: float = 20.0):
        super().__init__()
        self.center = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(1, embedding_dim), a=0.25))
        self.r_real, self.r_fake, self.alpha = r_real, r_fake, alpha

    def score(self, embedding: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine similarity of each embedding to the centre."""
        return F.normalize(embedding, dim=1) @ F.normalize(self.center, dim=1).squeeze(0)

    def forward(self, embedding: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.score(embedding)
        violation = torch.where(labels == 1, self.r_real - cos, cos - self.r_fake)
        return F.softplus(self.alpha * violation).mean()


LOSSES = {"WeightedCE": WeightedCE, "OCSoftmax": OCSoftmax}


def build_loss(name: str, embedding_dim: int | None = None, **kwargs) -> nn.Module:
    """The CM loss `name` (WeightedCE | OCSoftmax) with its keyword arguments checked. `embedding_dim` (the
    model's) sizes losses that work on embeddings, unless the options set it themselves."""
    offered = {} if embedding_dim is None else {"embedding_dim": embedding_dim}
    return build(LOSSES, name, kwargs, "CM loss", defaults=offered)
