"""Generalised end-to-end loss (Wan et al., 2018): every utterance is classified against all speaker centroids,
its own speaker's centroid computed without it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from asv.losses.common import ScaledCosineLoss, accuracy, check_metric_input


class GE2E(ScaledCosineLoss):
    """As voxceleb_trainer's loss/ge2e.py, with its parameters `w` and `b` (ScaledCosineLoss). Like the seed,
    cosines are clamped at 1e-6 from below before scaling; unlike it, the whole (B, M, B) similarity tensor is
    computed in one pass."""

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_metric_input(x, "ge2e")
        speakers, m, _ = x.shape
        total = x.sum(dim=1, keepdim=True)                                   # (B, 1, D)
        centroids = F.normalize(total.squeeze(1) / m, dim=1)                 # (B, D)
        own = F.normalize((total - x) / (m - 1), dim=2)                      # (B, M, D): centroid without the utterance
        xn = F.normalize(x, dim=2)
        cos = xn @ centroids.T                                               # (B, M, B)
        cos_own = (xn * own).sum(dim=2)                                      # (B, M)
        diagonal = torch.eye(speakers, dtype=torch.bool, device=x.device).unsqueeze(1)   # (B, 1, B)
        cos = torch.where(diagonal, cos_own.unsqueeze(2), cos).clamp(min=1e-6)
        logits = self.logits(cos).reshape(speakers * m, speakers)
        target = torch.arange(speakers, device=x.device).repeat_interleave(m)
        return F.cross_entropy(logits, target), accuracy(logits, target)
