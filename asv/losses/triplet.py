"""Triplet loss on L2-normalised embeddings with in-batch negative mining:
mean(relu(|a - p|^2 - |a - n|^2 + margin)), negatives drawn from the other speakers' positives."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asv.losses.common import check_metric_input


class Triplet(nn.Module):
    """Mining as voxceleb_trainer's loss/triplet.py, vectorised and drawn from torch's RNG (so seeding torch makes
    it reproducible): with probability `hard_prob` the negative is one of the `hard_rank + 1` hardest, otherwise any
    other speaker; `hard_rank < 0` selects semi-hard negatives (further than the positive, within the margin).
    The anchor is each speaker's first utterance, the positive the mean of the others (= the second when M = 2).
    Returns the percentage of triplets already ordered correctly (positive closer than negative)."""

    def __init__(self, margin: float = 0.1, hard_rank: int = 10, hard_prob: float = 0.5):
        super().__init__()
        self.margin = margin
        self.hard_rank = hard_rank
        self.hard_prob = hard_prob

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_metric_input(x, "triplet")
        anchor = F.normalize(x[:, 0], dim=1)
        positive = F.normalize(x[:, 1:].mean(dim=1), dim=1)
        negative = positive[self.mine_negatives(anchor.detach(), positive.detach())]
        pos_dist = (anchor - positive).square().sum(dim=1)
        neg_dist = (anchor - negative).square().sum(dim=1)
        loss = F.relu(pos_dist - neg_dist + self.margin).mean()
        with torch.no_grad():
            acc = (pos_dist < neg_dist).float().mean() * 100.0
        return loss, acc

    def mine_negatives(self, anchor: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """Index into `positive` of one negative per anchor, never the anchor's own speaker."""
        n = anchor.shape[0]
        similarity = -torch.cdist(anchor, positive).square()                  # higher = closer
        own = torch.eye(n, dtype=torch.bool, device=anchor.device)
        noise = torch.rand(n, n, device=anchor.device).masked_fill(own, -1.0)
        random_negative = noise.argmax(dim=1)                                 # uniform over the other speakers
        if self.hard_rank < 0:
            positive_sim = similarity.diagonal().unsqueeze(1)
            semi_hard = (similarity > positive_sim - self.margin) & (similarity < positive_sim) & ~own
            pick = noise.masked_fill(~semi_hard, -1.0).argmax(dim=1)          # uniform over the semi-hard ones
            return torch.where(semi_hard.any(dim=1), pick, random_negative)
        ranked = similarity.masked_fill(own, float("-inf")).argsort(dim=1, descending=True)[:, : n - 1]
        rank = torch.randint(0, min(self.hard_rank, n - 2) + 1, (n,), device=anchor.device)
        hard_negative = ranked.gather(1, rank.unsqueeze(1)).squeeze(1)
        use_hard = torch.rand(n, device=anchor.device) < self.hard_prob
        return torch.where(use_hard, hard_negative, random_negative)
