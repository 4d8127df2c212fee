"""The single-embedding SASV loss of Mun et al., "Towards single integrated spoofing-aware speaker verification
embeddings", Interspeech 2023 (the SASV2 baseline): AAM-softmax over speakers + one spoof class, plus an
angular-prototypical term in which spoofed speech claiming a speaker is a negative for that speaker.

Why both terms: the classification term alone separates the spoof class from every speaker globally, but a
verification score is a cosine between two utterances. The prototypical term trains exactly that score: a
bona fide utterance must be closer to another utterance of its speaker than to any other speaker's speech
and than to spoofs claiming its speaker (the hard negatives a SASV trial list holds).

Batch layout (`data.samplers.SASVPairSampler`): x is (P, 2, D), P = N bona fide pairs (N distinct speakers)
followed by S spoof pairs (two spoofed utterances claiming one of those speakers); label (P,) is the speaker
class of a bona fide pair and `spoof_class` for a spoof pair. Without spoof pairs (stage 1, speakers only)
the loss is AAM-softmax + angular prototypical (voxceleb_trainer's `aamsoftmaxproto`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asv.losses.aamsoftmax import AAMSoftmax
from asv.losses.common import ScaledCosineLoss, check_metric_input
from common.errors import InputError


class SASVEmbeddingLoss(nn.Module):
    """Sub-modules `aamsoftmax` (class weights (classes, D), the spoof class last when there is one) and
    `angleproto` (learnt cosine scale `w` and bias `b`).

    Prototypical term (SASV2's loss/angleproto_sasv.py): for bona fide pair i, its first utterance is the query
    and the second the prototype of speaker i; candidates are the second utterances of all P pairs, so each
    spoof pair adds one spoofed negative (never a target).
    Loss = CE(AAM logits of all 2P utterances) + CE(w * cos(query, candidates) + b, i)."""

    def __init__(self, embedding_dim: int, num_classes: int, spoof_class: int | None = None, margin: float = 0.2,
                 scale: float = 30.0, init_w: float = 10.0, init_b: float = -5.0):
        super().__init__()
        if spoof_class is not None and not 0 <= spoof_class < num_classes:
            raise InputError(f"sasv_e2e: spoof_class {spoof_class} is not one of the {num_classes} classes")
        self.embedding_dim, self.spoof_class = embedding_dim, spoof_class
        self.aamsoftmax = AAMSoftmax(embedding_dim, num_classes, margin=margin, scale=scale)
        self.angleproto = ScaledCosineLoss(init_w, init_b)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_metric_input(x, "sasv_e2e")
        loss_c, acc = self.aamsoftmax(x, label)
        bona = label != self.spoof_class if self.spoof_class is not None else torch.ones_like(label, dtype=torch.bool)
        n = int(bona.sum())
        if n < 2:
            raise InputError(f"sasv_e2e: needs at least 2 bona fide speaker pairs per batch, got {n}")
        if not bool(bona[:n].all()):
            raise InputError("sasv_e2e: bona fide pairs must come first in the batch (data.samplers.SASVPairSampler)")
        query = F.normalize(x[:n, 0], dim=1)
        candidates = F.normalize(x[:, 1:].mean(dim=1), dim=1)
        logits = self.angleproto.logits(query @ candidates.T)                  # (N, N + S)
        target = torch.arange(n, device=x.device)
        loss_p = F.cross_entropy(logits, target)
        return loss_c + loss_p, acc

