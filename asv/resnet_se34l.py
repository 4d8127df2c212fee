"""ResNetSE34L: voxceleb_trainer's fast quarter-width SE-ResNet-34 ("Fast ResNet-34", SAP).

Parameter names match voxceleb_trainer's models/ResNetSE34L.py so `asv.checkpoint` loads its checkpoints by
stripping `__S__.`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from asv.blocks import attentive_statistics, check_encoder_type, init_resnet, make_stages
from asv.features import WIN_LENGTH, LogMelFrontend, SpecAugmentFn, augmenter, check_wave, resolve_spec_augment

CONFIG = {
    "n_mels": 40,
    "embedding_dim": 512,
    "encoder_type": "SAP",           # "SAP" (attentive mean) or "ASP" (attentive mean + std)
    "channels": (16, 32, 64, 128),
    "layers": (3, 4, 6, 3),
    "spec_augment": None,            # used when forward(aug=True): True, data.augment.SpecAugment kwargs, or a callable
}


class ResNetSE34L(nn.Module):
    """The quarter-width "Fast ResNet-34" with self-attentive pooling of Chung et al., "In defence of metric
    learning for speaker recognition", Interspeech 2020 (clovaai/voxceleb_trainer, ResNetSE34L.py).

    wave (B, T) float32 at 16 kHz, T >= 400 -> embedding (B, embedding_dim), not length-normalised (cosine
    scoring normalises). 40 log-mels (no pre-emphasis, as in the seed; Hamming 25/10 ms, instance norm per
    band) go through a 7x7 stem with frequency stride 2 and four SE-ResNet stages (channels 16-32-64-128,
    depths 3-4-6-3, strides 1-2-2-1). Why:
    - it is the cheapest of the three speaker models (1.4 M parameters, ResNetSE34V2 8.0 M): a quarter of the
      full width, and the stem halves the frequency axis at once;
    - frequency is averaged away before pooling, so attention only weighs frames (SAP; ASP adds the
      weighted standard deviation);
    - the stem applies BatchNorm before ReLU (unlike ResNetSE34V2), and the initialisation is
      voxceleb_trainer's, so that its checkpoints reproduce its embeddings.
    Every argument comes from `CONFIG` (`asv.build_model` passes it; options override it).
    """
    min_samples = WIN_LENGTH   # shortest input (one analysis window); the stages check it per file
    # whole utterances (crop `full`) on ATen's convolutions: oneDNN builds a primitive per input length, and this
    # model's convolutions are small enough for that to cost more than they do (pipeline/stages/extract.py)
    whole_utterance_convolutions = "aten"

    def __init__(self, n_mels: int, embedding_dim: int, encoder_type: str, channels: tuple[int, ...],
                 layers: tuple[int, ...], spec_augment: Optional[SpecAugmentFn | bool | dict]):
        super().__init__()
        check_encoder_type(encoder_type, "ResNetSE34L")
        self.embedding_dim = embedding_dim
        self.encoder_type = encoder_type
        self.spec_augment = resolve_spec_augment(spec_augment, "ResNetSE34L")
        self.features = LogMelFrontend(n_mels, pre_emphasis=None, norm="instance")

        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=7, stride=(2, 1), padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(
            channels[0], channels, layers, strides=(1, 2, 2, 1))

        width = channels[3]
        self.sap_linear = nn.Linear(width, width)
        self.attention = nn.Parameter(torch.empty(width, 1))
        nn.init.xavier_normal_(self.attention)
        self.fc = nn.Linear(width * (2 if encoder_type == "ASP" else 1), embedding_dim)
        init_resnet(self)

    def forward(self, wave: torch.Tensor, aug: bool = False) -> torch.Tensor:
        check_wave(wave, "ResNetSE34L")
        x = self.features(wave, augmenter("ResNetSE34L", aug, self.spec_augment)).unsqueeze(1)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.mean(dim=2).transpose(1, 2)                     # (B, frames, C): frequency averaged
        w = F.softmax(torch.tanh(self.sap_linear(x)) @ self.attention, dim=1)   # (B, frames, 1)
        return self.fc(attentive_statistics(x, w, 1, self.encoder_type == "ASP", 1e-5))
