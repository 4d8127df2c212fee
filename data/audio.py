"""Reading audio and cutting it to model input lengths.

Every model here works on 16 kHz mono float32 in [-1, 1]. A file that cannot be read is an error that
names it: silence is never substituted, since that would quietly corrupt scores.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import soundfile as sf

from common.config import Rule
from common.errors import InputError
from data import ffmpeg_audio

SAMPLE_RATE = 16000
AASIST_EVAL_SAMPLES = 64600  # ~4.04 s: the AASIST evaluation convention


class AudioError(InputError):
    """An audio file that is missing, unreadable, empty, too short or at a refused sample rate."""


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, resample: bool = True,
               min_samples: int = 1) -> np.ndarray:
    """Reads `path` as mono float32 at `sample_rate`, resampling when the file differs (or refusing if not `resample`).

    libsndfile reads first (fast; most corpora are FLAC/WAV it reads); what it refuses goes to FFmpeg through
    PyAV (`data.ffmpeg_audio`), which also reads AAC `.m4a` (VoxCeleb2). Why valid FLAC needs the fallback:
    the concatenated ASVspoof 2019 enrolment files (`enr_audio/`) declare 16 bits per sample, yet a few LPC
    frames decode to values beyond 16-bit full scale (up to 132908 in 2 of the 323 frames of LA_0069's file);
    the encoder named in the files, libFLAC 1.3.2, accepted such samples. libFLAC >= 1.4 checks every decoded
    frame against the declared size and rejects it as a CRC mismatch (libsndfile: "unknown error in flac
    decoder"); FFmpeg keeps the low 16 bits (those few samples wrap around) and we return FFmpeg's samples,
    as FFmpeg-based readers do.
    """
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "does not exist"
        raise AudioError(f"{path}: audio file {what}")
    try:
        _check_wav_complete(path)
    except OSError as e:
        raise AudioError(f"{path}: cannot open audio file ({e.strerror})") from None
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        data, sr = _read_with_ffmpeg(path, _first_line(getattr(e, "error_string", None) or str(e)))
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate:
        if not resample:
            raise AudioError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
        x = _resample(x, sr, sample_rate)
    if len(x) < min_samples:
        raise AudioError(f"{path}: {len(x)} samples after loading, need at least {min_samples}")
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(x, dtype=np.float32)


def _read_with_ffmpeg(path: str | os.PathLike, libsndfile_error: str) -> tuple[np.ndarray, int]:
    """The fallback decoder; when it refuses too, one line with both decoders' reasons."""
    try:
        return ffmpeg_audio.decode(path)
    except ffmpeg_audio.Refused as e:
        raise AudioError(f"{path}: cannot read audio: libsndfile: {libsndfile_error}; "
                         f"FFmpeg (PyAV): {_first_line(str(e))}") from None


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0].removeprefix("Error : ").rstrip(".") if lines else "unknown error"


def _check_wav_complete(path: str | os.PathLike) -> None:
    """libsndfile reads a WAV cut short mid-data without complaint (it trusts the file size); compare the
    size the header declares for the 'data' chunk with the bytes actually present."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not a RIFF/WAVE file: FLAC truncation is caught by the decoders
        size = os.fstat(f.fileno()).st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if declared not in (0, 0xFFFFFFFF) and pos + 8 + declared > size:
                    raise AudioError(f"{path}: truncated WAV file: header declares {declared} bytes of audio, "
                                     f"file holds {size - pos - 8}")
                return
            pos += 8 + declared + (declared & 1)


def _resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(x)), orig, new).numpy()


def repeat_pad(x: np.ndarray, n: int) -> np.ndarray:
    """Tiles a signal until it reaches n samples (the AASIST padding)."""
    if len(x) == 0:
        raise AudioError("cannot pad an empty signal")
    reps = -(-n // len(x))
    return np.tile(x, reps)[:n] if reps > 1 else x[:n]


def crop_first(x: np.ndarray, n: int) -> np.ndarray:
    """First n samples, repeat-padded when shorter (AASIST evaluation: n = 64600)."""
    return repeat_pad(x, n)


def crop_random(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n-sample segment (training); repeat-padded when the signal is shorter."""
    if len(x) <= n:
        return repeat_pad(x, n)
    start = int(rng.integers(0, len(x) - n + 1))
    return x[start:start + n]


def crop_even(x: np.ndarray, n: int, count: int) -> np.ndarray:
    """`count` evenly spaced n-sample segments, stacked (count, n): the voxceleb_trainer test-time crops."""
    if len(x) < n:
        x = repeat_pad(x, n)
    starts = np.linspace(0, len(x) - n, num=count).astype(int)
    return np.stack([x[s:s + n] for s in starts])


def crop(x: np.ndarray, policy: str, n: int | None, rng: np.random.Generator | None = None) -> np.ndarray:
    """One window by name, for training and trial datasets: 'first', 'random' or 'full' (n ignored)."""
    if policy == "full" or n is None:
        return x
    if policy == "first":
        return crop_first(x, n)
    if policy == "random":
        return crop_random(x, n, rng if rng is not None else np.random.default_rng())
    raise ValueError(f"unknown crop policy {policy!r}; choose 'first', 'random' or 'full'")


SCORING_CROPS = ("first", "full", "even")
# What a scoring crop may be: the rules of a front-end's `crop` section (asv.crop, cm.crop), written once for the
# config schema (`crop_section`, checked when a config is loaded) and for CropSpec (checked when one is made).
CROP_RULES = {"policy": Rule("first", choices=SCORING_CROPS), "samples": Rule(AASIST_EVAL_SAMPLES, low=1),
              "count": Rule(1, low=1)}


def crop_section(policy: str, samples: int) -> dict:
    """The schema of a front-end's evaluation input (`crop`) with a front-end's own defaults: full | first | even
    (`count` evenly spaced crops of `samples`)."""
    return {"policy": CROP_RULES["policy"].with_default(policy), "samples": CROP_RULES["samples"].with_default(samples),
            "count": CROP_RULES["count"]}


@dataclass(frozen=True)
class CropSpec:
    """How scoring turns an utterance into model input (a front-end config's `crop` section): 'first' N samples,
    repeat-padded (AASIST evaluation); 'full', the utterance as it is; 'even', `count` evenly spaced N-sample
    windows whose outputs are averaged (voxceleb_trainer test time;
    `pipeline.stages.extract.average_crops`). No 'random': scores must be reproducible.

    The one way from a config to a crop is `CropSpec.from_config(cfg[kind]["crop"])`; every scoring path (the
    stages, the training recipes' evaluation, verify.py, the ablation) takes its crop from there."""
    policy: str = "first"
    samples: int = AASIST_EVAL_SAMPLES
    count: int = 1

    def __post_init__(self) -> None:
        for name, rule in CROP_RULES.items():     # a ConfigError (a ValueError) in the schema's words
            rule.check(f"crop.{name}", getattr(self, name))

    @classmethod
    def from_config(cls, crop: Mapping) -> CropSpec:
        """The crop of a front-end config's `crop` section (`asv.crop`, `cm.crop`)."""
        return cls(crop["policy"], int(crop["samples"]), int(crop["count"]))

    def windows(self, wave: np.ndarray) -> np.ndarray:
        """The (windows, samples) float32 model input of one utterance (one window unless 'even')."""
        if self.policy == "even":
            x = crop_even(wave, self.samples, self.count)
        else:
            x = crop(wave, self.policy, self.samples)[None]
        return np.ascontiguousarray(x, dtype=np.float32)
