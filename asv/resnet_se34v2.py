"""ResNetSE34V2: the half-width SE-ResNet-34 of voxceleb_trainer ("In defence of metric learning", H/ASP).

Parameter names match voxceleb_trainer's models/ResNetSE34V2.py so `asv.checkpoint` loads its checkpoints by
stripping `__S__.`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from asv.blocks import attentive_statistics, check_encoder_type, init_resnet, make_stages
from asv.features import WIN_LENGTH, LogMelFrontend, SpecAugmentFn, augmenter, check_wave, resolve_spec_augment
from common.errors import InputError

CONFIG = {
    "n_mels": 64,
    "embedding_dim": 512,
    "encoder_type": "ASP",           # "ASP" (attentive statistics) or "SAP" (attentive mean)
    "channels": (32, 64, 128, 256),
    "layers": (3, 4, 6, 3),
    "spec_augment": None,            # used when forward(aug=True): True, data.augment.SpecAugment kwargs, or a callable
}


class ResNetSE34V2(nn.Module):
    """The half-width SE-ResNet-34 with attentive statistics pooling, H/ASP in Chung et al., "In defence
    of metric learning for speaker recognition", Interspeech 2020 (clovaai/voxceleb_trainer, ResNetSE34V2.py).

    wave (B, T) float32 at 16 kHz, T >= 400 -> embedding (B, embedding_dim), not length-normalised (cosine
    scoring normalises). 64 log-mels (pre-emphasis 0.97, Hamming 25/10 ms, instance norm per band) go through
    a 3x3 stem and four SE-ResNet stages (channels 32-64-128-256, depths 3-4-6-3, strides 1-2-2-2). Why:
    - the stages halve the frequency axis three times (n_mels must divide by 8) but keep it, so the pooling
      attends over channel x frequency features per frame: the model learns which bands carry the speaker;
    - ASP (attentive mean and standard deviation) is the paper's best; SAP (mean only) is the lighter option;
    - the stem applies ReLU before BatchNorm, and the initialisation is voxceleb_trainer's, so that its
      checkpoints reproduce its embeddings.
    Every argument comes from `CONFIG` (`asv.build_model` passes it; options override it).
    """
    min_samples = WIN_LENGTH   # shortest input (one analysis window); the stages check it per file

    def __init__(self, n_mels: int, embedding_dim: int, encoder_type: str, channels: tuple[int, ...],
                 layers: tuple[int, ...], spec_augment: Optional[SpecAugmentFn | bool | dict]):
        super().__init__()
        check_encoder_type(encoder_type, "ResNetSE34V2")
        if n_mels % 8:
            raise InputError(f"ResNetSE34V2: n_mels must be a multiple of 8 (three stride-2 stages), got {n_mels}")
        self.embedding_dim = embedding_dim
        self.encoder_type = encoder_type
        self.spec_augment = resolve_spec_augment(spec_augment, "ResNetSE34V2")
        self.features = LogMelFrontend(n_mels, pre_emphasis=0.97, norm="instance")

        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=3, stride=1, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(
            channels[0], channels, layers, strides=(1, 2, 2, 2))

        pooled = channels[3] * (n_mels // 8)   # channels x remaining frequency bins, attended over time
        self.attention = nn.Sequential(
            nn.Conv1d(pooled, 128, kernel_size=1), nn.ReLU(), nn.BatchNorm1d(128),
            nn.Conv1d(128, pooled, kernel_size=1), nn.Softmax(dim=2))
        self.fc = nn.Linear(pooled * (2 if encoder_type == "ASP" else 1), embedding_dim)
        init_resnet(self)

    def forward(self, wave: torch.Tensor, aug: bool = False) -> torch.Tensor:
        check_wave(wave, "ResNetSE34V2")
        x = self.features(wave, augmenter("ResNetSE34V2", aug, self.spec_augment)).unsqueeze(1)
        x = self.bn1(self.relu(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.flatten(1, 2)                                   # (B, C * F, frames)
        return self.fc(attentive_statistics(x, self.attention(x), 2, self.encoder_type == "ASP", 1e-5))
