"""Angular prototypical loss ("In defence of metric learning"): each speaker's first utterance is classified
against the centroids of every speaker's remaining utterances, with a learnt cosine scale w and bias b."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asv.losses.common import accuracy, check_metric_input


class AngleProto(nn.Module):
    """Parameters `w`, `b` as voxceleb_trainer's loss/angleproto.py (`__L__.w`, `__L__.b`).

    The seed intends w > 0 but its clamp is a no-op; here w is clamped for real in the forward pass.
    """

    def __init__(self, init_w: float = 10.0, init_b: float = -5.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(init_w))
        self.b = nn.Parameter(torch.tensor(init_b))

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_metric_input(x, "angleproto")
        query = F.normalize(x[:, 0], dim=1)
        centroid = F.normalize(x[:, 1:].mean(dim=1), dim=1)
        logits = (query @ centroid.T) * self.w.clamp(min=1e-6) + self.b      # (B, B): speaker i vs centroid j
        target = torch.arange(x.shape[0], device=x.device)
        return F.cross_entropy(logits, target), accuracy(logits, target)
