"""Vectorised signal-processing helpers for the synthetic corpus: framing, formant responses, phase models.

Everything works frame-wise on whole utterances at once (numpy, no per-sample Python loops), which is what
makes generating an hour of audio on two CPU cores take well under a minute.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512      # 32 ms analysis window
HOP = 128        # 8 ms frame shift (N_FFT must be a multiple of HOP)
N_BINS = N_FFT // 2 + 1
FREQS = np.arange(N_BINS) * SAMPLE_RATE / N_FFT
_COS_W = np.cos(2 * np.pi * FREQS / SAMPLE_RATE)
_SIN_W = np.sin(2 * np.pi * FREQS / SAMPLE_RATE)
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT))  # periodic Hann


def n_frames(n_samples: int) -> int:
    """Frame count of `stft` for a signal of n_samples (centred frames, one every HOP samples)."""
    return n_samples // HOP + 1


def frame_times(n_samples: int) -> np.ndarray:
    """Centre of every STFT frame in samples."""
    return np.arange(n_frames(n_samples)) * HOP


def stft(x: np.ndarray) -> np.ndarray:
    """Complex STFT (frames, bins) of a 1-D signal with centred, zero-padded Hann frames."""
    n = n_frames(len(x))
    padded = np.zeros((n - 1) * HOP + N_FFT)
    padded[N_FFT // 2:N_FFT // 2 + len(x)] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n]
    return np.fft.rfft(frames * _WINDOW, axis=1)


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of `stft` (exact for an unmodified spectrogram)."""
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * _WINDOW
    t = frames.shape[0]
    r = N_FFT // HOP
    out = np.zeros((t + r - 1, HOP))
    norm = np.zeros((t + r - 1, HOP))
    blocks = frames.reshape(t, r, HOP)
    wsq = (_WINDOW ** 2).reshape(r, HOP)
    for i in range(r):
        out[i:i + t] += blocks[:, i, :]
        norm[i:i + t] += wsq[i]
    out = out.reshape(-1) / np.maximum(norm.reshape(-1), 1e-8)
    return out[N_FFT // 2:N_FFT // 2 + length]


def resonance_logmag(freq_hz: np.ndarray, bw_hz: np.ndarray) -> np.ndarray:
    """Natural-log magnitude of digital 2nd-order resonators (unit gain at DC), summed over the last axis.

    freq_hz, bw_hz: (frames, K) centre frequencies and bandwidths; returns (frames, bins). This is the
    response of a cascade of K `scipy.signal.lfilter` resonators, evaluated analytically for every frame.
    """
    r = np.exp(-np.pi * bw_hz / SAMPLE_RATE)
    theta = 2 * np.pi * freq_hz / SAMPLE_RATE
    num = np.log(1 - 2 * r * np.cos(theta) + r * r).sum(axis=1)              # (frames,)
    a = (1 + r * r)[..., None]
    c = (2 * r * np.cos(theta))[..., None] * _COS_W                           # (frames, K, bins)
    s = (2 * r * np.sin(theta))[..., None] * _SIN_W
    # |1 - r e^{j(theta-w)}|^2 |1 - r e^{-j(theta+w)}|^2 = (a - c - s)(a - c + s); one log for all K.
    den = np.prod((a - c) ** 2 - s * s, axis=1)
    return num[:, None] - 0.5 * np.log(den)


def minimum_phase(logmag: np.ndarray) -> np.ndarray:
    """Complex minimum-phase spectra (frames, bins) with the given natural-log magnitudes (real cepstrum folding)."""
    cep = np.fft.irfft(logmag, n=N_FFT, axis=1)
    fold = np.zeros_like(cep)
    fold[:, 0] = cep[:, 0]
    fold[:, 1:N_FFT // 2] = 2 * cep[:, 1:N_FFT // 2]
    fold[:, N_FFT // 2] = cep[:, N_FFT // 2]
    return np.exp(np.fft.rfft(fold, axis=1))


def lifter(logmag: np.ndarray, order: int) -> np.ndarray:
    """Smooths log-spectra over frequency by keeping the first `order` cepstral coefficients."""
    cep = np.fft.irfft(logmag, n=N_FFT, axis=1)
    cep[:, order + 1:N_FFT - order] = 0.0
    return np.fft.rfft(cep, axis=1).real


def smooth_curve(coeffs: np.ndarray) -> np.ndarray:
    """A smooth log-frequency curve (bins,) in dB from a few cosine coefficients: timbre or channel colouring."""
    f = np.maximum(FREQS, 50.0)
    u = np.log(f / 50.0) / np.log((SAMPLE_RATE / 2) / 50.0)  # 0..1 on a log-frequency axis
    k = np.arange(1, len(coeffs) + 1)[:, None]
    return (np.asarray(coeffs)[:, None] * np.cos(np.pi * k * u[None, :])).sum(axis=0)


def db_to_logmag(db: np.ndarray) -> np.ndarray:
    """Decibels to natural-log magnitude."""
    return np.asarray(db) * (np.log(10.0) / 20.0)


def griffin_lim(mag: np.ndarray, length: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Phase reconstruction of a magnitude spectrogram from random phase (the classic TTS vocoder artefact)."""
    phase = np.exp(2j * np.pi * rng.random(mag.shape))
    x = istft(mag * phase, length)
    for _ in range(iters):
        spec = stft(x)
        x = istft(mag * np.exp(1j * np.angle(spec)), length)
    return x


def mu_law(x: np.ndarray, bits: int) -> np.ndarray:
    """mu-law companding and quantisation to 2**bits levels, then expansion (a WaveNet-style output)."""
    mu = 2 ** bits - 1
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu


def lowpass_spec(spec: np.ndarray, cutoff_hz: float, width_hz: float = 300.0) -> np.ndarray:
    """Band limitation with a smooth raised-cosine edge, applied in the STFT domain."""
    ramp = np.clip((FREQS - (cutoff_hz - width_hz / 2)) / width_hz, 0.0, 1.0)
    gain = 0.5 + 0.5 * np.cos(np.pi * ramp)
    return spec * np.maximum(gain, 10 ** (-60 / 20))
