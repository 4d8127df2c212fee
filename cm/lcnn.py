"""LFCC-LCNN countermeasures: cepstral (and power-spectrum) features into a light CNN with max-feature-map units.

The LCNN body is the one of Lavrentyeva et al. (Interspeech 2019) as used by the LFCC-LCNN baseline of
ASVspoof 2021 (Wang & Yamagishi): 5x5 then alternating 1x1 / 3x3 convolutions, each followed by a
max-feature-map (MFM) activation that keeps the larger of two channel halves, four 2x2 max-pools and
affine-free BatchNorm. Three architectures (`CONFIGS`):

- `LCNN`: the toolkit's LFCC (`frontend: toolkit`, cm/features.py) and, where the baseline runs two BLSTM
  layers over time, mean and standard deviation pooled over time into a linear embedding (`pooling: stats`):
  cheaper on CPU and length-independent.
- `LCNN-LFCC-LPS` (the demo's CM) adds a second body on the log power spectrum, whose harmonics show the
  excitation and phase artefacts (sine sources, missing jitter, Griffin-Lim phase) that 20 linear cepstra
  smooth away.
- `LFCC-LCNN-ASVspoof2021`: the organisers' baseline as published (asvspoof-challenge/2021,
  LA/Baseline-LFCC-LCNN/project/baseline_LA/model.py; DF's is the same file): NII's LFCC (`frontend: nii`,
  cm/features.py) with 1024-point FFTs over 0-4 kHz and the log energy in c0, no feature normalisation, the body
  above, dropout 0.7, two BLSTM layers whose output is added to their input and averaged over time
  (`pooling: blstm`), and one output unit trained through a sigmoid (binary cross-entropy).

Why the toolkit variant exists: on the embedded synthetic corpus, spoofing artefacts are spectral statistics
(envelope smoothing, band aperiodicity, quantisation noise), which a cepstral front end exposes directly, so
`LCNN` learns the training attacks in a couple of CPU minutes where a raw-waveform AASIST needs hours.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from cm.features import FRONTENDS, LFCC, NIILFCC, LogPowerSpectrum, PowerSpectrumForExport

# Every constructor argument of each architecture.
_LFCC_LCNN = dict(features="lfcc", frontend="toolkit", n_filters=20, n_ceps=20, n_fft=512, max_freq=1.0,
                  energy=False, channels=[32, 48, 64, 32], embedding_dim=128, cmn=True, dropout=0.3,
                  pooling="stats", sample_rate=16000)
CONFIGS: dict[str, dict] = {
    "LCNN": _LFCC_LCNN,
    # Two streams: the LFCC body above plus a narrower one on the log power spectrum (the demo's CM).
    "LCNN-LFCC-LPS": {**_LFCC_LCNN, "features": ["lfcc", "lps"], "channels": [[32, 48, 64, 32], [16, 24, 32, 16]]},
    # The ASVspoof 2021 LFCC-LCNN baseline (baseline_LA/model.py): frame_lens 320, frame_hops 160, fft_n 1024,
    # lfcc_dim 20 with deltas, lfcc_max_freq 0.5, with_energy=True; Dropout(0.7); BLSTM x2; Linear(96, 1).
    "LFCC-LCNN-ASVspoof2021": {**_LFCC_LCNN, "frontend": "nii", "n_fft": 1024, "max_freq": 0.5, "energy": True,
                               "cmn": False, "dropout": 0.7, "pooling": "blstm", "embedding_dim": None},
}
POOLINGS = ("stats", "blstm")

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


class MFMConvForExport(nn.Module):
    """A convolution and its MaxFeatureMap for the ONNX exporter: max(a, b) = b + relu(a - b), a - b being one
    convolution with the weight difference. ONNX Runtime runs Conv, Relu and Add in its blocked channel layout;
    a channel split and Max each need the map converted out of it and back, which took a third of the exported
    LCNN's time (docs/benchmarks.md). The same function up to float rounding."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        half = conv.out_channels // 2
        self.second = nn.Conv2d(conv.in_channels, half, conv.kernel_size, padding=conv.padding)
        self.difference = nn.Conv2d(conv.in_channels, half, conv.kernel_size, padding=conv.padding)
        (w_a, w_b), (b_a, b_b) = conv.weight.detach().chunk(2), conv.bias.detach().chunk(2)
        with torch.no_grad():
            self.second.weight.copy_(w_b)
            self.second.bias.copy_(b_b)
            self.difference.weight.copy_(w_a - w_b)
            self.difference.bias.copy_(b_a - b_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(x) + F.relu(self.difference(x))


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


def _lfcc(frontend: str, n_filters: int, n_ceps: int, n_fft: int, max_freq: float, energy: bool,
          sample_rate: int) -> nn.Module:
    """The LFCC front end named by `frontend` (cm/features.py)."""
    if frontend not in FRONTENDS:
        raise ValueError(f"LCNN: frontend must be 'toolkit' (the toolkit's LFCC) or 'nii' (the LFCC of the ASVspoof "
                         f"2021 baseline), got {frontend!r}")
    if frontend == "nii":
        return NIILFCC(n_filters, n_ceps, sample_rate, n_fft=n_fft, max_freq=max_freq, energy=energy)
    if max_freq != 1.0 or energy:
        raise ValueError(f"LCNN: max_freq ({max_freq}) and energy ({energy}) are options of frontend 'nii'; the "
                         f"toolkit LFCC covers 0-8 kHz without an energy coefficient")
    return LFCC(n_filters, n_ceps, sample_rate, n_fft=n_fft)


class Stream(nn.Module):
    """One feature type through its own LCNN body: (B, T) waveform -> (B, channels x rows, frames)."""

    def __init__(self, features: str, channels: list, lfcc: dict, cmn: bool):
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"LCNN: features must be 'lfcc' or 'lps' (log power spectrum), or a list of them, "
                             f"got {features!r}")
        if len(channels) != 4:
            raise ValueError(f"LCNN: channels must list 4 stage widths (or one such list per feature stream), "
                             f"got {channels!r}")
        self.features = _lfcc(**lfcc) if features == "lfcc" else LogPowerSpectrum()
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


class BLSTMPooling(nn.Module):
    """The ASVspoof 2021 baseline's back-end: two bidirectional LSTM layers of the body's width (half per
    direction), their output added to their input, averaged over time: (B, width, frames) -> (B, width)."""

    def __init__(self, width: int):
        super().__init__()
        if width % 2:
            raise ValueError(f"LCNN: pooling 'blstm' needs an even body width (channels x rows), got {width}")
        self.lstm1 = nn.LSTM(width, width // 2, bidirectional=True, batch_first=True)
        self.lstm2 = nn.LSTM(width, width // 2, bidirectional=True, batch_first=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.transpose(1, 2)                                                # (B, frames, width)
        y = self.lstm2(self.lstm1(x)[0])[0]
        return (y + x).mean(dim=1)


class LCNN(nn.Module):
    """(B, T) waveform -> (embedding (B, embedding_dim), logits (B, 2)); logits[:, 1] is bona fide.

    `features`: 'lfcc' (60 LFCC with deltas), 'lps' (256-bin log power spectrum, the STC LCNN input), or a list of
    both: one LCNN body per feature type, their outputs joined along the channels. The two see different
    artefacts: 20 linear filters smooth away the harmonics that show excitation and phase artefacts, which the
    31 Hz bins of the power spectrum resolve.
    `frontend`: which LFCC the 'lfcc' stream computes (cm/features.py): 'toolkit' (`LFCC`) or 'nii' (`NIILFCC`, the
    ASVspoof 2021 baseline's), with `n_fft`, and for 'nii' only `max_freq` (fraction of 8 kHz) and `energy` (log
    energy in c0). `channels` are the MFM output widths of the four stages (one list, or one list per feature
    type); `cmn` subtracts each utterance's mean over time from the features (removes a stationary channel
    colouring).
    `pooling`: 'stats' pools mean and standard deviation over time into a linear `embedding_dim` embedding and
    scores it through a leaky ReLU and two logits; 'blstm' is the baseline's back-end (`BLSTMPooling`): the
    embedding is its time average (`embedding_dim` null: the body's width) and one linear unit gives the score s,
    returned as logits (0, s), so that softmax cross-entropy on them is the baseline's sigmoid binary
    cross-entropy and logits[:, 1] = s its score.
    Every argument comes from a `CONFIGS` entry (`cm.build_model` passes it; options override it)."""

    min_samples = 15 * 160          # 16 frames: one survives four pools (a class attribute: known before building)
    # whole utterances (crop `full`) on ATen's convolutions: oneDNN builds a primitive per input length, and this
    # model's convolutions are small enough for that to cost more than they do (pipeline/stages/extract.py)
    whole_utterance_convolutions = "aten"

    def __init__(self, features: str | list, frontend: str, n_filters: int, n_ceps: int, n_fft: int,
                 max_freq: float, energy: bool, channels: list, embedding_dim: int | None, cmn: bool, dropout: float,
                 pooling: str, sample_rate: int):
        super().__init__()
        kinds = [features] if isinstance(features, str) else list(features)
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"LCNN: features must name each feature type once, got {features!r}")
        per_stream = channels if channels and isinstance(channels[0], (list, tuple)) else [channels] * len(kinds)
        if len(per_stream) != len(kinds):
            raise ValueError(f"LCNN: {len(per_stream)} channel lists for {len(kinds)} feature streams {kinds}")
        lfcc = dict(frontend=frontend, n_filters=n_filters, n_ceps=n_ceps, n_fft=n_fft, max_freq=max_freq,
                    energy=energy, sample_rate=sample_rate)
        self.streams = nn.ModuleList(Stream(kind, list(ch), lfcc, cmn)
                                     for kind, ch in zip(kinds, per_stream, strict=True))
        width = sum(stream.width for stream in self.streams)
        if pooling not in POOLINGS:
            raise ValueError(f"LCNN: pooling must be 'stats' (mean and std into a linear embedding) or 'blstm' (the "
                             f"ASVspoof 2021 baseline's BLSTM back-end), got {pooling!r}")
        self.pooling = pooling
        if pooling == "stats":
            if embedding_dim is None:
                raise ValueError("LCNN: pooling 'stats' needs an embedding_dim")
            self.embedding = nn.Linear(2 * width, embedding_dim)
            self.out_layer = nn.Linear(embedding_dim, 2)
        else:
            if embedding_dim not in (None, width):
                raise ValueError(f"LCNN: with pooling 'blstm' the embedding is the BLSTM output ({width} values: "
                                 f"channels x rows of the body); embedding_dim must be null or {width}, got "
                                 f"{embedding_dim}")
            embedding_dim = width
            self.blstm = BLSTMPooling(width)
            self.out_layer = nn.Linear(width, 1)
        self.dropout = dropout
        self.embedding_dim = embedding_dim

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if wave.dim() != 2:
            raise ValueError(f"LCNN expects a (batch, samples) waveform, got shape {tuple(wave.shape)}")
        if wave.shape[1] < self.min_samples:
            raise ValueError(f"LCNN needs at least {self.min_samples} samples per input, got {wave.shape[1]}")
        h = torch.cat([stream(wave) for stream in self.streams], dim=1)     # (B, channels x rows, frames)
        h = F.dropout(h, self.dropout, self.training)
        if self.pooling == "blstm":
            embedding = self.blstm(h)
        else:
            std = (h.var(dim=2, correction=0) + 1e-6).sqrt()                 # finite gradient on one frame
            embedding = self.embedding(torch.cat([h.mean(dim=2), std], dim=1))
        return embedding, self.logits_from_embedding(embedding)

    def for_export(self) -> "LCNN":
        """A copy for the ONNX exporter, the same function in operators ONNX Runtime runs fast: every convolution
        with its MaxFeatureMap as `MFMConvForExport`, every MaxPool2x2 as nn.MaxPool2d (one pool in the blocked
        layout instead of strided slices and Max); the spectra as a DFT convolution (`PowerSpectrumForExport`);
        the BLSTMs as ONNX's LSTM (`runtime.onnx_ops`: torch.export would fix their sequence length)."""
        from runtime.onnx_ops import BiLSTMForExport  # the exporter's layer: imported only when exporting

        model = copy.deepcopy(self)
        for body in (stream.body for stream in model.streams):
            for i, layer in enumerate(body):
                if isinstance(layer, nn.Sequential) and isinstance(layer[-1], MaxFeatureMap):
                    body[i] = MFMConvForExport(layer[0])
                elif isinstance(layer, MaxPool2x2):
                    body[i] = nn.MaxPool2d(2)
        spectra: list[PowerSpectrumForExport] = []
        for features in (stream.features for stream in model.streams):
            if isinstance(features, NIILFCC):
                features.export_spectrum = features.export_power_spectrum()
            else:                                            # LFCC, LogPowerSpectrum: a torchaudio spectrogram
                spectrum = PowerSpectrumForExport.of(features.spectrogram)
                # streams with the same spectrum share one module, which the exported graph then computes once
                features.spectrogram = next((s for s in spectra if s.same_as(spectrum)), spectrum)
                spectra.append(features.spectrogram)
        if model.pooling == "blstm":
            model.blstm.lstm1 = BiLSTMForExport(model.blstm.lstm1)
            model.blstm.lstm2 = BiLSTMForExport(model.blstm.lstm2)
        return model

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 2 logits of an embedding `forward` returned: lets cached embeddings give both logits."""
        if self.pooling == "blstm":
            score = self.out_layer(embedding)
            return torch.cat([torch.zeros_like(score), score], dim=1)
        return self.out_layer(F.dropout(F.leaky_relu(embedding), self.dropout, self.training))
