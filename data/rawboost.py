"""RawBoost: data boosting and augmentation on the raw waveform for spoofing countermeasures.

H. Tak, M. Kamble, J. Patino, M. Todisco, N. Evans, "RawBoost: A Raw Data Boosting and Augmentation Method
applied to Automatic Speaker Verification Anti-Spoofing", Proc. ICASSP 2022, pp. 6382-6386
(arXiv:2111.04433), as used by the SSL-AASIST recipe (TakHemlata/SSL_Anti-spoofing). Three primitives model
nuisance variability of telephony / transmission channels without any external data:

1. `lnl_convolutive_noise`: linear and non-linear convolutive noise (coding, compression, transmission
   channels, amplifier non-linearities): a sum of notch-filter cascades applied to powers of the signal;
2. `isd_additive_noise`: impulsive signal-dependent additive noise (clipping, quantisation, faulty
   components): a few random samples perturbed in proportion to their own value;
3. `ssi_additive_noise`: stationary signal-independent additive noise (thermal / electrical noise): white
   noise coloured by a random notch-filter cascade, added at a random SNR.

`RawBoost(algo, **parameters)` chains them like the original `--algo` switch (1-8, 0 = off). The parameter
names and defaults (DEFAULTS) are those of the original command line (main_SSL_LA.py). Every random draw
comes from the numpy Generator passed in, so the output is a function of the input and the seed; the code
is a vectorised re-implementation (one FFT convolution per filter bank), not a copy, and its random draws
follow a different order than the original's global numpy stream.
"""
from __future__ import annotations

import numbers
from typing import Mapping

import numpy as np
from scipy import fft as sfft

from common.errors import InputError
from data.audio import SAMPLE_RATE

DEFAULTS: dict = {
    "algo": 5,  # 0: off, 1: LnL, 2: ISD, 3: SSI, 4: 1+2+3, 5: 1+2, 6: 1+3, 7: 2+3 (in series), 8: 1 || 2
    # LnL convolutive noise (nBands .. maxG also shape the SSI noise colour)
    "nBands": 5,  # notch filters per cascade
    "minF": 20.0, "maxF": 8000.0,  # notch centre frequency, Hz (maxF <= sample_rate / 2)
    "minBW": 100.0, "maxBW": 1000.0,  # notch width, Hz
    "minCoeff": 10, "maxCoeff": 100,  # FIR taps per notch (made odd)
    "minG": 0.0, "maxG": 0.0,  # peak gain of the linear cascade, dB
    "minBiasLinNonLin": 5.0, "maxBiasLinNonLin": 20.0,  # gain of the non-linear terms below the linear one, dB
    "N_f": 5,  # order of the non-linearity (1: linear filtering only)
    # ISD impulsive noise
    "P": 10.0,  # at most P % of the samples are hit (the share is drawn from U[0, P])
    "g_sd": 2.0,  # perturbation gain: x -> x (1 + g_sd u1 u2), u1, u2 ~ U[-1, 1]
    # SSI additive noise
    "SNRmin": 10.0, "SNRmax": 40.0,  # dB, uniform
}
ALGOS: dict[int, str] = {0: "none", 1: "LnL", 2: "ISD", 3: "SSI", 4: "LnL+ISD+SSI", 5: "LnL+ISD", 6: "LnL+SSI",
                         7: "ISD+SSI", 8: "LnL||ISD"}
_INTEGER_KEYS = ("nBands", "minCoeff", "maxCoeff", "N_f")
_RANGES = (("minF", "maxF"), ("minBW", "maxBW"), ("minCoeff", "maxCoeff"), ("minG", "maxG"),
           ("minBiasLinNonLin", "maxBiasLinNonLin"), ("SNRmin", "SNRmax"))
_FREQZ_POINTS = 512  # scipy.signal.freqz's default grid, on which the original normalises the peak gain


def check_parameters(parameters: Mapping, sample_rate: int = SAMPLE_RATE, with_algo: bool = False) -> dict:
    """DEFAULTS updated with `parameters`, checked; one-line InputErrors name the offending option."""
    valid = set(DEFAULTS) if with_algo else set(DEFAULTS) - {"algo"}
    unknown = sorted(set(parameters) - valid, key=str)
    if unknown:
        raise InputError(f"rawboost: unknown option {unknown[0]!r}; valid options are {sorted(valid)}")
    p = {**DEFAULTS, **parameters}
    for key in sorted(valid):
        value = p[key]
        integral = key in _INTEGER_KEYS or key == "algo"
        kind = numbers.Integral if integral else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not np.isfinite(value):
            raise InputError(f"rawboost: {key!r} must be {'an integer' if integral else 'a number'}, got {value!r}")
    if with_algo and p["algo"] not in ALGOS:
        raise InputError(f"rawboost: unknown algo {p['algo']!r}; choose 0-8 ({_algo_list()})")
    for lo, hi in _RANGES:
        if p[lo] > p[hi]:
            raise InputError(f"rawboost: {lo!r} ({p[lo]}) must not exceed {hi!r} ({p[hi]})")
    limits = {"nBands": (0, None), "N_f": (1, None), "minCoeff": (1, None), "minF": (0, sample_rate / 2),
              "maxF": (0, sample_rate / 2), "P": (0, 100), "g_sd": (0, None)}
    for key, (lo, hi) in limits.items():
        if p[key] < lo or (hi is not None and p[key] > hi):
            bounds = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            where = f" at {sample_rate} Hz" if key in ("minF", "maxF") else ""
            raise InputError(f"rawboost: {key!r} must be {bounds}{where}, got {p[key]}")
    if p["minBW"] <= 0:
        raise InputError(f"rawboost: 'minBW' must be positive, got {p['minBW']}")
    return p


def _algo_list() -> str:
    return ", ".join(f"{k}: {v}" for k, v in ALGOS.items())


# ---- filters --------------------------------------------------------------------------------------------

def notch_taps(fc: np.ndarray, bw: np.ndarray, taps: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-stop FIR filters, one per element of the equally shaped arrays `fc` (centre, Hz), `bw` (width, Hz)
    and `taps` (odd lengths): the Hamming-windowed sinc design of scipy.signal.firwin(taps, [f1, f2],
    window='hamming', fs=sample_rate) (unit gain at DC), with the band edges f1 = fc - bw/2, f2 = fc + bw/2
    kept inside (0, sample_rate / 2) as RawBoost does. Returns shape fc.shape + (L,), L = max(taps): each
    filter centred in its row (zero-padded on both sides), so every row has the same delay (L - 1) / 2."""
    nyq = sample_rate / 2.0
    f1 = np.where(fc - bw / 2 <= 0, 1e-3, fc - bw / 2)[..., None] / nyq
    f2 = np.where(fc + bw / 2 >= nyq, nyq - 1e-3, fc + bw / 2)[..., None] / nyq
    taps = np.asarray(taps)[..., None]
    length = int(taps.max())
    m = np.arange(length) - (length - 1) / 2.0
    half = (taps - 1) / 2.0
    # pass bands [0, f1] and [f2, nyq]: ideal impulse responses f*sinc(f*m), windowed, then unit DC gain
    h = f1 * np.sinc(f1 * m) + np.sinc(m) - f2 * np.sinc(f2 * m)
    window = 0.54 + 0.46 * np.cos(np.pi * m / np.maximum(half, 0.5))
    h = np.where(np.abs(m) <= half, h * window, 0.0)
    return h / h.sum(axis=-1, keepdims=True)


def notch_filter_bank(rng: np.random.Generator, count: int, gains_db: np.ndarray | None = None,
                      sample_rate: int = SAMPLE_RATE, **parameters) -> np.ndarray:
    """`count` random cascades of `nBands` notch filters (RawBoost's genNotchCoeffs), shape (count, L) with L
    odd and every cascade centred at (L - 1) / 2 (zero phase once that delay is removed). Each cascade is
    scaled so that its peak magnitude on scipy.signal.freqz's 512-point grid equals `gains_db[i]` dB (0 dB
    when None). Draws, in this order: centre frequencies U[minF, maxF], widths U[minBW, maxBW] and tap
    counts floor(U[minCoeff, maxCoeff]) (even ones + 1), each of shape (count, nBands)."""
    p = check_parameters(parameters, sample_rate)
    n_bands = int(p["nBands"])
    fc = rng.uniform(p["minF"], p["maxF"], (count, n_bands))
    bw = rng.uniform(p["minBW"], p["maxBW"], (count, n_bands))
    taps = np.floor(rng.uniform(p["minCoeff"], p["maxCoeff"], (count, n_bands))).astype(np.int64)
    taps += 1 - taps % 2
    if n_bands == 0:
        b = np.ones((count, 1))
    else:
        single = notch_taps(fc, bw, taps, sample_rate)  # (count, nBands, Lmax)
        length = n_bands * (single.shape[-1] - 1) + 1  # the cascade: a product of spectra
        nfft = sfft.next_fast_len(length, real=True)
        b = sfft.irfft(np.prod(sfft.rfft(single, nfft, axis=-1), axis=1), nfft, axis=-1)[:, :length]
    # peak magnitude on freqz's grid k * nyq / 512, k < 512: every step-th bin of an FFT of 1024 * step points
    step = -(-b.shape[-1] // (2 * _FREQZ_POINTS))
    peak = np.abs(sfft.rfft(b, 2 * _FREQZ_POINTS * step, axis=-1)[:, :_FREQZ_POINTS * step:step]).max(axis=-1)
    gains = np.zeros(count) if gains_db is None else np.asarray(gains_db, dtype=np.float64)
    return b * (10.0 ** (gains / 20.0) / peak)[:, None]


def _filter_sum(signals: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_i (signals[i] * b[i]), each a linear convolution with its centred delay removed (zero-phase
    filtering, RawBoost's filterFIR up to its one-sample offset), for (k, n) signals and (k, L) filters."""
    n, length = signals.shape[-1], b.shape[-1]
    nfft = sfft.next_fast_len(n + length - 1, real=True)
    spectrum = (sfft.rfft(signals, nfft, axis=-1) * sfft.rfft(b, nfft, axis=-1)).sum(axis=0)
    delay = (length - 1) // 2
    return sfft.irfft(spectrum, nfft)[delay:delay + n]


def peak_normalise(x: np.ndarray, always: bool = False) -> np.ndarray:
    """x / max|x| when `always` or when max|x| > 1 (the original's normWav); silence is returned as is."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return x / peak if peak > 0 and (always or peak > 1.0) else x


# ---- the three primitives -------------------------------------------------------------------------------

def lnl_convolutive_noise(x: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE,
                          **parameters) -> np.ndarray:
    """Linear and non-linear convolutive noise (RawBoost algo 1; Tak et al., ICASSP 2022, Sec. 2.1).

    Simulates the stationary channel distortions of coding, compression and transmission, together with the
    non-linear ones of amplifiers and loudspeakers: y = sum_{j=1..N_f} h_j * x^j, a Hammerstein model in
    which each h_j is a random cascade of nBands notch filters (notch_filter_bank). The linear cascade h_1
    peaks at G ~ U[minG, maxG] dB, the non-linear ones h_j (j >= 2) at U[minG - minBiasLinNonLin,
    maxG - maxBiasLinNonLin] dB (with the defaults between -5 and -20 dB, the original's bound order). The
    output has its mean removed and is divided by its peak where that exceeds 1 (the original's normWav(y, 0)).
    Draws: the filter bank for N_f cascades, then the N_f gains. Returns float64 of the input's length."""
    p = check_parameters(parameters, sample_rate)
    x = np.asarray(x, dtype=np.float64)
    n_f = int(p["N_f"])
    b = notch_filter_bank(rng, n_f, None, sample_rate, **parameters)
    u = rng.random(n_f)
    lo = np.r_[p["minG"], np.full(n_f - 1, p["minG"] - p["minBiasLinNonLin"])]
    hi = np.r_[p["maxG"], np.full(n_f - 1, p["maxG"] - p["maxBiasLinNonLin"])]
    b *= (10.0 ** ((lo + (hi - lo) * u) / 20.0))[:, None]
    powers = np.empty((n_f, len(x)))  # x, x^2, ..., x^N_f
    powers[0] = x
    for j in range(1, n_f):
        np.multiply(powers[j - 1], x, out=powers[j])
    y = _filter_sum(powers, b)
    return peak_normalise(y - y.mean())


def isd_additive_noise(x: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE,
                       **parameters) -> np.ndarray:
    """Impulsive signal-dependent additive noise (RawBoost algo 2; Tak et al., ICASSP 2022, Sec. 2.2).

    Simulates impulsive disturbances whose size follows the signal, as from clipping, quantisation or
    faulty components: a share beta ~ U[0, P] % of the samples, drawn without replacement, each becomes
    x (1 + g_sd u1 u2) with u1, u2 ~ U[-1, 1]; all other samples are untouched. The result is divided by
    its peak where that exceeds 1 (the original's normWav(y, 0)). Draws: beta, the sample positions, then
    u1 and u2. Returns float64 of the input's length. (`sample_rate` is unused, kept for a uniform call.)"""
    p = check_parameters(parameters, sample_rate)
    y = np.array(x, dtype=np.float64)
    beta = rng.uniform(0.0, p["P"])
    hit = rng.choice(len(y), size=int(len(y) * beta / 100.0), replace=False)
    u = rng.uniform(-1.0, 1.0, (2, len(hit)))
    y[hit] *= 1.0 + p["g_sd"] * u[0] * u[1]
    return peak_normalise(y)


def ssi_additive_noise(x: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE,
                       **parameters) -> np.ndarray:
    """Stationary signal-independent additive noise (RawBoost algo 3; Tak et al., ICASSP 2022, Sec. 2.3).

    Simulates noise that does not depend on the signal, such as thermal or electrical noise of the
    recording chain: white Gaussian noise coloured by one random notch cascade (notch_filter_bank, same
    nBands .. maxCoeff options as LnL; its gain minG/maxG cancels out), scaled to a signal-to-noise ratio
    drawn from U[SNRmin, SNRmax] dB against the whole input and added. No peak normalisation here (as in
    the original, the output may exceed 1). Draws: the noise, the filter bank, then the SNR. Returns float64."""
    p = check_parameters(parameters, sample_rate)
    x = np.asarray(x, dtype=np.float64)
    white = rng.standard_normal(len(x))
    noise = _filter_sum(white[None], notch_filter_bank(rng, 1, None, sample_rate, **parameters))
    snr = rng.uniform(p["SNRmin"], p["SNRmax"])
    noise *= np.linalg.norm(x) / (np.linalg.norm(noise) + 1e-30) / 10.0 ** (snr / 20.0)
    return x + noise


class RawBoost:
    """`aug(wave, rng) -> wave`: the RawBoost combination `algo` (the original's --algo numbers), applied to
    every call, keeping the length; float32 out.

    0: no augmentation; 1: LnL; 2: ISD; 3: SSI; 4: LnL, ISD, SSI in series; 5: LnL then ISD (the SSL-AASIST
    LA default); 6: LnL then SSI; 7: ISD then SSI; 8: LnL and ISD in parallel on the same input, summed and
    divided by the peak where it exceeds 1 (as the original). `parameters`: any of DEFAULTS except algo."""

    def __init__(self, algo: int, sample_rate: int = SAMPLE_RATE, **parameters):
        self.params = check_parameters({**parameters, "algo": algo}, sample_rate, with_algo=True)
        self.algo = int(self.params.pop("algo"))
        self.sample_rate = sample_rate

    @classmethod
    def from_config(cls, config: Mapping | bool | None, sample_rate: int = SAMPLE_RATE) -> RawBoost:
        """From a config section: {algo: N, <option>: value, ...} (algo defaults to 5); True: the defaults."""
        config = {} if config is None or config is True else config
        if not isinstance(config, Mapping):
            raise InputError(f"rawboost: expected a mapping of options (e.g. {{algo: 3}}), got {config!r}")
        config = dict(config)
        check_parameters(config, sample_rate, with_algo=True)  # unknown keys first, even 'sample_rate'
        return cls(config.pop("algo", DEFAULTS["algo"]), sample_rate, **config)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wave = np.asarray(wave)
        if wave.ndim != 1 or len(wave) == 0:
            raise InputError(f"rawboost expects a non-empty 1-D waveform, got shape {wave.shape}")
        if self.algo == 0:
            return wave.astype(np.float32, copy=False)
        x = wave.astype(np.float64)
        fs, p = self.sample_rate, self.params
        if self.algo == 8:
            y = peak_normalise(lnl_convolutive_noise(x, rng, fs, **p) + isd_additive_noise(x, rng, fs, **p))
        else:
            steps = {1: "1", 2: "2", 3: "3", 4: "123", 5: "12", 6: "13", 7: "23"}[self.algo]
            y = x
            for step in steps:
                y = _PRIMITIVES[step](y, rng, fs, **p)
        return y.astype(np.float32)

    def __repr__(self) -> str:
        return f"RawBoost(algo={self.algo} [{ALGOS[self.algo]}])"


_PRIMITIVES = {"1": lnl_convolutive_noise, "2": isd_additive_noise, "3": ssi_additive_noise}

__all__ = ["RawBoost", "DEFAULTS", "ALGOS", "check_parameters", "lnl_convolutive_noise", "isd_additive_noise",
           "ssi_additive_noise", "notch_filter_bank", "notch_taps", "peak_normalise"]
