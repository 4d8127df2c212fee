"""Plain softmax cross-entropy over speaker classes through a linear layer (with bias)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asv.losses.common import accuracy, flatten_for_classification


class Softmax(nn.Module):
    """Parameter `fc` as voxceleb_trainer's loss/softmax.py (`__L__.fc.weight`)."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, label = flatten_for_classification(x, label, self.embedding_dim, "softmax")
        logits = self.fc(x)
        return F.cross_entropy(logits, label), accuracy(logits, label)
