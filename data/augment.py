"""Training-time augmentation: additive noise / music / babble, room reverberation, SpecAugment.

The waveform recipe follows voxceleb_trainer's AugmentWAV: MUSAN noise at 0-15 dB SNR, music at 5-15 dB,
babble from 3-7 MUSAN speech files at 13-20 dB (each speaker at its own SNR), and convolution with a room
impulse response normalised to unit energy and cropped to the input length. Where no MUSAN / RIR folder is
configured, generated signals (coloured noise, harmonic-tone music and babble, exponentially decaying
synthetic RIRs) go through exactly the same mixing code, so the recipe runs and is tested on any machine.

RawBoost (data/rawboost.py, the SSL-AASIST CM augmentation) joins through a `rawboost` entry of the
config (build_augment).

Everything is deterministic given the numpy Generator passed in (one per Dataset worker/item).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio
from scipy.signal import fftconvolve

from common.errors import InputError
from data.audio import SAMPLE_RATE, AudioError, crop_random, load_audio
from data.rawboost import RawBoost

NOISE_TYPES = ("noise", "speech", "music")
ALL_TYPES = NOISE_TYPES + ("reverb",)
_EPS = 1e-10  # power floor (digital silence), far below any speech level

DEFAULTS: dict = {
    "musan_dir": None,  # folder holding noise/, music/, speech/ (MUSAN layout); None: generated signals
    "rir_dir": None,  # any folder of RIR .wav files (e.g. RIRS_NOISES/simulated_rirs); None: synthetic RIRs
    "types": list(ALL_TYPES),  # augmentation types drawn from, uniformly
    "prob": 0.8,  # chance that an utterance is augmented (voxceleb_trainer: 4 of 5 choices augment)
    "snr": {"noise": [0.0, 15.0], "speech": [13.0, 20.0], "music": [5.0, 15.0]},  # dB, uniform
    "num_babble": [3, 7],  # babble speakers, inclusive
    "rt60": [0.2, 0.9],  # seconds, synthetic RIRs only
}


class WaveAugment:
    """Randomly corrupts float32 16 kHz waveforms; `aug(wave, rng)` keeps the length and dtype.

    config keys (all optional): musan_dir, rir_dir, types, prob, snr, num_babble, rt60 (see DEFAULTS).
    """

    def __init__(self, config: Mapping | None = None, sample_rate: int = SAMPLE_RATE):
        cfg = _merge_config(config or {})
        self.sample_rate = sample_rate
        self.types: tuple[str, ...] = tuple(cfg["types"])
        self.prob = float(cfg["prob"])
        self.snr = {k: (float(v[0]), float(v[1])) for k, v in cfg["snr"].items()}
        self.num_babble = (int(cfg["num_babble"][0]), int(cfg["num_babble"][1]))
        self.rt60 = (float(cfg["rt60"][0]), float(cfg["rt60"][1]))
        self.musan_dir = cfg["musan_dir"]
        self.rir_dir = cfg["rir_dir"]
        # File lists are sorted so that a seed picks the same files on every machine.
        self.noise_files: dict[str, list[Path]] = {}
        if self.musan_dir is not None:
            for kind in NOISE_TYPES:
                if kind in self.types:
                    self.noise_files[kind] = _wav_files(Path(self.musan_dir) / kind, "musan_dir")
        self.rir_files: list[Path] = []
        if self.rir_dir is not None and "reverb" in self.types:
            self.rir_files = _wav_files(Path(self.rir_dir), "rir_dir")

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """With probability `prob`, applies one type drawn uniformly from `types`; otherwise returns `wave`."""
        if not self.types or rng.random() >= self.prob:
            return wave
        kind = self.types[int(rng.integers(len(self.types)))]
        return self.apply(wave, kind, rng)

    def apply(self, wave: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
        """Applies one named augmentation: 'noise', 'speech' (babble), 'music' or 'reverb'."""
        wave = _check_wave(wave)
        if kind == "reverb":
            return reverberate(wave, self._rir(rng))
        if kind not in NOISE_TYPES:
            raise InputError(f"unknown augmentation type {kind!r}; choose from {list(ALL_TYPES)}")
        count = int(rng.integers(self.num_babble[0], self.num_babble[1] + 1)) if kind == "speech" else 1
        lo, hi = self.snr[kind]
        noises = [self._noise(kind, len(wave), rng) for _ in range(count)]
        snrs = rng.uniform(lo, hi, size=count)
        return add_noises(wave, noises, snrs)

    def _noise(self, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
        files = self.noise_files.get(kind)
        if files:
            return read_segment(files[int(rng.integers(len(files)))], n, rng, self.sample_rate)
        if kind == "noise":
            return coloured_noise(n, rng.choice(["white", "pink", "brown"]), rng)
        if kind == "music":
            return synthetic_music(n, rng, self.sample_rate)
        return synthetic_talker(n, rng, self.sample_rate)  # one babble speaker

    def _rir(self, rng: np.random.Generator) -> np.ndarray:
        if self.rir_files:
            return load_audio(self.rir_files[int(rng.integers(len(self.rir_files)))], self.sample_rate)
        return synthetic_rir(float(rng.uniform(*self.rt60)), rng, self.sample_rate)


def _merge_config(config: Mapping) -> dict:
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise InputError(f"augmentation config: unknown key {unknown[0]!r}; valid keys are {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **config}
    cfg["snr"] = {**DEFAULTS["snr"], **(config.get("snr") or {})}
    bad = [t for t in cfg["types"] if t not in ALL_TYPES]
    if bad:
        raise InputError(f"augmentation config: unknown type {bad[0]!r} in 'types'; choose from {list(ALL_TYPES)}")
    for kind, rng_ in cfg["snr"].items():
        if kind not in NOISE_TYPES:
            raise InputError(f"augmentation config: unknown key 'snr.{kind}'; valid keys are {list(NOISE_TYPES)}")
        if len(rng_) != 2 or rng_[0] > rng_[1]:
            raise InputError(f"augmentation config: 'snr.{kind}' must be [low, high] with low <= high, got {rng_}")
    for key in ("num_babble", "rt60"):
        if len(cfg[key]) != 2 or cfg[key][0] > cfg[key][1] or cfg[key][0] <= 0:
            raise InputError(f"augmentation config: {key!r} must be [low, high] with 0 < low <= high, got {cfg[key]}")
    if not 0.0 <= float(cfg["prob"]) <= 1.0:
        raise InputError(f"augmentation config: 'prob' must lie in [0, 1], got {cfg['prob']}")
    return cfg


def _wav_files(folder: Path, key: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{key}: folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    if not files:
        raise InputError(f"{key}: folder {folder} holds no .wav files")
    return files


def read_segment(path: Path, n: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A random n-sample segment of an audio file, reading only that segment when the file is already at
    `sample_rate` (MUSAN music files last minutes), repeat-padded when the file is shorter. A file libsndfile
    refuses is read whole by `load_audio` (its FFmpeg fallback, or its one-line error naming both decoders)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return crop_random(load_audio(path, sample_rate), n, rng)
    if info.samplerate != sample_rate or info.frames <= n:
        return crop_random(load_audio(path, sample_rate), n, rng)
    start = int(rng.integers(0, info.frames - n + 1))
    try:
        data, _ = sf.read(str(path), start=start, frames=n, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError):
        return crop_random(load_audio(path, sample_rate), n, rng)
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if len(x) < n or not np.isfinite(x).all():
        raise AudioError(f"{path}: unreadable or non-finite samples in [{start}, {start + n})")
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_wave(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim != 1 or len(wave) == 0:
        raise InputError(f"augmentation expects a non-empty 1-D waveform, got shape {wave.shape}")
    return wave.astype(np.float32, copy=False)


def power_db(x: np.ndarray) -> float:
    """Mean power in dB, floored so that digital silence stays finite."""
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + _EPS))


def add_noises(wave: np.ndarray, noises: Sequence[np.ndarray], snrs_db: Sequence[float]) -> np.ndarray:
    """wave + sum_i g_i * noise_i, each g_i chosen so that noise_i sits `snrs_db[i]` dB below `wave`."""
    clean_db = power_db(wave)
    mix = wave.astype(np.float64)
    for noise, snr in zip(noises, snrs_db, strict=True):
        gain = 10.0 ** ((clean_db - power_db(noise) - float(snr)) / 20.0)
        mix = mix + gain * noise[: len(wave)]
    return mix.astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolves with `rir` scaled to unit energy and keeps the first len(wave) samples (voxceleb_trainer)."""
    rir = np.asarray(rir, dtype=np.float64)
    energy = float(np.sum(rir * rir))
    if rir.ndim != 1 or energy <= 0.0 or not np.isfinite(energy):
        raise InputError("room impulse response must be a 1-D signal with finite, non-zero energy")
    out = fftconvolve(wave.astype(np.float64), rir / np.sqrt(energy), mode="full")[: len(wave)]
    return out.astype(np.float32)


# ---- generated signals: the default where MUSAN / RIRs are not configured ------------------------------

def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """White (flat), pink (1/f power) or brown (1/f^2 power) noise of unit RMS, shaped in the frequency domain."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}.get(str(colour))
    if exponent is None:
        raise InputError(f"unknown noise colour {colour!r}; choose 'white', 'pink' or 'brown'")
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spec), dtype=np.float64)
    freqs[0] = 1.0
    spec = spec / freqs ** (exponent / 2.0)
    spec[0] = 0.0  # no DC offset
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x * x)) + _EPS)).astype(np.float32)


def _harmonic_tone(f0: np.ndarray, rng: np.random.Generator, sample_rate: int, n_harm: int) -> np.ndarray:
    """Harmonics of a (time-varying) f0 track with 1/k amplitudes and random phases, below Nyquist."""
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    out = np.zeros(len(f0))
    for k in range(1, n_harm + 1):
        alive = (k * f0) < 0.45 * sample_rate
        out += alive * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
    return out


def synthetic_talker(n: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One babble 'speaker': a harmonic voice with a gliding f0 (80-300 Hz) gated at a syllabic rate (~4 Hz)."""
    t = np.arange(n) / sample_rate
    base = rng.uniform(80.0, 300.0)
    f0 = base * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3.0) * t + rng.uniform(0, 2 * np.pi)))
    syllable = np.clip(np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t + rng.uniform(0, 2 * np.pi)), 0.0, None)
    x = _harmonic_tone(f0, rng, sample_rate, n_harm=12) * syllable
    return (x / (np.sqrt(np.mean(x * x)) + _EPS)).astype(np.float32)


def synthetic_music(n: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Chords of 2-4 equal-tempered harmonic notes, changing every 0.2-0.6 s, with decaying note envelopes."""
    out = np.zeros(n)
    start = 0
    while start < n:
        length = min(n - start, int(rng.uniform(0.2, 0.6) * sample_rate))
        t = np.arange(length) / sample_rate
        envelope = np.exp(-t / rng.uniform(0.2, 1.0))
        for midi in rng.integers(45, 80, size=int(rng.integers(2, 5))):
            f0 = np.full(length, 440.0 * 2.0 ** ((midi - 69) / 12.0))
            out[start:start + length] += _harmonic_tone(f0, rng, sample_rate, n_harm=6) * envelope
        start += length
    return (out / (np.sqrt(np.mean(out * out)) + _EPS)).astype(np.float32)


def synthetic_rir(rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A room impulse response: a direct-path impulse after a short delay, then Gaussian noise decaying by
    60 dB over `rt60` seconds (the definition of RT60), with a random direct-to-reverberant ratio."""
    if rt60 <= 0:
        raise InputError(f"rt60 must be positive, got {rt60}")
    delay = int(rng.uniform(0.001, 0.005) * sample_rate)
    n = delay + int(rt60 * sample_rate)
    t = np.arange(n - delay) / sample_rate
    tail = rng.standard_normal(n - delay) * np.exp(-np.log(1000.0) * t / rt60)  # amplitude 1e-3 = -60 dB at rt60
    tail *= 10.0 ** (-rng.uniform(-6.0, 6.0) / 20.0) / (np.sqrt(np.sum(tail * tail)) + _EPS)  # DRR -6..6 dB
    rir = np.zeros(n)
    rir[delay:] = tail
    rir[delay] += 1.0
    return rir.astype(np.float32)


# ---- SpecAugment for filterbank models -----------------------------------------------------------------

def spec_augment(x: torch.Tensor, freq_masks: int = 2, max_freq_width: int = 8, time_masks: int = 2,
                 max_time_width: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zeroes `freq_masks` bands of width U[0, max_freq_width] and `time_masks` spans of width
    U[0, max_time_width] in each example of a (B, F, T) feature tensor (Park et al., 2019). Not in place."""
    if x.dim() != 3:
        raise InputError(f"spec_augment expects (B, F, T) features, got shape {tuple(x.shape)}")
    batch, n_freq, n_time = x.shape
    keep = torch.ones(batch, n_freq, n_time, dtype=torch.bool, device=x.device)
    plan = ((1, freq_masks, max_freq_width, n_freq), (2, time_masks, max_time_width, n_time))
    for axis, count, max_width, size in plan:
        if count <= 0 or max_width <= 0:
            continue
        width = torch.randint(0, min(max_width, size) + 1, (batch, count), generator=generator)
        start = (torch.rand(batch, count, generator=generator) * (size - width + 1)).long()
        pos = torch.arange(size).view(1, 1, size)
        masked = ((pos >= start.unsqueeze(-1)) & (pos < (start + width).unsqueeze(-1))).any(dim=1)  # (B, size)
        masked = masked.to(x.device)
        keep &= ~(masked.unsqueeze(2) if axis == 1 else masked.unsqueeze(1))
    return x * keep.to(x.dtype)


class SpecAugment(torch.nn.Module):
    """Frequency and time masking, active only in training mode (identity in eval)."""

    def __init__(self, freq_masks: int = 2, max_freq_width: int = 8, time_masks: int = 2, max_time_width: int = 10):
        super().__init__()
        self.freq_masks, self.max_freq_width = freq_masks, max_freq_width
        self.time_masks, self.max_time_width = time_masks, max_time_width

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        return spec_augment(x, self.freq_masks, self.max_freq_width, self.time_masks, self.max_time_width, generator)


def speed_perturb(wave: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`wave` played `factor` times faster (tempo and pitch together, as sox `speed`): resampled from
    sample_rate * factor to sample_rate, so 1.1 gives 1/1.1 of the samples."""
    if factor == 1.0:
        return wave
    source = int(round(sample_rate * factor))
    out = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
                                         source, sample_rate)
    return out.numpy()


class SpeedPerturb:
    """Training-time speed perturbation (SASV2 stage 1, Kaldi/ESPnet recipes): each item is played at a factor
    drawn uniformly from `factors`, then cropped to `n_samples` at random. The dataset must hand over
    ceil(n_samples * max(factors)) samples, so that the fastest factor still fills the crop without padding.
    The speaker label is kept: a 10 % tempo/pitch change is treated as the same voice, not a new identity
    (recipes that count speed-perturbed copies as new speakers differ here)."""

    FACTORS = (0.5, 2.0)    # the range a factor may take (configs: data.speed_perturb)

    def __init__(self, factors: Sequence[float], n_samples: int, sample_rate: int = SAMPLE_RATE):
        low, high = self.FACTORS
        if not factors or any(not low <= f <= high for f in factors):
            raise InputError(f"speed perturbation: factors must lie in [{low:g}, {high:g}], got {list(factors)}")
        self.factors, self.n_samples, self.sample_rate = tuple(float(f) for f in factors), n_samples, sample_rate

    @property
    def input_samples(self) -> int:
        """How many samples the dataset crops before this perturbation."""
        return int(np.ceil(self.n_samples * max(self.factors)))

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factor = self.factors[int(rng.integers(len(self.factors)))]
        return crop_random(speed_perturb(wave, factor, self.sample_rate), self.n_samples, rng)


class AugmentChain:
    """`aug(wave, rng)`: the parts applied in order, all drawing from the same Generator."""

    def __init__(self, *parts: Callable[[np.ndarray, np.random.Generator], np.ndarray]):
        self.parts = parts

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for part in self.parts:
            wave = part(wave, rng)
        return wave


def build_augment(config: Mapping | bool | None) -> WaveAugment | RawBoost | AugmentChain | None:
    """Config switch: None/False -> no augmentation, True -> WaveAugment's defaults, a mapping -> WaveAugment of
    its keys (DEFAULTS), where a `rawboost` entry ({algo: 1-8, <option>: value}; data/rawboost.py) adds
    RawBoost on every item: alone it is the only augmentation (as in SSL-AASIST); next to WaveAugment keys it
    runs after WaveAugment (AugmentChain). `rawboost: false/null` counts as absent."""
    if config is None or config is False:
        return None
    config = {} if config is True else dict(config)
    unknown = sorted(set(config) - set(DEFAULTS) - {"rawboost"})
    if unknown:
        raise InputError(f"augmentation config: unknown key {unknown[0]!r}; valid keys are "
                         f"{sorted([*DEFAULTS, 'rawboost'])}")
    rawboost = config.pop("rawboost", None)
    if rawboost is None or rawboost is False:
        return WaveAugment(config)
    boost = RawBoost.from_config(rawboost)
    return AugmentChain(WaveAugment(config), boost) if config else boost


__all__ = ["WaveAugment", "SpecAugment", "SpeedPerturb", "speed_perturb", "spec_augment", "build_augment",
           "AugmentChain", "RawBoost",
           "add_noises", "reverberate",
           "read_segment", "coloured_noise", "synthetic_talker", "synthetic_music", "synthetic_rir", "power_db",
           "DEFAULTS"]
