"""ECAPA-TDNN as in TaoRuijie/ECAPA-TDNN (model.py): the SASV 2022 baseline speaker encoder.

Parameter names match the seed so `asv.checkpoint` loads its checkpoints by stripping `speaker_encoder.`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from asv.blocks import attentive_statistics, context_attention, context_attention_layers
from asv.features import WIN_LENGTH, LogMelFrontend, SpecAugmentFn, augmenter, check_wave, resolve_spec_augment
from common.errors import InputError

CONFIG = {
    "C": 512,                        # channels of the SE-Res2 blocks: 512 or 1024
    "embedding_dim": 192,
    "n_mels": 80,
    "spec_augment": None,            # used when forward(aug=True): True, data.augment.SpecAugment kwargs, or a callable
}

MFA_CHANNELS = 1536                  # fixed in the seed whatever C is


class SEModule(nn.Module):
    """Squeeze-excitation over time (no BatchNorm in the bottleneck, as in the seed)."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool1d(1), nn.Conv1d(channels, bottleneck, kernel_size=1), nn.ReLU(),
            nn.Conv1d(bottleneck, channels, kernel_size=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class Bottle2neck(nn.Module):
    """SE-Res2Net block: 1x1 conv, `scale` hierarchical dilated convs on channel groups, 1x1 conv, SE, residual."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8):
        super().__init__()
        width = channels // scale
        self.width = width
        self.nums = scale - 1
        self.conv1 = nn.Conv1d(channels, width * scale, kernel_size=1)
        self.bn1 = nn.BatchNorm1d(width * scale)
        pad = (kernel_size // 2) * dilation
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size=kernel_size, dilation=dilation, padding=pad) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(self.nums))
        self.conv3 = nn.Conv1d(width * scale, channels, kernel_size=1)
        self.bn3 = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU()
        self.se = SEModule(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(self.bn1(self.relu(self.conv1(x))), self.width, dim=1)
        outs = []
        sp = None
        for i in range(self.nums):
            sp = groups[i] if sp is None else sp + groups[i]
            sp = self.bns[i](self.relu(self.convs[i](sp)))
            outs.append(sp)
        outs.append(groups[self.nums])                         # the last group passes through untouched
        out = self.bn3(self.relu(self.conv3(torch.cat(outs, dim=1))))
        return self.se(out) + x


class ECAPATDNN(nn.Module):
    """ECAPA-TDNN of Desplanques, Thienpondt and Demuynck, "ECAPA-TDNN: Emphasized Channel Attention,
    Propagation and Aggregation in TDNN based speaker verification", Interspeech 2020, as implemented by
    TaoRuijie/ECAPA-TDNN (the speaker encoder of the SASV 2022 baselines).

    wave (B, T) float32 at 16 kHz, T >= 400 -> embedding (B, embedding_dim), not length-normalised (cosine
    scoring normalises). 80 log-mels (pre-emphasis 0.97, Hamming 25/10 ms, 20-7600 Hz, per-utterance mean
    subtraction), a 5-wide TDNN stem, three SE-Res2 blocks (scale 8, dilations 2/3/4) each fed the sum of all
    earlier outputs, multi-layer feature aggregation into 1536 channels, channel- and context-dependent
    attentive statistics pooling, BatchNorm, a linear layer and BatchNorm to 192 dimensions. Why:
    - C = 1024 is the published model (15.4 M parameters here) and loads the seed's checkpoints (the SASV
      baseline configs set it); the default C = 512 (7.0 M) trains faster on a CPU;
    - the attention sees each frame together with the utterance's mean and standard deviation (global
      context); `asv.blocks.context_attention` computes it without building the 4608-channel input;
    - mean subtraction rather than instance norm and the 20-7600 Hz band follow the seed, whose checkpoints
      expect them.
    Every argument comes from `CONFIG` (`asv.build_model` passes it; options override it).
    """
    min_samples = WIN_LENGTH   # shortest input (one analysis window); the stages check it per file
    # whole utterances (crop `full`) on ATen's convolutions: oneDNN builds a primitive per input length, and this
    # model's convolutions are small enough for that to cost more than they do (pipeline/stages/extract.py)
    whole_utterance_convolutions = "aten"

    def __init__(self, C: int, embedding_dim: int, n_mels: int, spec_augment: Optional[SpecAugmentFn | bool | dict]):
        super().__init__()
        if C % 8:
            raise InputError(f"ECAPA-TDNN: C must be a multiple of the Res2 scale 8, got {C}")
        self.embedding_dim = embedding_dim
        self.spec_augment = resolve_spec_augment(spec_augment, "ECAPA-TDNN")
        self.features = LogMelFrontend(n_mels, f_min=20.0, f_max=7600.0, pre_emphasis=0.97, norm="mean")
        add_tdnn_layers(self, n_mels, C, embedding_dim)

    def forward(self, wave: torch.Tensor, aug: bool = False) -> torch.Tensor:
        check_wave(wave, "ECAPA-TDNN")
        return tdnn_embedding(self, self.features(wave, augmenter("ECAPA-TDNN", aug, self.spec_augment)))


def add_tdnn_layers(module: nn.Module, in_channels: int, C: int, embedding_dim: int) -> None:
    """ECAPA-TDNN's layers after the features, as attributes of `module` under the seed's names: a 5-wide TDNN
    stem from `in_channels` (80 mels; an SSL encoder's dimension in SSL-ECAPA) to C, three SE-Res2 blocks,
    aggregation into 1536 channels, attentive statistics, BatchNorm, linear, BatchNorm to `embedding_dim`."""
    module.conv1 = nn.Conv1d(in_channels, C, kernel_size=5, stride=1, padding=2)
    module.relu = nn.ReLU()
    module.bn1 = nn.BatchNorm1d(C)
    module.layer1 = Bottle2neck(C, kernel_size=3, dilation=2)
    module.layer2 = Bottle2neck(C, kernel_size=3, dilation=3)
    module.layer3 = Bottle2neck(C, kernel_size=3, dilation=4)
    module.layer4 = nn.Conv1d(3 * C, MFA_CHANNELS, kernel_size=1)
    module.attention = context_attention_layers(MFA_CHANNELS)
    module.bn5 = nn.BatchNorm1d(2 * MFA_CHANNELS)
    module.fc6 = nn.Linear(2 * MFA_CHANNELS, embedding_dim)
    module.bn6 = nn.BatchNorm1d(embedding_dim)


def tdnn_embedding(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Features (B, in_channels, frames) -> embedding (B, embedding_dim) through the layers `add_tdnn_layers` set;
    the attention's statistics need at least two frames."""
    x = module.bn1(module.relu(module.conv1(x)))
    x1 = module.layer1(x)
    x2 = module.layer2(x + x1)
    x3 = module.layer3(x + x1 + x2)
    x = module.relu(module.layer4(torch.cat((x1, x2, x3), dim=1)))
    pooled = attentive_statistics(x, context_attention(module.attention, x), 2, True, 1e-4)
    return module.bn6(module.fc6(module.bn5(pooled)))
