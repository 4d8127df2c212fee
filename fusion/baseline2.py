"""SASV 2022 Baseline2: a DNN on the concatenated [enrolment ASV, test ASV, test CM] embeddings.

Jung et al., "SASV 2022: The first spoofing-aware speaker verification challenge", Interspeech 2022
(sasv-challenge/SASVC2022_Baseline, models/baseline2.py, configs/baseline2.conf): Linear + LeakyReLU(0.3)
layers of 256-128-64 units on the 544-dim concatenation (ECAPA 192 + 192 + AASIST 160), a bias-free
2-logit output layer, cross-entropy weighted [0.1 non-target, 0.9 target]; the official score is
softmax(logits)[:, 1].
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import InputError
from fusion.base import EmbeddingBackend, check_binary_labels

SCORES = ("log_odds", "softmax")


class Baseline2(EmbeddingBackend):
    """forward -> (score (B,), {'logits': (B, 2)}); logit 1 = bona fide target.

    score: 'log_odds' (default): logits[:, 1] - logits[:, 0], the log-odds of softmax[:, 1]: same ranking
        and EER as the official score, but it does not saturate at 1.0; 'softmax': softmax(logits)[:, 1].
    Loss: class-weighted cross-entropy on binary labels (1 target, 0 non-target or spoof).
    """

    def __init__(self, asv_dim: int = 192, cm_dim: int = 160, hidden: Sequence[int] = (256, 128, 64),
                 class_weights: Sequence[float] = (0.1, 0.9), negative_slope: float = 0.3, score: str = "log_odds"):
        super().__init__()
        if score not in SCORES:
            raise InputError(f"baseline2: option 'score' must be one of {list(SCORES)}, got {score!r}")
        if len(class_weights) != 2 or min(class_weights) <= 0:
            raise InputError(f"baseline2: option 'class_weights' must be two positive numbers, got {class_weights!r}")
        if len(hidden) == 0:
            raise InputError("baseline2: option 'hidden' must list at least one layer size")
        self.asv_dim, self.cm_dim, self.score_kind = int(asv_dim), int(cm_dim), score
        layers: list[nn.Module] = []
        width = 2 * self.asv_dim + self.cm_dim
        for units in hidden:
            layers += [nn.Linear(width, int(units)), nn.LeakyReLU(negative_slope)]
            width = int(units)
        self.dnn = nn.Sequential(*layers)
        self.fc_out = nn.Linear(width, 2, bias=False)
        # not persistent: the class weights are a training option, not a learnt parameter
        self.register_buffer("class_weights", torch.tensor([float(w) for w in class_weights]), persistent=False)

    def forward(self, enr: torch.Tensor, tst: torch.Tensor,
                cm: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_inputs(enr, tst, cm)
        logits = self.fc_out(self.dnn(torch.cat([enr, tst, cm], dim=1)))
        if self.score_kind == "log_odds":
            scores = logits[:, 1] - logits[:, 0]
        else:
            scores = torch.softmax(logits, dim=1)[:, 1]
        return scores, {"logits": logits}

    def loss(self, output: tuple[torch.Tensor, dict[str, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        logits = output[1]["logits"]
        labels = check_binary_labels(labels, logits.shape[0], "baseline2")
        return F.cross_entropy(logits, labels, weight=self.class_weights.to(logits.dtype))
