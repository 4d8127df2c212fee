"""The LCNN's input features: two LFCC front ends, named for where their definition comes from, and the log power
spectrum. Each maps a (B, T) waveform to (B, features, frames) with 20 ms windows every 10 ms (1 + T // 160 frames
at 16 kHz).

`LFCC` (`frontend: toolkit`, the default of `cm.arch: LCNN` and `LCNN-LFCC-LPS`) is this toolkit's own: no
pre-emphasis, a 320-sample Hann window in a 512-point FFT (torchaudio's reflect padding), 20 linear filters over
0-8 kHz, natural log, orthonormal DCT-II, and torchaudio's 5-frame regression deltas. The models and checkpoints
trained with it keep it unchanged.

`NIILFCC` (`frontend: nii`) is the LFCC of the ASVspoof 2021 LFCC-LCNN baseline: the organisers' code
(asvspoof-challenge/2021, LA|DF/Baseline-LFCC-LCNN) computes it with `sandbox/util_frontend.py: LFCC` of
nii-yamagishilab/project-NN-Pytorch-scripts (Xin Wang), restated here step by step:

1. pre-emphasis: y[0] = x[0], y[t] = x[t] - 0.97 x[t-1] (the caller's tensor is not modified);
2. power spectrum |STFT|^2: a `win_length` (320) periodic Hamming window zero-padded to the centre of an
   `n_fft`-point frame, hop `hop_length` (160), frames centred on t * hop with `n_fft // 2` zeros padded at both
   ends (torch.stft, center=True, pad_mode constant);
3. only the first int(max_freq * (n_fft // 2 + 1)) bins are kept (max_freq 0.5 keeps 0-4 kHz, the 2021 baseline);
4. a linear triangular filter bank on the kept bins. NII places kept bin j at the nominal frequency
   (sr / 2) * max_freq * j / (kept - 1), which below max_freq 1 is not quite the bin's true frequency (the
   filters are spread over the kept bins), puts the n_filters + 2 band edges evenly from the first to the last
   nominal frequency, and makes filter i the triangle over edges i, i + 1, i + 2 (MATLAB trimf);
5. log10(filter-bank energies + eps), eps = float32 machine epsilon (1.19e-7);
6. orthonormal DCT-II over the filters, the first n_ceps coefficients;
7. `energy`: c0 replaced by log10(sum of the kept bins' power / n_fft + eps), the frame's log energy;
8. deltas d[t] = c[t + 1] - c[t - 1] (not halved), the first and last frames repeated at the edges, so
   d[0] = c[1] - c[0] and d[-1] = c[-1] - c[-2]; double deltas the same on d;
9. [c, d, dd] stacked along the features: (B, 3 * n_ceps, frames), this toolkit's (features, time) order (NII
   returns (B, frames, features)); no mean or variance normalisation.

It computes in float32 (float64 for a float64 input) with autocast off: log10 of small powers in bfloat16 would
lose the small differences cepstra are made of.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

PRE_EMPHASIS = 0.97
EPS = float(torch.finfo(torch.float32).eps)   # NII's floor inside log10, whatever the compute precision
FRONTENDS = ("toolkit", "nii")                # the `frontend` option of the LCNN: LFCC | NIILFCC


def dct_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_out, n_in) orthonormal DCT-II matrix (first n_out coefficients), computed in float64."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.cos(torch.pi / n_in * (n + 0.5) * k) * (2.0 / n_in) ** 0.5
    m[0] /= 2 ** 0.5
    return m.to(dtype)


class LFCC(nn.Module):
    """(B, T) waveform -> (B, 3 * n_ceps, frames): the toolkit's LFCC with deltas and double deltas (module
    docstring)."""

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
        delta = deltas(ceps)
        return torch.cat([ceps, delta, deltas(delta)], dim=1)


def deltas(x: torch.Tensor) -> torch.Tensor:
    """`torchaudio.functional.compute_deltas(x)` (5-frame regression, edge frames repeated) along the last axis, as
    one single-channel convolution over every row. torchaudio convolves with as many groups as rows (batch x
    coefficients), a number an ONNX graph with a dynamic batch cannot hold; the kernel and the padding are its own."""
    shape = x.shape
    rows = F.pad(x.reshape(-1, 1, shape[-1]), (2, 2), mode="replicate")
    kernel = torch.arange(-2, 3, dtype=x.dtype, device=x.device).view(1, 1, 5)
    return (F.conv1d(rows, kernel) / 10.0).reshape(shape)


def linear_filter_bank(kept_bins: int, n_filters: int, sample_rate: int, max_freq: float) -> torch.Tensor:
    """(kept_bins, n_filters) triangles on NII's nominal bin frequencies (step 4 of the module docstring), float64."""
    nominal = (sample_rate / 2) * torch.linspace(0.0, max_freq, kept_bins, dtype=torch.float64)
    edges = torch.linspace(float(nominal[0]), float(nominal[-1]), n_filters + 2, dtype=torch.float64)
    a, b, c = edges[:-2], edges[1:-1], edges[2:]
    f = nominal[:, None]
    return torch.clamp(torch.minimum((f - a) / (b - a), (c - f) / (c - b)), min=0.0)


def nii_delta(x: torch.Tensor) -> torch.Tensor:
    """x[t + 1] - x[t - 1] along the last axis (time), the edge frames repeated (NII's `delta`)."""
    padded = F.pad(x, (1, 1), mode="replicate")
    return padded[..., 2:] - padded[..., :-2]


class NIILFCC(nn.Module):
    """(B, T) waveform -> (B, 3 * n_ceps, 1 + T // hop_length): the LFCC of NII's reference implementation
    (module docstring). The defaults are NII's `LFCC` defaults with 20 ms / 10 ms frames; the ASVspoof 2021
    LFCC-LCNN baseline sets n_fft=1024, max_freq=0.5 (0-4 kHz) and energy=True."""

    def __init__(self, n_filters: int = 20, n_ceps: int = 20, sample_rate: int = 16000, n_fft: int = 512,
                 win_length: int = 320, hop_length: int = 160, max_freq: float = 1.0, energy: bool = False):
        super().__init__()
        if n_ceps > n_filters:
            raise ValueError(f"LFCC: n_ceps ({n_ceps}) cannot exceed n_filters ({n_filters})")
        if win_length > n_fft:
            raise ValueError(f"LFCC: the window ({win_length} samples) cannot exceed n_fft ({n_fft})")
        if not 0.0 < max_freq <= 1.0:
            raise ValueError(f"LFCC: max_freq is a fraction of the Nyquist frequency in (0, 1], got {max_freq}")
        self.kept_bins = int(max_freq * (n_fft // 2 + 1))
        if self.kept_bins < n_filters + 2:
            raise ValueError(f"LFCC: the {self.kept_bins} spectral bins up to max_freq {max_freq} are too few for "
                             f"{n_filters} filters")
        self.n_fft, self.win_length, self.hop_length, self.energy = n_fft, win_length, hop_length, energy
        self.register_buffer("fbank", linear_filter_bank(self.kept_bins, n_filters, sample_rate, max_freq),
                             persistent=False)                               # (kept bins, filters)
        self.register_buffer("dct", dct_matrix(n_filters, n_ceps, torch.float64), persistent=False)
        self.register_buffer("window", torch.hamming_window(win_length, periodic=True, dtype=torch.float64),
                             persistent=False)
        self.n_out = 3 * n_ceps
        self.export_spectrum: nn.Module | None = None    # the ONNX exporter's form (`for_export`), else torch.stft

    def export_power_spectrum(self) -> PowerSpectrumForExport:
        """The power spectrum of the kept bins as LCNN.for_export writes it (`PowerSpectrumForExport`)."""
        return PowerSpectrumForExport(self.n_fft, self.win_length, self.hop_length, self.window, "constant",
                                      self.kept_bins)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32
        with torch.autocast(wave.device.type, enabled=False):
            x = wave.to(dtype)
            x = torch.cat([x[:, :1], x[:, 1:] - PRE_EMPHASIS * x[:, :-1]], dim=1)
            if self.export_spectrum is not None:                                          # LCNN.for_export
                power = self.export_spectrum(x)
            else:
                spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, window=self.window.to(dtype),
                                  center=True, pad_mode="constant", onesided=True, return_complex=True)
                power = (spec.real.square() + spec.imag.square())[:, :self.kept_bins]      # (B, kept, frames)
            ceps = self.dct.to(dtype) @ torch.log10(self.fbank.t().to(dtype) @ power + EPS)  # (B, n_ceps, frames)
            if self.energy:
                energy = torch.log10(power.sum(dim=1, keepdim=True) / self.n_fft + EPS)
                ceps = torch.cat([energy, ceps[:, 1:]], dim=1)
            d = nii_delta(ceps)
            return torch.cat([ceps, d, nii_delta(d)], dim=1)


class PowerSpectrumForExport(nn.Module):
    """|STFT|^2 of the first `bins` bins (torch.stft with center=True, a window of `win_length` centred in `n_fft`)
    as one strided convolution with the windowed DFT basis, for the ONNX exporter (`LCNN.for_export`). ONNX
    Runtime runs its STFT as an FFT of n_fft points per frame, which took 20-54 % of an exported LCNN's time; a DFT
    over the window's nonzero samples and the bins the model keeps is one matrix product there. The same function
    up to float rounding (tests/test_lcnn.py)."""

    def __init__(self, n_fft: int, win_length: int, hop_length: int, window: torch.Tensor, pad_mode: str,
                 bins: int):
        super().__init__()
        self.n_fft, self.hop_length, self.pad_mode = n_fft, hop_length, pad_mode
        self.offset = (n_fft - win_length) // 2                 # where torch.stft puts the window in a frame
        sample = torch.arange(win_length, dtype=torch.float64) + self.offset
        angle = 2 * math.pi * torch.outer(torch.arange(bins, dtype=torch.float64), sample) / n_fft
        weighted = window.to(torch.float64)
        basis = torch.cat([weighted * torch.cos(angle), -weighted * torch.sin(angle)])       # (2 bins, win)
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)

    @classmethod
    def of(cls, spectrogram: torchaudio.transforms.Spectrogram) -> PowerSpectrumForExport:
        """The same spectrum as a torchaudio power spectrogram with its defaults (all bins)."""
        s = spectrogram
        if not (s.power == 2.0 and s.pad == 0 and not s.normalized and s.center and s.onesided):
            raise ValueError(f"PowerSpectrumForExport: only a centred one-sided power spectrogram, got {s}")
        return cls(s.n_fft, s.win_length, s.hop_length, s.window, s.pad_mode, s.n_fft // 2 + 1)

    def same_as(self, other: PowerSpectrumForExport) -> bool:
        """True when `other` computes the same spectrum (frames, window, bins) from the same wave."""
        return ((self.n_fft, self.hop_length, self.pad_mode, self.offset) ==
                (other.n_fft, other.hop_length, other.pad_mode, other.offset) and
                self.basis.shape == other.basis.shape and bool(torch.equal(self.basis, other.basis)))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:                     # (B, T) -> (B, bins, frames)
        half = self.n_fft // 2
        x = F.pad(wave.unsqueeze(1), (half, half), mode=self.pad_mode)
        frames = 1 + (x.shape[-1] - self.n_fft) // self.hop_length
        spectrum = F.conv1d(x[..., self.offset:], self.basis.to(x.dtype), stride=self.hop_length)[..., :frames]
        real, imag = spectrum.chunk(2, dim=1)
        return real * real + imag * imag


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
