"""Offline vocoders for copy-synthesis (SASV2 stage 2, Mun et al., Interspeech 2023) and the list they feed.

Copy-synthesis re-synthesises bona fide speech through a vocoder: the copy keeps the speaker, the words and
the channel and differs from its source only by what the vocoder loses, so a model trained to tell the two
apart learns vocoder artefacts instead of speaker or content cues. The recipe used neural vocoders; none can
be downloaded here, so each function below is a signal-processing stand-in for one class of real vocoders,
chosen for the artefact that class leaves:

- `griffin_lim`: mel-spectrogram vocoders (Tacotron + Griffin-Lim, and what any mel-conditioned neural vocoder
  must guess): fine spectral detail and phase are lost and re-estimated;
- `lpc`: source-filter vocoders and codecs (LPC-10, CELP, early parametric TTS, LPCNet's source-filter core):
  an all-pole envelope excited by a buzzy pulse train or noise with a hard voicing decision;
- `harmonic_noise`: sinusoidal / harmonic-plus-noise vocoders (HNM, WORLD/STRAIGHT-style periodic + aperiodic
  parts, the sine excitation of neural source-filter models): perfectly periodic zero-phase harmonics below a
  maximum voiced frequency, envelope-shaped noise above it.

Each is `f(wave, rng) -> wave`: float32 16 kHz mono in, same length out, level matched to the input, and
deterministic given the rng state. `read_copy_synthesis_list` reads the list `copy_synthesis.py` writes.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from scipy.signal import lfilter

from common.errors import InputError, MissingFilesError, ProtocolError, line_error
from common.io import read_json
from data.asvspoof import RepeatCheck, check_files_exist, protocol_lines
from data.names import check_relative_path
from synthetic import dsp

__all__ = ["VOCODERS", "VERSION", "vocode", "file_rng", "griffin_lim", "lpc", "harmonic_noise", "estimate_f0",
           "CopySynthesisEntry", "read_copy_synthesis_list", "copy_synthesis_audio_root", "LIST_NAME", "MANIFEST_NAME"]

VERSION = 1            # bump when a vocoder's output changes: copy_synthesis.py refuses to mix versions
SAMPLE_RATE = 16000
MIN_SAMPLES = 400      # one analysis window (25 ms); shorter input has no spectrum to copy
LIST_NAME = "copy_synthesis_list.txt"
MANIFEST_NAME = "copy_synthesis.json"

Vocoder = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# The speaker models' front-end (asv/features.py, ECAPA-TDNN): 512-point FFT, 25 ms window, 10 ms hop, 80 mels.
MEL_N_FFT, MEL_WIN, MEL_HOP, N_MELS, MEL_FMIN, MEL_FMAX = 512, 400, 160, 80, 20.0, 7600.0
GL_ITERS = 32
LPC_ORDER = 18
PRE_EMPHASIS = 0.5     # mild: 0.97 made de-emphasis lift the all-pole fit's poor DC end by 30 dB
ENVELOPE_LIFTER = 30   # cepstral coefficients kept for the harmonic_noise envelope (1.9 ms: below any pitch period)
F0_MIN, F0_MAX = 60.0, 400.0
_F0_WIN = 768          # 48 ms pitch window: almost three periods at F0_MIN
_F0_NFFT = 2048        # >= 2 x window: linear (not circular) autocorrelation


# ----------------------------------------------------------------------------------------------- shared parts
def _frames(x: np.ndarray, length: int) -> np.ndarray:
    """(frames, length) windows centred on `dsp.frame_times` (one every dsp.HOP samples), zero beyond the ends."""
    n = dsp.n_frames(len(x))
    padded = np.zeros((n - 1) * dsp.HOP + length)
    start = length // 2
    padded[start:start + len(x)] = x
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::dsp.HOP][:n]


def estimate_f0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0 Hz, voicing strength 0..1, voiced mask) per `dsp.stft` frame, by normalised autocorrelation.

    The autocorrelation of each Hann-windowed frame is divided by the window's own autocorrelation (so a
    periodic frame scores ~1 at its period whatever the lag) and the best lag in 60-400 Hz wins, with a small
    cost per octave down against period doubling. Frames are voiced above 0.5 and within 45 dB of the loudest
    frame; f0 and the decision are median-smoothed over 5 frames (40 ms), as pitch trackers of vocoders do."""
    w = np.hanning(_F0_WIN + 2)[1:-1]
    frames = _frames(x, _F0_WIN)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * w
    acf = np.fft.irfft(np.abs(np.fft.rfft(frames, _F0_NFFT, axis=1)) ** 2, _F0_NFFT, axis=1)
    w_acf = np.fft.irfft(np.abs(np.fft.rfft(w, _F0_NFFT)) ** 2, _F0_NFFT)
    lo, hi = int(SAMPLE_RATE / F0_MAX), int(np.ceil(SAMPLE_RATE / F0_MIN))
    lags = np.arange(lo, hi + 1)
    energy = acf[:, 0]
    nacf = acf[:, lo:hi + 1] / (energy[:, None] + 1e-12) * (w_acf[0] / w_acf[lags])
    score = nacf - 0.04 * np.log2(lags / lo)
    best = np.argmax(score, axis=1)
    strength = np.clip(nacf[np.arange(len(best)), best], 0.0, 1.0)
    # Parabolic interpolation around the peak for a sub-sample period.
    i = np.clip(best, 1, len(lags) - 2)
    rows = np.arange(len(i))
    a, b, c = nacf[rows, i - 1], nacf[rows, i], nacf[rows, i + 1]
    curve = a - 2 * b + c                                          # < 0 at a peak
    shift = np.clip(0.5 * (a - c) / np.where(curve < -1e-9, curve, -np.inf), -0.5, 0.5)
    period = lags[i] + np.where(best == i, shift, 0.0)
    f0 = SAMPLE_RATE / period
    loud = energy > energy.max() * 10 ** (-45 / 10) if energy.max() > 0 else np.zeros(len(energy), bool)
    voiced = _median5(((strength > 0.5) & loud).astype(float)) > 0.5
    f0 = np.exp(_median5(np.log(f0)))
    return f0, strength, voiced


def _median5(track: np.ndarray) -> np.ndarray:
    """Running median over 5 frames, ends padded with their own values (scipy's medfilt pads with zeros)."""
    return np.median(np.lib.stride_tricks.sliding_window_view(np.pad(track, 2, mode="edge"), 5), axis=1)


def _filled_f0(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """f0 with unvoiced frames interpolated from the voiced ones (a continuous phase across gaps)."""
    if not voiced.any():
        return np.full(len(f0), 120.0)
    idx = np.flatnonzero(voiced)
    return np.interp(np.arange(len(f0)), idx, f0[idx])


def _to_samples(track: np.ndarray, n: int) -> np.ndarray:
    """A per-frame track (frames centred every dsp.HOP samples) linearly interpolated to n samples."""
    return np.interp(np.arange(n), dsp.frame_times(n), track)


def _match_frames(spec: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """`spec` scaled frame by frame to the energy of `target` (both (frames, bins)), optionally counted over a
    per-bin weight; the energy contour (loudness over time) is what every vocoder is conditioned on."""
    e_t = np.abs(target) ** 2
    e_s = np.abs(spec) ** 2
    if weight is not None:
        e_t, e_s = e_t * weight ** 2, e_s * weight ** 2
    gain = np.sqrt(e_t.sum(axis=1) / (e_s.sum(axis=1) + 1e-20))
    return spec * gain[:, None]


def _finish(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Same length and RMS as the input, peak kept below full scale (a 16-bit file must not clip), float32."""
    y = np.asarray(y, dtype=np.float64)[:len(x)]
    y = y - y.mean()
    rms_x, rms_y = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), float(np.sqrt(np.mean(y * y)))
    y = y * (rms_x / rms_y) if rms_y > 1e-12 else np.zeros_like(y)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32)


def _check(wave: np.ndarray) -> np.ndarray:
    x = np.asarray(wave)
    if x.ndim != 1 or len(x) < MIN_SAMPLES:
        raise InputError(f"vocoder input must be mono with at least {MIN_SAMPLES} samples, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("vocoder input contains NaN or infinite samples")
    return x.astype(np.float64)


# ----------------------------------------------------------------------------------------------- griffin_lim
@functools.lru_cache(maxsize=1)
def _mel_bank() -> tuple[np.ndarray, np.ndarray]:
    """(mel filterbank (mels, bins), its pseudo-inverse (bins, mels)) of the speaker models' front-end."""
    import torchaudio.functional as AF

    fb = AF.melscale_fbanks(MEL_N_FFT // 2 + 1, MEL_FMIN, MEL_FMAX, N_MELS, SAMPLE_RATE).numpy().T.astype(np.float64)
    return fb, np.linalg.pinv(fb, rcond=1e-6)


def griffin_lim(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """80-bin log-mel spectrogram (512-point FFT, 25 ms / 10 ms, 20-7600 Hz) -> non-negative least-squares
    linear spectrogram (filterbank pseudo-inverse, clipped at 0) -> 32 Griffin-Lim iterations from random phase.

    Artefacts: harmonics above ~1 kHz are smeared across each mel band (a mel band is wider than the harmonic
    spacing there), nothing above 7.6 kHz survives, and the re-estimated phase is inconsistent between
    overlapping frames, which sounds 'phasey' and smears onsets. That is what a mel-spectrogram vocoder must
    reconstruct; Griffin-Lim does it without learnt priors (Tacotron 1), neural mel vocoders (WaveNet, WaveGlow,
    HiFi-GAN, MelGAN) guess the same missing detail better but not exactly."""
    import torch
    import torchaudio.functional as AF

    x = _check(wave)
    fb, inverse = _mel_bank()
    signal = torch.from_numpy(x.astype(np.float32))
    window = torch.hamming_window(MEL_WIN)
    spec = torch.stft(signal, MEL_N_FFT, MEL_HOP, MEL_WIN, window, center=True, pad_mode="reflect",
                      return_complex=True)
    power = spec.abs().square().double().numpy()                 # (bins, frames)
    log_mel = np.log(fb @ power + 1e-6)                          # what an acoustic model predicts
    linear = np.maximum(inverse @ (np.exp(log_mel) - 1e-6), 0.0)
    magnitude = torch.from_numpy(np.sqrt(linear).astype(np.float32))
    with torch.random.fork_rng(devices=[]):                      # seeded from rng, global torch RNG untouched
        torch.manual_seed(int(rng.integers(0, 2 ** 63 - 1)))
        y = AF.griffinlim(magnitude, window, MEL_N_FFT, MEL_HOP, MEL_WIN, power=1.0, n_iter=GL_ITERS,
                          momentum=0.99, length=len(x), rand_init=True)
    return _finish(y.double().numpy(), x)


# ----------------------------------------------------------------------------------------------- lpc
def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """Prediction polynomials a (frames, order + 1), a[:, 0] = 1, from autocorrelations r (frames, >= order + 1);
    the Levinson-Durbin recursion run on all frames at once (stable filters for a positive-definite r)."""
    n = len(r)
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = np.einsum("fj,fj->f", a[:, :i], r[:, i:0:-1])
        k = -acc / np.maximum(err, 1e-20)
        a[:, 1:i + 1] = a[:, 1:i + 1] + k[:, None] * a[:, i - 1::-1][:, :i]
        err = err * (1.0 - k * k)
    return a


def _excitation(f0: np.ndarray, voiced: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power source: one pulse per period at the (interpolated) f0 where voiced, white noise elsewhere,
    cross-faded over a frame at voicing changes."""
    f0_s = _to_samples(_filled_f0(f0, voiced), n)
    mix = _to_samples(voiced.astype(float), n)
    cycles = rng.random() + np.cumsum(f0_s / SAMPLE_RATE)        # random start: no chance phase lock-in
    pulses = np.zeros(n)
    at = np.flatnonzero(np.diff(np.floor(cycles), prepend=np.floor(cycles[0]) - 1) > 0)
    pulses[at] = np.sqrt(SAMPLE_RATE / f0_s[at])               # power 1 for a pulse every T samples
    pulses -= np.sqrt(f0_s / SAMPLE_RATE)                        # minus its mean over a period: no DC
    return mix * pulses + (1.0 - mix) * rng.standard_normal(n)


def lpc(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Source-filter resynthesis: order-18 LPC envelopes of 32 ms pre-emphasised frames every 8 ms, excited by
    a pulse train at the estimated f0 (voiced frames) or white noise (unvoiced), filtered by each frame's
    all-pole response 1/A(z) (minimum phase) and de-emphasis in the STFT domain, energy matched per frame,
    overlap-added.

    Artefacts: the buzzy, perfectly regular excitation (no glottal pulse shape, jitter, shimmer or breathiness),
    hard voiced/unvoiced switching (breathy voice and voiced fricatives become one or the other), an all-pole
    envelope without the zeros of nasals, f0 errors copied into the output. That is the class of LPC vocoders
    and codecs (LPC-10, CELP-style synthesis filters), early HMM-TTS pulse/noise excitation and the
    source-filter part of LPCNet."""
    x = _check(wave)
    n = len(x)
    pre = lfilter([1.0, -PRE_EMPHASIS], [1.0], x)
    frames = _frames(pre, dsp.N_FFT) * np.hanning(dsp.N_FFT + 2)[1:-1]
    r = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * dsp.N_FFT, axis=1)) ** 2, axis=1)[:, :LPC_ORDER + 1]
    lag = np.arange(LPC_ORDER + 1)
    r = r * np.exp(-0.5 * (2 * np.pi * 60.0 * lag / SAMPLE_RATE) ** 2)   # 60 Hz bandwidth expansion
    r[:, 0] = r[:, 0] * 1.0001 + 1e-12                                   # -40 dB white-noise floor: stable
    a = _levinson(r, LPC_ORDER)
    f0, _, voiced = estimate_f0(x)
    source = dsp.stft(_excitation(f0, voiced, n, rng))
    w = 2 * np.pi * dsp.FREQS / SAMPLE_RATE
    response = 1.0 / (np.fft.rfft(a, dsp.N_FFT, axis=1) * (1.0 - PRE_EMPHASIS * np.exp(-1j * w)))
    spec = _match_frames(source * response, dsp.stft(x))
    return _finish(dsp.istft(spec, n), x)


# ----------------------------------------------------------------------------------------------- harmonic_noise
def _max_voiced_frequency(strength: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Per frame, the frequency up to which speech is treated as harmonic: 1 kHz at the voicing threshold,
    7 kHz for a strongly periodic frame, 0 when unvoiced (as HNM's maximum voiced frequency, or the band
    aperiodicity of WORLD/STRAIGHT reduced to one cut-off)."""
    return np.where(voiced, 1000.0 + 6000.0 * np.clip((strength - 0.5) / 0.4, 0.0, 1.0), 0.0)


def _harmonics(amp: np.ndarray, f0: np.ndarray, n: int, start_cycle: float, block: int = 4096) -> np.ndarray:
    """Sum over k of a_k(t) cos(k phi(t)), phi the integrated f0: amplitudes (frames, K) interpolated
    linearly between frame centres, computed in blocks of samples (bounded memory), each block only up to the
    highest harmonic its frames use (the cost is samples x harmonics)."""
    f0_s = _to_samples(f0, n)
    phase = np.mod(2 * np.pi * (start_cycle + np.cumsum(f0_s / SAMPLE_RATE)), 2 * np.pi)
    k = np.arange(1, amp.shape[1] + 1)
    used = np.flatnonzero(amp.any(axis=0)) if amp.size else np.zeros(0, np.int64)
    last = len(amp) - 1
    out = np.zeros(n)
    for start in range(0, n, block):
        s = np.arange(start, min(n, start + block))
        i = np.minimum(s // dsp.HOP, last)
        rows = amp[i[0]:min(i[-1] + 2, last + 1)]
        in_use = np.flatnonzero(rows.any(axis=0)) if len(used) else used
        if not len(in_use):
            continue
        top = int(in_use[-1]) + 1
        frac = np.clip((s - i * dsp.HOP) / dsp.HOP, 0.0, 1.0)[:, None]
        a = amp[i, :top] * (1 - frac) + amp[np.minimum(i + 1, last), :top] * frac
        out[s] = np.einsum("sk,sk->s", a, np.cos(phase[s, None] * k[:top]))
    return out


def _envelope(power: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Spectral envelope (frames, bins) as magnitude: the power spectrum averaged over one harmonic spacing
    around each bin, then cepstrally smoothed (the two steps of WORLD's CheapTrick). Liftering the raw log
    spectrum instead averages harmonic peaks with the valleys between them, which flattens the envelope:
    low harmonics came out ~6 dB too weak and the high band ~4 dB too strong."""
    half = np.maximum(1, np.round(f0 / dsp.FREQS[1] / 2)).astype(np.int64)[:, None]     # (frames, 1) in bins
    total = np.concatenate([np.zeros((len(power), 1)), np.cumsum(power, axis=1)], axis=1)
    k = np.arange(dsp.N_BINS)[None, :]
    lo, hi = np.clip(k - half, 0, dsp.N_BINS), np.clip(k + half + 1, 0, dsp.N_BINS)
    mean = (np.take_along_axis(total, hi, axis=1) - np.take_along_axis(total, lo, axis=1)) / (hi - lo)
    return np.exp(dsp.lifter(0.5 * np.log(mean + 1e-14), ENVELOPE_LIFTER))


def harmonic_noise(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Harmonic-plus-noise resynthesis from f0, a spectral envelope and a maximum voiced frequency (MVF).

    The envelope (`_envelope`) is taken from 32 ms frames every 8 ms, pitch-adaptively smoothed. Voiced
    frames get a sum of cosines at exact multiples of the smoothed f0, all in phase (zero phase), with
    amplitudes read off the envelope up to the frame's MVF; above the MVF and in unvoiced frames the source is
    envelope-shaped white noise. Each part is energy matched per frame to the input's energy in its band.

    Artefacts: no jitter, shimmer or glottal phase (waveforms become symmetric, 'sine-like' periods), a smooth
    envelope that loses spectral detail between harmonics, a hard split into a harmonic and a noise band, and
    f0 smoothing. That is the class of sinusoidal and harmonic-plus-noise vocoders (HNM, Vocaine), the
    periodic/aperiodic decomposition of WORLD and STRAIGHT, and the sine-excitation of neural source-filter
    models (NSF, the harmonic branch of DDSP-like vocoders)."""
    x = _check(wave)
    n = len(x)
    spec = dsp.stft(x)
    f0_raw, strength, voiced = estimate_f0(x)
    f0 = _filled_f0(f0_raw, voiced)
    bin_power = np.abs(spec) ** 2
    envelope = _envelope(bin_power, f0)
    mvf = _max_voiced_frequency(strength, voiced)

    # Harmonic part: amplitudes from the envelope, scaled so each frame's harmonic energy equals the input's
    # energy below its MVF (Parseval: a sinusoid of amplitude a in a Hann frame has energy a^2/2 * sum(w^2)).
    n_harm = max(1, int(np.max(mvf / f0)) if voiced.any() else 1)
    k = np.arange(1, n_harm + 1)
    fk = f0[:, None] * k
    pos = np.clip(fk / dsp.FREQS[1], 0.0, dsp.N_BINS - 1.0)
    lo = np.minimum(pos.astype(np.int64), dsp.N_BINS - 2)
    frac = pos - lo
    amp = np.take_along_axis(envelope, lo, axis=1) * (1 - frac) + np.take_along_axis(envelope, lo + 1, axis=1) * frac
    amp = amp * (fk < mvf[:, None])
    below = dsp.FREQS[None, :] < mvf[:, None]
    target = 2.0 / dsp.N_FFT * (bin_power * below).sum(axis=1)
    have = 0.5 * (0.375 * dsp.N_FFT) * (amp ** 2).sum(axis=1)     # sum(w^2) of dsp.stft's periodic Hann: 3N/8
    amp = amp * np.sqrt(target / np.maximum(have, 1e-20))[:, None]
    harmonic = _harmonics(amp, f0, n, rng.random())

    # Noise part: white noise shaped by the envelope above the MVF (a 500 Hz raised-cosine edge).
    edge = np.clip((dsp.FREQS[None, :] - mvf[:, None] + 250.0) / 500.0, 0.0, 1.0)
    edge = 0.5 - 0.5 * np.cos(np.pi * edge)
    noise = dsp.stft(rng.standard_normal(n)) * envelope * edge
    noise = _match_frames(noise, spec, edge)
    return _finish(harmonic + dsp.istft(noise, n), x)


VOCODERS: dict[str, Vocoder] = {"griffin_lim": griffin_lim, "lpc": lpc, "harmonic_noise": harmonic_noise}


def vocode(name: str, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The copy of `wave` made by the vocoder called `name` (see VOCODERS)."""
    if name not in VOCODERS:
        raise InputError(f"unknown vocoder {name!r}; choose from {', '.join(VOCODERS)}")
    return VOCODERS[name](wave, rng)


def file_rng(seed: int, vocoder: str, source: str) -> np.random.Generator:
    """The generator of one copy: a function of (seed, vocoder, source relative path) only, so a file's bytes do
    not depend on which worker makes it, in what order, or what else is in the run."""
    digest = hashlib.sha256(f"{vocoder}\0{source}".encode()).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest[:16], "<u4").tolist()])


# ----------------------------------------------------------------------------------------------- the list
class CopySynthesisEntry(NamedTuple):
    """One line `SPEAKER PATH VOCODER SOURCE` of copy_synthesis_list.txt, with `path` joined to `<out>/wav`.

    `source` stays relative to the source root named in copy_synthesis.json (a VoxCeleb `wav/` folder or an
    ASVspoof 2019 LA folder): the recipe pairs a copy with its bona fide original through it."""

    speaker: str
    path: Path
    vocoder: str
    source: str


def read_copy_synthesis_list(out: str | os.PathLike, check: bool = True) -> list[CopySynthesisEntry]:
    """The entries of `<out>/copy_synthesis_list.txt` (written by copy_synthesis.py), in file order.

    A malformed line (not 4 columns, a path or source that is not a relative path of names (data/names.py), a path
    not under its vocoder's folder, a repeated path) is a one-line error naming the file and line; so is an empty
    list, and with `check` any listed audio file that is missing."""
    out = Path(out)
    list_path = out / LIST_NAME
    wav_dir = out / "wav"
    entries = []
    seen = RepeatCheck(list_path, "file")
    for number, f in protocol_lines(list_path, "copy-synthesis list"):
        if len(f) != 4:
            raise line_error(list_path, number,
                             f"expected 4 columns 'SPEAKER PATH VOCODER SOURCE', got {len(f)}: {' '.join(f)!r}")
        speaker, rel, vocoder, source = f
        check_relative_path(rel, list_path, number, wav_dir)
        check_relative_path(source, list_path, number, "the source audio folder (copy_synthesis.json)", "source")
        if not rel.startswith(f"{vocoder}/"):
            raise line_error(list_path, number, f"path {rel!r} is not in the folder of its vocoder {vocoder!r}")
        seen.check(rel, number, rel)
        entries.append(CopySynthesisEntry(speaker, wav_dir / rel, vocoder, source))
    if not entries:
        raise ProtocolError(f"{list_path}: copy-synthesis list is empty")
    if check:
        check_files_exist((e.path for e in entries), f"copy-synthesis audio listed in {list_path}")
    return entries


def copy_synthesis_audio_root(out: str | os.PathLike) -> Path:
    """The folder the list's SOURCE column is relative to (VoxCeleb `wav/` or the LA folder), from the manifest."""
    path = Path(out) / MANIFEST_NAME
    if not path.is_file():
        raise MissingFilesError(f"{path}: copy-synthesis manifest does not exist")
    manifest = read_json(path)
    source = manifest.get("settings", {}).get("source") if manifest is not None else None
    if not isinstance(source, dict) or not isinstance(source.get("audio_root"), str):
        raise InputError(f"{path}: not a copy-synthesis manifest (no settings.source.audio_root)")
    return Path(source["audio_root"])
