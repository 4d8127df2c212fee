"""Additive-margin softmax (CosFace / AM-Softmax): s * (cos(theta_y) - m) for the target class."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asv.losses.common import accuracy, flatten_for_classification


class AMSoftmax(nn.Module):
    """Class weights `W` of shape (D, classes), as voxceleb_trainer's loss/amsoftmax.py (`__L__.W`)."""

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.3, scale: float = 30.0):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.margin = margin
        self.scale = scale
        self.W = nn.Parameter(torch.empty(embedding_dim, num_classes))
        nn.init.xavier_normal_(self.W, gain=1)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, label = flatten_for_classification(x, label, self.embedding_dim, "amsoftmax")
        cosine = F.normalize(x, dim=1) @ F.normalize(self.W, dim=0)
        margin = F.one_hot(label, cosine.shape[1]).to(cosine.dtype) * self.margin
        logits = self.scale * (cosine - margin)
        return F.cross_entropy(logits, label), accuracy(logits, label)
