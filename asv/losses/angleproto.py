"""Angular prototypical loss ("In defence of metric learning"): each speaker's first utterance is classified
against the centroids of every speaker's remaining utterances, with a learnt cosine scale w and bias b."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from asv.losses.common import ScaledCosineLoss, accuracy, check_metric_input


class AngleProto(ScaledCosineLoss):
    """As voxceleb_trainer's loss/angleproto.py, with its parameters `w` and `b` (ScaledCosineLoss)."""

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_metric_input(x, "angleproto")
        query = F.normalize(x[:, 0], dim=1)
        centroid = F.normalize(x[:, 1:].mean(dim=1), dim=1)
        logits = self.logits(query @ centroid.T)                             # (B, B): speaker i vs centroid j
        target = torch.arange(x.shape[0], device=x.device)
        return F.cross_entropy(logits, target), accuracy(logits, target)
