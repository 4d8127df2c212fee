"""Additive angular-margin softmax (ArcFace / AAM-Softmax): s * cos(theta_y + m) for the target class."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from asv.losses.common import accuracy, flatten_for_classification


class AAMSoftmax(nn.Module):
    """Class weights `weight` of shape (classes, D): the layout of voxceleb_trainer's loss/aamsoftmax.py
    (`__L__.weight`) and of TaoRuijie's ECAPA-TDNN loss.py (`speaker_loss.weight`).

    Past theta = pi - m, cos(theta + m) stops decreasing; there the target logit falls back to cos(theta) - m sin(m)
    (or to cos(theta) for negative cosines with easy_margin), as in both seeds.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0,
                 easy_margin: bool = False):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.margin = margin
        self.scale = scale
        self.easy_margin = easy_margin
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight, gain=1)
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.th = math.cos(math.pi - margin)
        self.mm = math.sin(math.pi - margin) * margin

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, label = flatten_for_classification(x, label, self.embedding_dim, "aamsoftmax")
        cosine = F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))
        sine = torch.sqrt((1.0 - cosine * cosine).clamp(0, 1))
        phi = cosine * self.cos_m - sine * self.sin_m                # cos(theta + m)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        target = F.one_hot(label, cosine.shape[1]).bool()
        logits = self.scale * torch.where(target, phi, cosine)
        return F.cross_entropy(logits, label), accuracy(logits, label)
