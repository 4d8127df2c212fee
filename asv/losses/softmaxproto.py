"""Softmax + angular prototypical: a classification term on every utterance plus the metric term."""
from __future__ import annotations

import torch
from torch import nn

from asv.losses.angleproto import AngleProto
from asv.losses.common import check_metric_input
from asv.losses.softmax import Softmax


class SoftmaxProto(nn.Module):
    """Sub-modules `softmax` and `angleproto` as voxceleb_trainer's loss/softmaxproto.py. Returns the softmax
    accuracy, as the seed does."""

    def __init__(self, embedding_dim: int, num_classes: int, init_w: float = 10.0, init_b: float = -5.0):
        super().__init__()
        self.softmax = Softmax(embedding_dim, num_classes)
        self.angleproto = AngleProto(init_w, init_b)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_metric_input(x, "softmaxproto")
        loss_s, acc = self.softmax(x, label)
        loss_p, _ = self.angleproto(x)
        return loss_s + loss_p, acc
