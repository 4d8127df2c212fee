"""MFA-Conformer as in the SASV2 baseline (sasv-challenge/SASV2_Baseline, models/MFA_Conformer.py on WeNet's
Conformer encoder with concatenated block outputs, models/wenet/transformer/encoder_cat.py).

Parameter names match its state dict (`conformer.embed.conv.0.weight`, `conformer.encoders.3.self_attn.pos_bias_u`,
`attention.0.weight`, `bn.weight`, `fc.weight`, ...) so `asv.checkpoint` loads its checkpoints by stripping `__S__.`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from asv.blocks import attentive_statistics, context_attention, context_attention_layers
from asv.features import HOP_LENGTH, LogMelFrontend, SpecAugmentFn, augmenter, check_wave, resolve_spec_augment
from common.errors import InputError

CONFIG = {
    "n_mels": 80,
    "num_blocks": 6,                 # Conformer blocks; all of their outputs are concatenated
    "d_model": 256,                  # attention dimension
    "heads": 4,
    "ffn_dim": 2048,                 # hidden units of both macaron feed-forward modules
    "kernel_size": 15,               # depthwise convolution of the convolution module
    "embedding_dim": 192,
    "dropout": 0.1,                  # WeNet's dropout_rate = positional_dropout_rate; training only
    "spec_augment": None,            # used when forward(aug=True): True, data.augment.SpecAugment kwargs, or a callable
}

LN_EPS = 1e-12                       # WeNet's LayerNorm epsilon
POOL_FLOOR = 1e-4                    # variance floor of the pooling (the seed's clamp)


def sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) sine/cosine table of Vaswani et al.: sin at even, cos at odd channels (WeNet's `pe`)."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    angles = position * frequency
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)


class Conv2dSubsampling2(nn.Module):
    """Two 3x3 convolutions (the second with stride 2) over (time, mel) and a linear map to d_model: frames /2.

    (B, T, n_mels) -> (B, (T - 1) // 2, d_model); the mel axis shrinks to (n_mels - 1) // 2 bins of d_model channels
    (WeNet writes n_mels // 2 - 1: the same for even n_mels).
    """

    def __init__(self, n_mels: int, d_model: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, d_model, 3, stride=1, padding=1), nn.ReLU(),
            nn.Conv2d(d_model, d_model, 3, stride=2), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(d_model * ((n_mels - 1) // 2), d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))                                 # (B, C, T', F')
        return self.out(x.transpose(1, 2).flatten(2))                 # (B, T', C * F')


class FeedForward(nn.Module):
    """Position-wise feed-forward: linear, swish, dropout, linear."""

    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__()
        self.w_1 = nn.Linear(d_model, hidden)
        self.w_2 = nn.Linear(hidden, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.dropout(F.silu(self.w_1(x)), self.dropout, self.training))


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL's learned biases u, v (Dai et al. 2019, section 3.3), in
    WeNet's early form that MFA-Conformer uses: the position term attends to the sinusoid of the *key's* index
    (WeNet dropped `rel_shift`, and its RelPositionalEncoding returns pe[0:T]), so

        score(i, j) = ((q_i + u) . k_j + (q_i + v) . W_pos pe_j) / sqrt(d_k).

    No masking: every utterance in a batch has the same length. Attention dropout is 0, as in WeNet's default.
    """

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        if d_model % heads:
            raise InputError(f"MFA-Conformer: d_model {d_model} is not divisible by heads {heads}")
        self.heads, self.d_k = heads, d_model // heads
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, heads, T, d_k)."""
        return x.unflatten(-1, (self.heads, self.d_k)).transpose(1, 2)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.linear_q(x)), self._split(self.linear_k(x)), self._split(self.linear_v(x))
        p = self._split(self.linear_pos(pos_emb))                               # (1, heads, T, d_k)
        content = torch.matmul(q + self.pos_bias_u.unsqueeze(1), k.transpose(-2, -1))
        position = torch.matmul(q + self.pos_bias_v.unsqueeze(1), p.transpose(-2, -1))
        attn = torch.softmax((content + position) / math.sqrt(self.d_k), dim=-1)   # (B, heads, T, T)
        return self.linear_out(torch.matmul(attn, v).transpose(1, 2).flatten(2))


class ConvolutionModule(nn.Module):
    """Pointwise conv to 2C, GLU, depthwise conv over time, BatchNorm, swish, pointwise conv (Gulati et al.)."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        if kernel_size % 2 == 0:
            raise InputError(f"MFA-Conformer: kernel_size must be odd (a centred convolution), got {kernel_size}")
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, kernel_size=1)
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.BatchNorm1d(channels)
        self.pointwise_conv2 = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)   # (B, C, T)
        x = F.silu(self.norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x).transpose(1, 2)


class ConformerBlock(nn.Module):
    """Macaron Conformer block, pre-norm: x + FFN/2, + MHSA, + conv, + FFN/2, then LayerNorm (WeNet's
    ConformerEncoderLayer with normalize_before=True, concat_after=False)."""

    def __init__(self, d_model: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.feed_forward_macaron = FeedForward(d_model, ffn_dim, dropout)
        self.self_attn = RelPositionAttention(d_model, heads)
        self.conv_module = ConvolutionModule(d_model, kernel_size)
        self.feed_forward = FeedForward(d_model, ffn_dim, dropout)
        self.norm_ff_macaron = nn.LayerNorm(d_model, eps=LN_EPS)
        self.norm_mha = nn.LayerNorm(d_model, eps=LN_EPS)
        self.norm_conv = nn.LayerNorm(d_model, eps=LN_EPS)
        self.norm_ff = nn.LayerNorm(d_model, eps=LN_EPS)
        self.norm_final = nn.LayerNorm(d_model, eps=LN_EPS)
        # Never used. The WeNet version MFA-Conformer forked built this 2d -> d linear in every block whatever
        # concat_after was and only applied it with concat_after=True, which the model leaves off. It is in the
        # published checkpoints and in their 21,924,288-parameter count, so it stays for strict loading by name.
        # Frozen: it gets no gradient anyway (their optimiser never moved it either), and a trainable parameter
        # without a gradient breaks DistributedDataParallel(find_unused_parameters=False).
        self.concat_linear = nn.Linear(2 * d_model, d_model)
        self.concat_linear.requires_grad_(False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        def drop(y: torch.Tensor) -> torch.Tensor:
            return F.dropout(y, self.dropout, self.training)

        x = x + 0.5 * drop(self.feed_forward_macaron(self.norm_ff_macaron(x)))
        x = x + drop(self.self_attn(self.norm_mha(x), pos_emb))
        x = x + drop(self.conv_module(self.norm_conv(x)))
        x = x + 0.5 * drop(self.feed_forward(self.norm_ff(x)))
        return self.norm_final(x)


class ConformerEncoder(nn.Module):
    """WeNet's encoder_cat: subsampling, scaled input + sinusoid positions, Conformer blocks whose outputs are all
    concatenated (multi-scale feature aggregation), one LayerNorm over the concatenation."""

    def __init__(self, n_mels: int, num_blocks: int, d_model: int, heads: int, ffn_dim: int, kernel_size: int,
                 dropout: float):
        super().__init__()
        self.embed = Conv2dSubsampling2(n_mels, d_model)
        self.encoders = nn.ModuleList(
            ConformerBlock(d_model, heads, ffn_dim, kernel_size, dropout) for _ in range(num_blocks))
        self.after_norm = nn.LayerNorm(d_model * num_blocks, eps=LN_EPS)
        self.d_model, self.dropout = d_model, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, (T - 1) // 2, num_blocks * d_model)."""
        x = self.embed(x)
        pos_emb = sinusoids(x.shape[1], self.d_model, x.device).to(x.dtype).unsqueeze(0)
        x = F.dropout(x * math.sqrt(self.d_model), self.dropout, self.training)
        pos_emb = F.dropout(pos_emb, self.dropout, self.training)    # WeNet drops the position table too
        outs = []
        for block in self.encoders:
            x = block(x, pos_emb)
            outs.append(x)
        return self.after_norm(torch.cat(outs, dim=-1))


class MFAConformer(nn.Module):
    """MFA-Conformer of Zhang et al., "MFA-Conformer: Multi-scale Feature Aggregation Conformer for Automatic
    Speaker Verification", Interspeech 2022, as the SASV2 baseline of Mun et al., "Towards single integrated
    spoofing-aware speaker verification embeddings", Interspeech 2023, implements it.

    wave (B, T) float32 at 16 kHz, T >= 640 -> embedding (B, embedding_dim), not length-normalised (cosine scoring
    normalises). 80 log-mels (pre-emphasis 0.97, Hamming 25/10 ms, 20-7600 Hz, per-utterance mean subtraction),
    conv2d subsampling to half the frame rate and d_model channels, `num_blocks` macaron Conformer blocks (relative
    position self-attention, depthwise conv module) whose outputs are concatenated and layer-normalised, ECAPA's
    context-dependent attentive statistics pooling, BatchNorm and a linear layer. Why:
    - concatenating every block's output (MFA) lets the pooling weigh low- and high-level frame features, the
      paper's main gain over pooling the last block only; subsampling by 2 (not WeNet's 4) keeps frame resolution
      that speaker verification needs;
    - the pooling is the SASV2 file's, not the MFA-Conformer repository's speechbrain pooling: ECAPA-TDNN's
      attention on [x; mean; std] with a 256-channel bottleneck and a 1e-4 variance floor, then BN -> FC with no
      final BN; this is what the published 21,924,288-parameter checkpoints hold;
    - the front-end equals ECAPA-TDNN's so both SASV2 speaker models see the same features.
    Every argument comes from `CONFIG` (`asv.build_model` passes it; options override it).
    """
    # two subsampled frames (5 STFT frames) for the pooling's unbiased standard deviation; one would give NaN
    min_samples = 4 * HOP_LENGTH

    def __init__(self, n_mels: int, num_blocks: int, d_model: int, heads: int, ffn_dim: int, kernel_size: int,
                 embedding_dim: int, dropout: float, spec_augment: Optional[SpecAugmentFn | bool | dict]):
        super().__init__()
        if n_mels < 3 or num_blocks < 1:
            raise InputError(f"MFA-Conformer: need n_mels >= 3 and num_blocks >= 1, got {n_mels} and {num_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"MFA-Conformer: dropout must be in [0, 1), got {dropout}")
        self.embedding_dim = embedding_dim
        self.spec_augment = resolve_spec_augment(spec_augment, "MFA-Conformer")
        self.features = LogMelFrontend(n_mels, f_min=20.0, f_max=7600.0, pre_emphasis=0.97, norm="mean")
        self.conformer = ConformerEncoder(n_mels, num_blocks, d_model, heads, ffn_dim, kernel_size, dropout)
        channels = d_model * num_blocks
        self.attention = context_attention_layers(channels)     # ECAPA-TDNN's, as in the SASV2 file
        self.bn = nn.BatchNorm1d(2 * channels)
        self.fc = nn.Linear(2 * channels, embedding_dim)


    def forward(self, wave: torch.Tensor, aug: bool = False) -> torch.Tensor:
        check_wave(wave, "MFA-Conformer")
        if wave.shape[1] < self.min_samples:
            raise InputError(f"MFA-Conformer: input of {wave.shape[1]} samples is shorter than the "
                             f"{self.min_samples} the pooling needs")
        x = self.features(wave, augmenter("MFA-Conformer", aug, self.spec_augment))   # (B, n_mels, frames)
        x = self.conformer(x.transpose(1, 2)).transpose(1, 2)                         # (B, channels, frames / 2)
        pooled = attentive_statistics(x, context_attention(self.attention, x), 2, True, POOL_FLOOR)
        return self.fc(self.bn(pooled))
