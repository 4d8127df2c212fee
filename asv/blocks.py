"""Pieces shared by the speaker models: the squeeze-excitation ResNet blocks of ResNetSE34V2 and ResNetSE34L,
the attentive statistics pooling they all end with, and the context-aware attention of the ECAPA-style models
(ECAPA-TDNN, SKA-TDNN, MFA-Conformer).

Attribute names follow voxceleb_trainer's models/ResNetBlocks.py so its checkpoints load by name.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from common.errors import InputError

ENCODER_TYPES = ("SAP", "ASP")  # attentive mean; attentive mean and standard deviation


class SELayer(nn.Module):
    """Channel re-weighting from globally pooled statistics (Hu et al.)."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class SEBasicBlock(nn.Module):
    """Two 3x3 convolutions + SE + residual. ReLU before BN in the first conv, as in voxceleb_trainer."""

    def __init__(self, inplanes: int, planes: int, stride: int | tuple[int, int] = 1, reduction: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.se = SELayer(planes, reduction)
        self.downsample = None
        if stride not in (1, (1, 1)) or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.relu(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        out += x if self.downsample is None else self.downsample(x)   # in place: `out` is a fresh tensor
        return self.relu(out)


def make_layer(inplanes: int, planes: int, blocks: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    """`blocks` SE basic blocks; only the first one changes resolution/width."""
    layers = [SEBasicBlock(inplanes, planes, stride)]
    layers += [SEBasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def make_stages(inplanes: int, channels: Sequence[int], depths: Sequence[int],
                strides: Sequence[int | tuple[int, int]]) -> list[nn.Sequential]:
    """The four ResNet stages (layer1..layer4)."""
    stages = []
    for planes, depth, stride in zip(channels, depths, strides, strict=True):
        stages.append(make_layer(inplanes, planes, depth, stride))
        inplanes = planes
    return stages


def init_resnet(module: nn.Module) -> None:
    """voxceleb_trainer's initialisation: Kaiming-normal (fan_out) convolutions, unit/zero BatchNorm2d."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def check_encoder_type(encoder_type: str, model_name: str) -> None:
    if encoder_type not in ENCODER_TYPES:
        raise InputError(f"{model_name}: unknown encoder_type '{encoder_type}' (valid: ASP, SAP)")


def attentive_statistics(x: torch.Tensor, w: torch.Tensor, dim: int, with_std: bool, floor: float) -> torch.Tensor:
    """Attention-weighted pooling of `x` over `dim` (weights `w` sum to 1 over it): the weighted mean (SAP), and
    with `with_std` also the weighted standard deviation (ASP), joined along dim 1. The variance is clamped at
    `floor` from below, as in the seeds (1e-5 voxceleb_trainer, 1e-4 ECAPA-TDNN): a finite gradient on
    constant inputs."""
    mu = torch.sum(x * w, dim=dim)
    if not with_std:
        return mu
    sg = torch.sqrt((torch.sum(x * x * w, dim=dim) - mu * mu).clamp(min=floor))
    return torch.cat((mu, sg), dim=1)


def context_attention_layers(channels: int, hidden: int = 256) -> nn.Sequential:
    """ECAPA-TDNN's attention over [x; mean(x); std(x)] (3 * channels in, per-channel weights over time out), in the
    seeds' layout (`attention.0/.2/.4` in their state dicts)."""
    return nn.Sequential(
        nn.Conv1d(3 * channels, hidden, kernel_size=1), nn.ReLU(), nn.BatchNorm1d(hidden), nn.Tanh(),
        nn.Conv1d(hidden, channels, kernel_size=1), nn.Softmax(dim=2))


def context_attention(attention: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Weights over time of `context_attention_layers` for x (B, C, T), without materialising the 3C-channel input.

    The first 1x1 conv is linear, so its response to the time-constant mean/std rows is a per-utterance bias:
    W [x; m; s] + b = W_x x + (W_m m + W_s s + b). Same result as the seeds, a third of the work and memory."""
    var, mean = torch.var_mean(x, dim=2)                   # unbiased variance, as torch.var in the seeds
    std = torch.sqrt(var.clamp(min=1e-4))
    first = attention[0]
    weight = first.weight.squeeze(-1)                      # (hidden, 3 * C)
    channels = x.shape[1]
    bias = torch.addmm(first.bias, torch.cat((mean, std), dim=1), weight[:, channels:].T)   # (B, hidden)
    h = torch.matmul(weight[:, :channels], x) + bias.unsqueeze(-1)
    return attention[1:](h)
