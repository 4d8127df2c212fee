"""SKA-TDNN as in sasv-challenge/SASV2_Baseline (models/SKA_TDNN.py): the SASV 2023 baseline speaker encoder.

Parameter names match that file so `asv.checkpoint` loads its checkpoints by stripping `__S__.`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
from torch import nn

from asv.ecapa_tdnn import add_tdnn_layers, tdnn_embedding
from asv.features import WIN_LENGTH, LogMelFrontend, SpecAugmentFn, augmenter, check_wave, resolve_spec_augment
from common.errors import InputError

CONFIG = {
    "C": 1024,                       # channels of the SE-Res2 blocks (the SASV2 MainModel always builds 1024)
    "embedding_dim": 192,
    "n_mels": 80,
    "spec_augment": None,            # used when forward(aug=True): True, data.augment.SpecAugment kwargs, or a callable
}

FRONT_CHANNELS = 128                 # width of the 2-D front, fixed in the seed
SK_KERNELS = (3, 5)                  # the two receptive fields each selective-kernel attention chooses between
SK_REDUCTION = 8
SK_MIN_HIDDEN = 16                   # the seed's L: floor on the attention bottleneck width


def _halved(size: int) -> int:
    """Output length of a 3-tap, stride-2, padding-1 convolution (the front's frequency downsampling)."""
    return (size - 1) // 2 + 1


class SKAttention(nn.Module):
    """Selective-kernel attention (Li et al., SKNet) over 2-D feature maps (B, C, F, T): parallel convolutions with
    different kernel sizes, mixed by per-branch softmax weights computed from their pooled sum. `axis="freq"` gives
    one weight per frequency bin (the seed's fwSKAttention), `axis="channel"` one per channel (cwSKAttention), so
    the network picks its receptive field per bin or per channel."""

    def __init__(self, axis: str, size: int, channels: int = FRONT_CHANNELS, kernels: Sequence[int] = SK_KERNELS,
                 reduction: int = SK_REDUCTION):
        super().__init__()
        if axis not in ("freq", "channel"):
            raise InputError(f"SKA-TDNN: unknown attention axis '{axis}' (valid: freq, channel)")
        self.axis = axis
        self.convs = nn.ModuleList(nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(channels, channels, kernel_size=k, padding=k // 2)),
            ("relu", nn.ReLU()),
            ("bn", nn.BatchNorm2d(channels))])) for k in kernels)
        hidden = max(SK_MIN_HIDDEN, size // reduction)
        self.fc = nn.Linear(size, hidden)
        self.relu = nn.ReLU()
        self.fcs = nn.ModuleList(nn.Linear(hidden, size) for _ in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([conv(x) for conv in self.convs])          # (K, B, C, F, T)
        fused = feats.sum(dim=0)
        if self.axis == "freq":
            pooled = fused.mean(dim=(1, 3))                            # (B, F)
        else:
            pooled = fused.mean(dim=(2, 3))                            # (B, C)
        z = self.relu(self.fc(pooled))
        weights = torch.softmax(torch.stack([fc(z) for fc in self.fcs]), dim=0)   # (K, B, F or C)
        shape = (*weights.shape[:2], 1, weights.shape[2], 1) if self.axis == "freq" else (*weights.shape, 1, 1)
        return (weights.view(shape) * feats).sum(dim=0)


class ResBlock(nn.Module):
    """3x3 conv, then frequency-wise and channel-wise selective-kernel attention, residual (the seed's ResBlock)."""

    def __init__(self, channels: int, freq: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.skfwse = SKAttention("freq", freq, channels)
        self.skcwse = SKAttention("channel", channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.skcwse(self.skfwse(self.bn1(self.relu(self.conv1(x)))))
        return self.relu(out + x)


class SKATDNN(nn.Module):
    """SKA-TDNN of Mun, Heo, Jung et al., "Frequency and multi-scale selective kernel attention for speaker
    verification" (SLT 2022), in the form used as the speaker encoder of the SASV 2023 baseline (Mun et al.,
    "Towards single integrated spoofing-aware speaker verification embeddings", Interspeech 2023).

    wave (B, T) float32 at 16 kHz, T >= 400 -> embedding (B, embedding_dim), not length-normalised. The same
    80 log-mels as ECAPA-TDNN (pre-emphasis 0.97, Hamming 25/10 ms, 20-7600 Hz, per-utterance mean subtraction)
    feed a 2-D front: a stride-(2,1) conv to 128 channels, two residual blocks with frequency-wise and channel-wise
    selective-kernel attention over 3x3 and 5x5 kernels, and a second stride-(2,1) conv; its 128 x 20 maps are
    flattened into 2560 channels for the ECAPA-TDNN body (5-wide TDNN, three SE-Res2 blocks with dilations
    2/3/4, 1536-channel aggregation, context-aware attentive statistics pooling, 192-d output). Why:
    - ECAPA-TDNN's 1-D convolutions are not translation-invariant along frequency; the 2-D front with attention
      over kernel sizes lets each frequency band and channel choose its receptive field (SLT 2022 paper);
    - C = 1024 and the layer shapes follow the SASV2 baseline (30.8 M parameters), whose checkpoints load by name;
      its SE modules have no BatchNorm (commented out there), unlike msh9184/ska-tdnn's;
    - the pooling, head and front-end are ECAPA-TDNN's, reused from `asv.ecapa_tdnn` where shapes are identical.
    Every argument comes from `CONFIG` (`asv.build_model` passes it; options override it).
    """
    min_samples = WIN_LENGTH   # shortest input (one analysis window); the stages check it per file

    def __init__(self, C: int, embedding_dim: int, n_mels: int, spec_augment: Optional[SpecAugmentFn | bool | dict]):
        super().__init__()
        if C % 8:
            raise InputError(f"SKA-TDNN: C must be a multiple of the Res2 scale 8, got {C}")
        if n_mels < 4:
            raise InputError(f"SKA-TDNN: n_mels must be at least 4 for the two frequency halvings, got {n_mels}")
        self.embedding_dim = embedding_dim
        self.spec_augment = resolve_spec_augment(spec_augment, "SKA-TDNN")
        self.features = LogMelFrontend(n_mels, f_min=20.0, f_max=7600.0, pre_emphasis=0.97, norm="mean")

        freq = _halved(n_mels)
        self.frt_conv1 = nn.Conv2d(1, FRONT_CHANNELS, kernel_size=3, stride=(2, 1), padding=1)
        self.frt_bn1 = nn.BatchNorm2d(FRONT_CHANNELS)
        self.frt_block1 = ResBlock(FRONT_CHANNELS, freq)
        self.frt_block2 = ResBlock(FRONT_CHANNELS, freq)
        self.frt_conv2 = nn.Conv2d(FRONT_CHANNELS, FRONT_CHANNELS, kernel_size=3, stride=(2, 1), padding=1)
        self.frt_bn2 = nn.BatchNorm2d(FRONT_CHANNELS)

        add_tdnn_layers(self, FRONT_CHANNELS * _halved(freq), C, embedding_dim)   # the ECAPA-TDNN body

    def forward(self, wave: torch.Tensor, aug: bool = False) -> torch.Tensor:
        check_wave(wave, "SKA-TDNN")
        x = self.features(wave, augmenter("SKA-TDNN", aug, self.spec_augment)).unsqueeze(1)   # (B, 1, F, T)
        x = self.frt_bn1(self.relu(self.frt_conv1(x)))
        x = self.frt_block2(self.frt_block1(x))
        x = self.frt_bn2(self.relu(self.frt_conv2(x)))
        return tdnn_embedding(self, x.flatten(1, 2))                                         # (B, C * F, T)
