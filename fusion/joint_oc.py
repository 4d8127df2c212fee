"""Joint-optimisation back-end of Ge, Tak, Todisco and Evans (EURECOM): Conv1d stack + MLP + OC-softmax.

"On the potential of jointly-optimised solutions to spoofing attack detection and automatic speaker
verification", IberSPEECH 2022, and "Can spoofing countermeasure and speaker verification systems be
jointly optimised?", ICASSP 2023 (eurecom-asp/sasv-joint-optimisation, models/ResNetSE34V2_AASIST_OC.py).
The CM embedding is projected to the ASV dimension (Linear + LeakyReLU), stacked with the enrolment and
test ASV embeddings as 3 channels, passed through Conv1d(k=3)+BN+LeakyReLU layers (64-128-256 channels),
average-pooled to 4 positions and an MLP (1024-512-256) to a SASV embedding. A one-class softmax
(Zhang, Jiang and Duan, IEEE SPL 2021) pulls bona fide targets towards a learnt centre (cosine > r_real)
and pushes non-targets and spoofs away (cosine < r_fake); the SASV score is the cosine to the centre.
Nothing here detaches its inputs, so the same module serves cached embeddings and end-to-end training.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import InputError
from fusion.base import EmbeddingBackend, check_binary_labels


class JointOC(EmbeddingBackend):
    """forward -> (cosine to the OC-softmax centre (B,), {'embedding': (B, hidden[-1])}).

    Loss (binary labels, 1 target / 0 non-target or spoof):
    mean softplus(alpha * (r_real - cos)) over targets and softplus(alpha * (cos - r_fake)) over the rest.
    Defaults r_real 0.8, r_fake 0.2, alpha 10 follow the released configs (configs/*_OC*.conf); the
    OC-softmax paper used 0.9 / 0.2 / 20. Contains BatchNorm: call .eval() before scoring.
    """

    def __init__(self, asv_dim: int = 192, cm_dim: int = 160, conv_channels: Sequence[int] = (64, 128, 256),
                 pool_size: int = 4, hidden: Sequence[int] = (512, 256), r_real: float = 0.8,
                 r_fake: float = 0.2, alpha: float = 10.0, negative_slope: float = 0.3):
        super().__init__()
        if not -1.0 <= r_fake < r_real <= 1.0:
            raise InputError(f"joint_oc: options need -1 <= r_fake < r_real <= 1, got r_fake={r_fake}, r_real={r_real}")
        if alpha <= 0:
            raise InputError(f"joint_oc: option 'alpha' must be positive, got {alpha}")
        if len(conv_channels) == 0 or len(hidden) == 0 or pool_size < 1:
            raise InputError("joint_oc: options 'conv_channels' and 'hidden' need at least one entry, 'pool_size' >= 1")
        self.asv_dim, self.cm_dim = int(asv_dim), int(cm_dim)
        self.r_real, self.r_fake, self.alpha = float(r_real), float(r_fake), float(alpha)
        self.cm_proj = nn.Sequential(nn.Linear(self.cm_dim, self.asv_dim), nn.LeakyReLU(negative_slope))
        convs: list[nn.Module] = []
        channels = 3
        for out in conv_channels:
            convs += [nn.Conv1d(channels, int(out), kernel_size=3, padding=1, bias=False),
                      nn.BatchNorm1d(int(out)), nn.LeakyReLU(negative_slope)]
            channels = int(out)
        self.convs = nn.Sequential(*convs)
        self.pool = nn.AdaptiveAvgPool1d(int(pool_size))
        mlp: list[nn.Module] = []
        width = channels * int(pool_size)
        for units in hidden:
            mlp += [nn.Linear(width, int(units)), nn.LeakyReLU(negative_slope)]
            width = int(units)
        self.mlp = nn.Sequential(*mlp)
        self.centre = nn.Parameter(torch.empty(1, width))
        nn.init.kaiming_uniform_(self.centre, a=0.25)

    def forward(self, enr: torch.Tensor, tst: torch.Tensor,
                cm: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_inputs(enr, tst, cm)
        x = torch.stack([enr, tst, self.cm_proj(cm)], dim=1)  # (B, 3, asv_dim)
        x = torch.flatten(self.pool(self.convs(x)), start_dim=1)
        embedding = self.mlp(x)
        scores = F.normalize(embedding, dim=1) @ F.normalize(self.centre, dim=1).squeeze(0)
        return scores, {"embedding": embedding}

    def loss(self, output: tuple[torch.Tensor, dict[str, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        cos = output[0]
        labels = check_binary_labels(labels, cos.shape[0], "joint_oc")
        margin = torch.where(labels == 1, self.r_real - cos, cos - self.r_fake)
        return F.softplus(self.alpha * margin).mean()
