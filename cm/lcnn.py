"""LFCC-LCNN countermeasure: linear-frequency cepstral features into a light CNN with max-feature-map units.

The LCNN body is the one of Lavrentyeva et al. (Interspeech 2019) as used by the LFCC-LCNN baseline of
ASVspoof 2021 (Wang & Yamagishi): 5x5 then alternating 1x1 / 3x3 convolutions, each followed by a
max-feature-map (MFM) activation that keeps the larger of two channel halves, four 2x2 max-pools and
affine-free BatchNorm. Where the baseline runs two BLSTM layers over time, this model pools mean and
standard deviation over time into a linear embedding: cheaper on CPU and length-independent.

Why it is here: on the embedded synthetic corpus, spoofing artefacts are spectral statistics (envelope
smoothing, band aperiodicity, quantisation noise), which a cepstral front end exposes directly, so this
model learns the training attacks in a couple of CPU minutes where a raw-waveform AASIST needs hours.
`LCNN-LFCC-LPS` adds a second body on the log power spectrum, whose harmonics show the excitation and phase
artefacts (sine sources, missing jitter, Griffin-Lim phase) that 20 linear cepstra smooth away.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

# Every constructor argument of each architecture.
_LFCC_LCNN = dict(features="lfcc", n_filters=20, n_ceps=20, channels=[32, 48, 64, 32], embedding_dim=128, cmn=True,
                  dropout=0.3, sample_rate=16000)
CONFIGS: dict[str, dict] = {
    "LCNN": _LFCC_LCNN,
    # Two streams: the LFCC body above plus a narrower one on the log power spectrum (the demo's CM).
    "LCNN-LFCC-LPS": {**_LFCC_LCNN, "features": ["lfcc", "lps"], "channels": [[32, 48, 64, 32], [16, 24, 32, 16]]},
}


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) orthonormal DCT-II matrix (first n_out coefficients)."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.cos(torch.pi / n_in * (n + 0.5) * k) * (2.0 / n_in) ** 0.5
    m[0] /= 2 ** 0.5
    return m.float()


class LFCC(nn.Module):
    """(B, T) waveform -> (B, 3 * n_ceps, frames) LFCC with deltas and double deltas (20 ms window, 10 ms hop)."""

    def __init__(self, n_filters: int = 20, n_ceps: int = 20, sample_rate: int = 16000, n_fft: int = 512,
                 win_length: int = 320, hop_length: int = 160):
        super().__init__()
        if n_ceps > n_filters:
            raise ValueError(f"LFCC: n_ceps ({n_ceps}) cannot exceed n_filters ({n_filters})")
        self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=n_fft, win_length=win_length,
                                                             hop_length=hop_length, power=2.0)
        fbank = torchaudio.functional.linear_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_filters, sample_rate)
        self.register_buffer("fbank", fbank, persistent=False)              # (bins, filters)
        self.register_buffer("dct", dct_matrix(n_filters, n_ceps), persistent=False)
        self.n_out = 3 * n_ceps

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        power = self.spectrogram(wave)                                       # (B, bins, frames)
        ceps = self.dct @ torch.log(self.fbank.t() @ power + 1e-8)           # (B, n_ceps, frames)
        delta = torchaudio.functional.compute_deltas(ceps)
        return torch.cat([ceps, delta, torchaudio.functional.compute_deltas(delta)], dim=1)


class LogPowerSpectrum(nn.Module):
    """(B, T) waveform -> (B, 256, frames) log power spectrum (512-point FFT without the DC bin): fine enough
    to show harmonics, jitter and quantisation noise that 20 cepstra smooth away."""

    def __init__(self, n_fft: int = 512, win_length: int = 320, hop_length: int = 160):
        super().__init__()
        self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=n_fft, win_length=win_length,
                                                             hop_length=hop_length, power=2.0)
        self.n_out = n_fft // 2

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(self.spectrogram(wave)[:, 1:] + 1e-8)


class _MaxOfHalves(torch.autograd.Function):
    """max(a, b) of the two channel halves, with the gradient of `torch.maximum` (exact ties split it in half)
    computed from one saved mask: torch.maximum's own backward makes six passes over the map and took a third
    of an LCNN training step on the CPU. Ties do happen (about one per batch in the first layer, by float
    coincidence), so they are kept, by index, to give bit-identical gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        ctx.save_for_backward(a > b)
        tie = a == b
        ctx.ties = tie.nonzero(as_tuple=True) if tie.any() else None
        return torch.maximum(a, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (first,) = ctx.saved_tensors
        c = grad.shape[1]
        out = grad.new_empty(grad.shape[0], 2 * c, *grad.shape[2:])
        grad_a, grad_b = out[:, :c], out[:, c:]
        torch.mul(grad, first, out=grad_a)
        torch.sub(grad, grad_a, out=grad_b)                  # exact: grad - grad = 0, grad - 0 = grad
        if ctx.ties is not None:
            half = grad[ctx.ties] / 2
            grad_a[ctx.ties] = half
            grad_b[ctx.ties] = half
        return out


class MaxFeatureMap(nn.Module):
    """Max of the two halves of the channels: a competitive activation that halves the width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _MaxOfHalves.apply(x)
        a, b = x.chunk(2, dim=1)
        return torch.maximum(a, b)


class MaxPool2x2(nn.Module):
    """`nn.MaxPool2d(2)`. Without autograd, the max of the four strided quarter maps: the same values, ~8x
    faster than the CPU's NCHW max-pool kernel (docs/benchmarks.md); training keeps max_pool2d, whose
    backward is faster than one through strided maxima."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return F.max_pool2d(x, 2)
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        x = x[:, :, :h, :w]
        rows = torch.maximum(x[..., 0::2], x[..., 1::2])
        return torch.maximum(rows[:, :, 0::2], rows[:, :, 1::2])


def _mfm_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, 2 * c_out, kernel, padding=kernel // 2), MaxFeatureMap())


FEATURES = ("lfcc", "lps")


def _body(c1: int, c2: int, c3: int, c4: int) -> nn.Sequential:
    return nn.Sequential(
        _mfm_conv(1, c1, 5), MaxPool2x2(),
        _mfm_conv(c1, c1, 1), nn.BatchNorm2d(c1, affine=False),
        _mfm_conv(c1, c2, 3), MaxPool2x2(), nn.BatchNorm2d(c2, affine=False),
        _mfm_conv(c2, c2, 1), nn.BatchNorm2d(c2, affine=False),
        _mfm_conv(c2, c3, 3), MaxPool2x2(),
        _mfm_conv(c3, c3, 1), nn.BatchNorm2d(c3, affine=False),
        _mfm_conv(c3, c4, 3), nn.BatchNorm2d(c4, affine=False),
        _mfm_conv(c4, c4, 1), nn.BatchNorm2d(c4, affine=False),
        _mfm_conv(c4, c4, 3), MaxPool2x2(),
    )


class Stream(nn.Module):
    """One feature type through its own LCNN body: (B, T) waveform -> (B, channels x rows, frames)."""

    def __init__(self, features: str, channels: list, n_filters: int, n_ceps: int, cmn: bool, sample_rate: int):
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"LCNN: features must be 'lfcc' or 'lps' (log power spectrum), or a list of them, "
                             f"got {features!r}")
        if len(channels) != 4:
            raise ValueError(f"LCNN: channels must list 4 stage widths (or one such list per feature stream), "
                             f"got {channels!r}")
        self.features = LFCC(n_filters, n_ceps, sample_rate) if features == "lfcc" else LogPowerSpectrum()
        self.cmn = cmn
        self.body = _body(*(int(c) for c in channels))
        self.width = int(channels[3]) * (self.features.n_out // 16)          # channels x feature rows left
        if self.width == 0:
            raise ValueError(f"LCNN: {self.features.n_out} feature rows are too few for four 2x2 pools (need >= 16)")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.features(wave)
        if self.cmn:
            x = x - x.mean(dim=2, keepdim=True)
        return self.body(x.unsqueeze(1)).flatten(1, 2)


class LCNN(nn.Module):
    """(B, T) waveform -> (embedding (B, embedding_dim), logits (B, 2)); logits[:, 1] is bona fide.

    `features`: 'lfcc' (60 LFCC with deltas, the ASVspoof 2021 baseline), 'lps' (256-bin log power spectrum,
    the STC LCNN input), or a list of both: one LCNN body per feature type, their time-pooled statistics
    joined into one embedding. The two see different artefacts: 20 linear filters smooth away the harmonics
    that show excitation and phase artefacts, which the 31 Hz bins of the power spectrum resolve.
    `channels` are the MFM output widths of the four stages (one list, or one list per feature type);
    `cmn` subtracts each utterance's mean over time from the features (removes a stationary channel colouring).
    Every argument comes from a `CONFIGS` entry (`cm.build_model` passes it; options override it)."""

    min_samples = 15 * 160          # 16 frames: one survives four pools (a class attribute: known before building)

    def __init__(self, features: str | list, n_filters: int, n_ceps: int, channels: list, embedding_dim: int,
                 cmn: bool, dropout: float, sample_rate: int):
        super().__init__()
        kinds = [features] if isinstance(features, str) else list(features)
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"LCNN: features must name each feature type once, got {features!r}")
        per_stream = channels if channels and isinstance(channels[0], (list, tuple)) else [channels] * len(kinds)
        if len(per_stream) != len(kinds):
            raise ValueError(f"LCNN: {len(per_stream)} channel lists for {len(kinds)} feature streams {kinds}")
        self.streams = nn.ModuleList(Stream(kind, list(ch), n_filters, n_ceps, cmn, sample_rate)
                                     for kind, ch in zip(kinds, per_stream, strict=True))
        pooled = sum(stream.width for stream in self.streams)
        self.embedding = nn.Linear(2 * pooled, embedding_dim)
        self.out_layer = nn.Linear(embedding_dim, 2)
        self.dropout = dropout
        self.embedding_dim = embedding_dim

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if wave.dim() != 2:
            raise ValueError(f"LCNN expects a (batch, samples) waveform, got shape {tuple(wave.shape)}")
        if wave.shape[1] < self.min_samples:
            raise ValueError(f"LCNN needs at least {self.min_samples} samples per input, got {wave.shape[1]}")
        h = torch.cat([stream(wave) for stream in self.streams], dim=1)     # (B, channels x rows, frames)
        h = F.dropout(h, self.dropout, self.training)
        std = (h.var(dim=2, correction=0) + 1e-6).sqrt()                     # finite gradient on one frame
        embedding = self.embedding(torch.cat([h.mean(dim=2), std], dim=1))
        return embedding, self.logits_from_embedding(embedding)

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 2 logits of an embedding `forward` returned: lets cached embeddings give both logits."""
        return self.out_layer(F.dropout(F.leaky_relu(embedding), self.dropout, self.training))
