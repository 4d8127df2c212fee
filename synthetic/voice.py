"""Source-filter speech synthesis with a per-speaker identity.

A `Voice` holds what makes a speaker recognisable (f0 level and range, vocal-tract length and formant
positions, spectral tilt, jitter/shimmer, breathiness, speaking rate, a fixed timbre colouring). A `Plan` is
one utterance's content: a random phone-like sequence of vowels, sonorants, fricatives, stop bursts and pauses
with their timing and a prosody shape. `render` turns a plan plus a voice into a waveform; its
`VocoderOptions` are the knobs the spoofing systems in `attacks.py` turn (excitation type, envelope smoothing,
phase model, ...), so bona fide and spoofed speech share one engine and differ only by those artefacts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter

from . import dsp

SR = dsp.SAMPLE_RATE


class Sonorant(NamedTuple):
    """A vowel or sonorant consonant: formant targets of an adult male tract and a relative amplitude."""
    name: str
    f1: float                      # Hz
    f2: float
    f3: float
    amplitude: float


class Fricative(NamedTuple):
    """A fricative or stop burst: two broad resonances for a male-sized tract, level, high-pass corner and
    voicing amount (voiced fricatives keep some glottal excitation)."""
    name: str
    centre1: float                 # Hz
    bandwidth1: float              # Hz
    centre2: float
    bandwidth2: float
    level_db: float
    highpass_hz: float
    voicing: float


SONORANTS: tuple[Sonorant, ...] = tuple(Sonorant(*row) for row in (
    ("i", 270, 2290, 3010, 0.8), ("I", 390, 1990, 2550, 0.85), ("e", 530, 1840, 2480, 0.9),
    ("ae", 660, 1720, 2410, 1.0), ("a", 730, 1090, 2440, 1.0), ("o", 570, 840, 2410, 0.95),
    ("U", 440, 1020, 2240, 0.85), ("u", 300, 870, 2240, 0.8), ("V", 640, 1190, 2390, 0.95),
    ("er", 490, 1350, 1690, 0.85),
    ("m", 280, 1000, 2300, 0.3), ("n", 280, 1600, 2600, 0.3), ("l", 360, 1100, 2700, 0.5),
    ("r", 350, 1200, 1600, 0.5), ("w", 320, 750, 2300, 0.45), ("j", 280, 2100, 2900, 0.45),
))
N_VOWELS = 10  # the first 10 entries are vowels (syllable nuclei); the rest are sonorant consonants
FRICATIVES: tuple[Fricative, ...] = tuple(Fricative(*row) for row in (
    ("s", 4600, 1400, 7000, 2000, 0.0, 3000, 0.0), ("sh", 2600, 700, 4300, 1500, -2.0, 1700, 0.0),
    ("f", 3200, 4000, 6500, 3000, -12.0, 1000, 0.0), ("th", 5000, 3500, 7200, 3000, -14.0, 1200, 0.0),
    ("z", 4600, 1400, 7000, 2000, -4.0, 3000, 0.25), ("v", 3200, 4000, 6500, 3000, -14.0, 1000, 0.3),
    ("p", 1200, 3000, 3500, 4000, -6.0, 400, 0.0), ("t", 4000, 2000, 6500, 3000, -3.0, 2000, 0.0),
    ("k", 2200, 900, 4000, 2500, -4.0, 1200, 0.0),
))
N_FRICATIVES = 6   # the first 6 entries are fricatives proper (syllable onsets and codas)
STOPS = (6, 7, 8)  # indices into FRICATIVES used as bursts after a closure
FALLBACK_PHONE = 4  # "a": the formant target of a plan without any sonorant

# What an utterance is made of: syllables (C)(S)V(C), each optionally followed by a pause. Durations are
# (low, high) ranges in ms at speaking rate 1, drawn uniformly and divided by the voice's rate.
EDGE_SILENCE_MS = (80, 200)        # leading and trailing silence (not scaled by the rate)
ONSET_FRICATIVE_P = 0.35           # the onset is a fricative,
ONSET_STOP_P = 0.25                # else a stop (a closure, then a burst),
ONSET_ASPIRATION_P = 0.10          # else aspiration ('h'), else no onset
SONORANT_BEFORE_P = 0.35           # a sonorant consonant between the onset and the vowel
SONORANT_AFTER_P = 0.30            # one after the vowel
CODA_FRICATIVE_P = 0.25            # a fricative coda
PAUSE_P = 0.10                     # a pause after the syllable
FRICATIVE_MS = (60, 130)
STOP_CLOSURE_MS = (25, 60)
STOP_BURST_MS = (12, 25)
ASPIRATION_MS = (40, 80)
SONORANT_MS = (40, 80)
VOWEL_MS = (80, 220)
PAUSE_MS = (80, 250)
# How segments sound: on/off ramps, a log-normal level per segment, the noise levels, formant knots.
RAMP_S = 0.012                     # on/off ramp of every segment (at most a third of it)
SEGMENT_GAIN_SD = 0.2              # std of a segment's natural-log level
FRICATION_LEVEL = 0.35             # frication noise at 0 dB phone level
ASPIRATION_LEVEL = 0.25
KNOT_POSITIONS = (0.3, 0.7)        # where in a sonorant its formant targets are reached
# Prosody (semitones per unit of the voice's f0_range): 1-3 pitch accents on sonorant knots, a slow
# wander, and a final fall over the last 20 % of the utterance.
ACCENTS = (1, 3)                   # fewest and most accents (at most one per knot)
ACCENT_WIDTH_S = (0.08, 0.2)       # std of an accent's Gaussian bump
ACCENT_HEIGHT = (0.5, 1.2)
WANDER_KNOTS, WANDER_SD = 8, 0.25
FINAL_FALL, FINAL_FALL_FROM, FINAL_FALL_SPAN = 0.5, 0.8, 0.2  # semitone units, from 80 % of the utterance over 20 %
_ROW_KEY = np.random.default_rng(12345).standard_normal(dsp.N_BINS)  # fingerprints envelope rows
_BW_BASE = np.array([70.0, 90.0, 120.0, 170.0, 220.0])


@dataclass(frozen=True)
class Voice:
    """A speaker's identity parameters (see `sample_voice` for their ranges)."""
    gender: str
    f0_mean: float                 # Hz
    f0_range: float                # semitones of pitch-accent excursion
    declination: float             # semitones of f0 fall over an utterance
    vtl_scale: float               # formant scaling: 1 / relative vocal-tract length
    formant_offsets: np.ndarray    # (5,) relative shift of F1..F5
    vowel_offsets: np.ndarray      # (len(SONORANTS), 3) relative per-phone shift of F1..F3 (accent)
    f45: np.ndarray                # (2,) F4, F5 in Hz before scaling
    bw_scale: float
    tilt: float                    # glottal low-pass pole: higher = steeper spectral tilt
    jitter: float                  # relative std of glottal periods
    shimmer: float                 # relative std of pulse amplitudes
    breathiness: float             # aspiration noise relative to the pulses
    rate: float                    # speaking-rate factor (>1 = faster)
    timbre: np.ndarray             # (6,) dB cosine coefficients of a fixed spectral colouring
    fric_scale: float              # fricative resonance scaling


def sample_voice(rng: np.random.Generator, gender: str) -> Voice:
    """Draws a random speaker of the given gender ('female' or 'male')."""
    if gender not in ("female", "male"):
        raise ValueError(f"gender must be 'female' or 'male', got {gender!r}")
    female = gender == "female"
    return Voice(
        gender=gender,
        f0_mean=float(np.exp(rng.uniform(np.log(165), np.log(255)) if female
                             else rng.uniform(np.log(85), np.log(150)))),
        f0_range=float(rng.uniform(1.5, 4.0)),
        declination=float(rng.uniform(1.0, 4.0)),
        vtl_scale=float(rng.normal(1.16 if female else 1.0, 0.045)),
        formant_offsets=rng.normal(0.0, 0.035, 5),
        vowel_offsets=rng.normal(0.0, 0.03, (len(SONORANTS), 3)),
        f45=np.array([rng.uniform(3300, 3800), rng.uniform(4300, 4900)]),
        bw_scale=float(np.exp(rng.uniform(np.log(0.75), np.log(1.4)))),
        tilt=float(rng.uniform(0.80, 0.94)),
        jitter=float(rng.uniform(0.01, 0.025)),
        shimmer=float(rng.uniform(0.05, 0.12)),
        breathiness=float(rng.uniform(0.05, 0.15) if female else rng.uniform(0.03, 0.10)),
        rate=float(rng.uniform(0.85, 1.2)),
        timbre=rng.normal(0.0, 2.0, 6),
        fric_scale=float(rng.normal(1.0, 0.05)),
    )


def perturb_voice(voice: Voice, rng: np.random.Generator, amount: float) -> Voice:
    """A close imitation of `voice`: what a TTS/VC system trained on that speaker reproduces (amount ~ 0..1)."""
    a = float(amount)
    return replace(
        voice,
        f0_mean=voice.f0_mean * float(np.exp(rng.normal(0, 0.04 * a))),
        f0_range=voice.f0_range * float(np.exp(rng.normal(0, 0.15 * a))),
        vtl_scale=voice.vtl_scale * float(1 + rng.normal(0, 0.012 * a)),
        formant_offsets=voice.formant_offsets + rng.normal(0, 0.01 * a, 5),
        vowel_offsets=voice.vowel_offsets + rng.normal(0, 0.01 * a, voice.vowel_offsets.shape),
        bw_scale=voice.bw_scale * float(np.exp(rng.normal(0, 0.08 * a))),
        timbre=voice.timbre + rng.normal(0, 0.6 * a, voice.timbre.shape),
        rate=voice.rate * float(np.exp(rng.normal(0, 0.05 * a))),
    )


@dataclass(frozen=True)
class Plan:
    """One utterance's content and timing, independent of the voice's spectra."""
    n: int                          # samples
    voicing: np.ndarray             # (n,) glottal excitation amplitude
    frication: np.ndarray           # (n,) frication noise amplitude
    aspiration: np.ndarray          # (n,) 'h'-like noise through the vocal tract
    knot_t: np.ndarray              # (K,) sample times of sonorant targets
    knot_phone: np.ndarray          # (K,) index into SONORANTS at each knot
    fric_phone: np.ndarray          # (frames,) index into FRICATIVES per STFT frame, -1 where none
    prosody: np.ndarray             # (n,) pitch-accent shape (semitones per unit of f0_range)


class Segment(NamedTuple):
    """One phone-like stretch of an utterance."""
    kind: str                      # 'sil' | 'fric' (fricative or stop burst) | 'asp' | 'son' | 'vow'
    phone: int                     # index into SONORANTS ('son', 'vow') or FRICATIVES ('fric'), -1 otherwise
    length: int                    # samples


def plan_utterance(rng: np.random.Generator, duration_s: float, rate: float = 1.0) -> Plan:
    """A random phone-like sequence of syllables ((C)(S)V(C)), stop closures and pauses, ~duration_s long."""
    segments = _segments(rng, duration_s, rate)
    n = sum(seg.length for seg in segments)
    voicing, frication, aspiration, knot_t, knot_p, fric_spans = _amplitude_tracks(rng, segments, n)

    centres = dsp.frame_times(n)
    fric_phone = np.full(len(centres), -1, dtype=np.int64)
    for start, end, phone in fric_spans:
        fric_phone[(centres >= start - dsp.HOP) & (centres < end + dsp.HOP)] = phone

    prosody = _prosody(rng, knot_t, n)
    if not knot_t:  # a plan with no sonorant still needs formant knots
        knot_t, knot_p = [n / 2], [FALLBACK_PHONE]
    return Plan(n=n, voicing=voicing, frication=frication, aspiration=aspiration,
                knot_t=np.asarray(knot_t), knot_phone=np.asarray(knot_p, dtype=np.int64),
                fric_phone=fric_phone, prosody=prosody)


def _segments(rng: np.random.Generator, duration_s: float, rate: float) -> list[Segment]:
    """Silence, then whole syllables until ~duration_s minus the final silence, then the final silence."""
    ms = SR / 1000.0 / rate

    def span(kind: str, phone: int, range_ms: tuple[float, float]) -> Segment:
        return Segment(kind, phone, int(rng.uniform(*range_ms) * ms))

    segments = [Segment("sil", -1, int(rng.uniform(*EDGE_SILENCE_MS) * SR / 1000))]
    total_target = int(duration_s * SR)
    used = segments[0].length
    end_sil = int(rng.uniform(*EDGE_SILENCE_MS) * SR / 1000)
    while used < total_target - end_sil:
        syllable: list[Segment] = []
        u = rng.random()
        if u < ONSET_FRICATIVE_P:
            syllable.append(span("fric", int(rng.integers(0, N_FRICATIVES)), FRICATIVE_MS))
        elif u < ONSET_FRICATIVE_P + ONSET_STOP_P:
            syllable.append(span("sil", -1, STOP_CLOSURE_MS))
            syllable.append(span("fric", int(rng.choice(STOPS)), STOP_BURST_MS))
        elif u < ONSET_FRICATIVE_P + ONSET_STOP_P + ONSET_ASPIRATION_P:
            syllable.append(span("asp", -1, ASPIRATION_MS))
        if rng.random() < SONORANT_BEFORE_P:
            syllable.append(span("son", int(rng.integers(N_VOWELS, len(SONORANTS))), SONORANT_MS))
        syllable.append(span("vow", int(rng.integers(0, N_VOWELS)), VOWEL_MS))
        if rng.random() < SONORANT_AFTER_P:
            syllable.append(span("son", int(rng.integers(N_VOWELS, len(SONORANTS))), SONORANT_MS))
        if rng.random() < CODA_FRICATIVE_P:
            syllable.append(span("fric", int(rng.integers(0, N_FRICATIVES)), FRICATIVE_MS))
        if rng.random() < PAUSE_P:
            syllable.append(span("sil", -1, PAUSE_MS))
        segments.extend(syllable)
        used += sum(seg.length for seg in syllable)
    segments.append(Segment("sil", -1, end_sil))
    return segments


def _amplitude_tracks(rng: np.random.Generator, segments: list[Segment], n: int):
    """(voicing, frication, aspiration) amplitudes (n,) as ramped trapezoids per segment, the sonorant knots
    (times, phones) and the fricative spans (start, end, phone)."""
    ramp = int(RAMP_S * SR)
    v_t, v_a, f_t, f_a, a_t, a_a = [0.0], [0.0], [0.0], [0.0], [0.0], [0.0]
    knot_t: list[float] = []
    knot_p: list[int] = []
    fric_spans: list[tuple[int, int, int]] = []
    pos = 0
    for kind, phone, length in segments:
        start, end = pos, pos + length
        r = min(ramp, length // 3)
        gain = float(np.exp(rng.normal(0, SEGMENT_GAIN_SD)))
        if kind in ("vow", "son"):
            amp = SONORANTS[phone].amplitude * gain
            v_t += [start, start + r, end - r, end]
            v_a += [0.0, amp, amp, 0.0]
            knot_t += [start + KNOT_POSITIONS[0] * length, start + KNOT_POSITIONS[1] * length]
            knot_p += [phone, phone]
        elif kind == "fric":
            fricative = FRICATIVES[phone]
            amp = FRICATION_LEVEL * gain * 10 ** (fricative.level_db / 20)
            rf = min(r, length // 4) if phone in STOPS else r
            f_t += [start, start + max(rf, 1), end - r, end]
            f_a += [0.0, amp, amp, 0.0]
            fric_spans.append((start, end, phone))
            if fricative.voicing > 0:
                v_t += [start, start + r, end - r, end]
                v_a += [0.0, fricative.voicing * gain, fricative.voicing * gain, 0.0]
        elif kind == "asp":
            a_t += [start, start + r, end - r, end]
            a_a += [0.0, ASPIRATION_LEVEL * gain, ASPIRATION_LEVEL * gain, 0.0]
        pos = end
    t = np.arange(n)
    voicing = np.interp(t, np.array(v_t + [n]), np.array(v_a + [0.0]))
    frication = np.interp(t, np.array(f_t + [n]), np.array(f_a + [0.0]))
    aspiration = np.interp(t, np.array(a_t + [n]), np.array(a_a + [0.0]))
    return voicing, frication, aspiration, knot_t, knot_p, fric_spans


def _prosody(rng: np.random.Generator, knot_t: list[float], n: int) -> np.ndarray:
    """Pitch-accent shape (n,): a few accents on sonorant knots, slow wander, a final fall."""
    t = np.arange(n)
    prosody = np.zeros(n)
    if knot_t:
        n_acc = int(rng.integers(ACCENTS[0], ACCENTS[1] + 1))
        for kt in rng.choice(np.array(knot_t), size=min(n_acc, len(knot_t)), replace=False):
            width = rng.uniform(*ACCENT_WIDTH_S) * SR
            prosody += rng.uniform(*ACCENT_HEIGHT) * np.exp(-0.5 * ((t - kt) / width) ** 2)
    wander = np.interp(t, np.linspace(0, n, WANDER_KNOTS), rng.normal(0, WANDER_SD, WANDER_KNOTS))
    prosody += wander - FINAL_FALL * np.clip((t - FINAL_FALL_FROM * n) / (FINAL_FALL_SPAN * n), 0, 1)
    return prosody


@dataclass(frozen=True)
class VocoderOptions:
    """How a waveform is produced from plan + voice. Defaults = natural (bona fide) speech."""
    excitation: str = "pulse"        # 'pulse' (glottal pulses) | 'sine' (harmonic sum, NSF-like)
    jitter_scale: float = 1.0
    shimmer_scale: float = 1.0
    breath_scale: float = 1.0
    prosody_scale: float = 1.0       # < 1 flattens pitch accents
    aperiodic_hf: float = 0.0        # WORLD-like band aperiodicity: noise mixed into voiced frames above ~3 kHz
    env_lifter: int | None = None    # cepstral smoothing order of the spectral envelope (None = exact)
    env_hold: int = 1                # envelope updated every env_hold frames (frame-rate quantisation)
    env_quant_db: float = 0.0        # quantisation step of the log envelope in dB
    bw_scale: float = 1.0            # formant bandwidth multiplier (over-smoothed statistical models)
    phase: str = "minimum"           # 'minimum' | 'zero' | 'griffinlim'
    gl_iters: int = 24
    lowpass_hz: float | None = None
    mu_law_bits: int | None = None
    f0_quant_st: float = 0.0         # f0 quantised to this many semitones (coarse pitch modelling)


def _formant_tracks(plan: Plan, voice: Voice, bw_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame F1..F5 and bandwidths (frames, 5) of this voice, interpolated between the plan's targets."""
    tbl = np.array([(s.f1, s.f2, s.f3) for s in SONORANTS])              # (P, 3)
    f123 = tbl[plan.knot_phone] * (1 + voice.vowel_offsets[plan.knot_phone])  # (K, 3)
    centres = dsp.frame_times(plan.n)
    freqs = np.empty((len(centres), 5))
    for k in range(3):
        freqs[:, k] = np.interp(centres, plan.knot_t, f123[:, k])
    freqs[:, 3:] = voice.f45
    freqs *= voice.vtl_scale * (1 + voice.formant_offsets)
    freqs = np.minimum(freqs, SR / 2 - 300)
    # Keep formants ordered and apart, as a real tract does.
    for k in range(1, 5):
        freqs[:, k] = np.maximum(freqs[:, k], freqs[:, k - 1] + 200)
    freqs = np.minimum(freqs, SR / 2 - 200)
    bws = _BW_BASE[None, :] * voice.bw_scale * bw_scale * (1 + freqs / 4000)
    return freqs, bws


def voiced_envelope(plan: Plan, voice: Voice, bw_scale: float = 1.0) -> np.ndarray:
    """Per-frame natural-log magnitude (frames, bins) of this voice's vocal tract and timbre for the plan."""
    freqs, bws = _formant_tracks(plan, voice, bw_scale)
    # Formants move slowly: evaluate every other frame and interpolate the log-magnitudes (half the cost).
    even = dsp.resonance_logmag(freqs[::2], bws[::2])
    env = np.empty((len(freqs), dsp.N_BINS))
    env[::2] = even
    odd = env[1::2]
    odd[:] = 0.5 * (even[:len(odd)] + np.concatenate([even[1:], even[-1:]])[:len(odd)])
    return env + dsp.db_to_logmag(dsp.smooth_curve(voice.timbre))[None, :]


def _fricative_env(plan: Plan, voice: Voice) -> np.ndarray:
    """Per-frame natural-log magnitude (frames, bins) of the frication filter, 0 dB peak per phone."""
    env = np.zeros((len(plan.fric_phone), dsp.N_BINS))
    scale = voice.vtl_scale * voice.fric_scale
    for p, fricative in enumerate(FRICATIVES):
        rows = plan.fric_phone == p
        if not rows.any():
            continue
        f = np.array([[min(fricative.centre1 * scale, 7400), min(fricative.centre2 * scale, 7600)]])
        logmag = dsp.resonance_logmag(f, np.array([[fricative.bandwidth1, fricative.bandwidth2]]))[0]
        hpc = fricative.highpass_hz * scale
        logmag += 0.5 * np.log((dsp.FREQS / hpc) ** 4 / (1 + (dsp.FREQS / hpc) ** 4) + 1e-8)
        env[rows] = logmag - logmag.max()
    return env


def _f0_track(plan: Plan, voice: Voice, opts: VocoderOptions) -> np.ndarray:
    t = np.arange(plan.n) / plan.n
    st = plan.prosody * voice.f0_range * opts.prosody_scale + voice.declination * (0.5 - t)
    if opts.f0_quant_st > 0:
        st = np.round(st / opts.f0_quant_st) * opts.f0_quant_st
    return voice.f0_mean * 2 ** (st / 12)


def _pulse_excitation(f0: np.ndarray, voice: Voice, opts: VocoderOptions, rng: np.random.Generator) -> np.ndarray:
    """Glottal pulse train with jittered periods and shimmered amplitudes (loop over periods, not samples)."""
    n = len(f0)
    max_pulses = int(n * f0.max() / SR * 1.2) + 4
    jit = rng.normal(0, voice.jitter * opts.jitter_scale, max_pulses)
    shim = np.clip(1 + rng.normal(0, voice.shimmer * opts.shimmer_scale, max_pulses), 0.3, None)
    times = np.empty(max_pulses)
    t = float(rng.uniform(0, SR / f0[0]))
    k = 0
    while t < n - 1 and k < max_pulses:
        times[k] = t
        t += SR / f0[int(t)] * (1 + jit[k])
        k += 1
    times, amps = times[:k], shim[:k]
    i = np.floor(times).astype(np.int64)
    frac = times - i
    x = np.zeros(n + 1)
    np.add.at(x, i, amps * (1 - frac))
    np.add.at(x, i + 1, amps * frac)
    return x[:n]


def _sine_excitation(f0: np.ndarray, voice: Voice, opts: VocoderOptions, rng: np.random.Generator) -> np.ndarray:
    """Sum of harmonics of f0 (a neural source-filter style source): no pulse shape, no period jitter."""
    wobble = np.interp(np.arange(len(f0)), np.linspace(0, len(f0), 40),
                       rng.normal(0, voice.jitter * opts.jitter_scale, 40))
    phase = 2 * np.pi * np.cumsum(f0 * (1 + wobble)) / SR
    n_h = int((SR / 2) // f0.min())
    x = np.zeros(len(f0))
    for h in range(1, n_h + 1):
        x += np.cos(h * phase) * (h * f0 < SR / 2 - 200)
    return x * (np.mean(f0) / SR)


def render(plan: Plan, voice: Voice, rng: np.random.Generator, opts: VocoderOptions = VocoderOptions(),
           channel_db: np.ndarray | None = None) -> np.ndarray:
    """Synthesises the plan with the voice; returns float64 audio (unnormalised level)."""
    n = plan.n
    f0 = _f0_track(plan, voice, opts)
    if opts.excitation == "pulse":
        pulses = _pulse_excitation(f0, voice, opts, rng)
    elif opts.excitation == "sine":
        pulses = _sine_excitation(f0, voice, opts, rng)
    else:
        raise ValueError(f"unknown excitation {opts.excitation!r}; choose 'pulse' or 'sine'")
    g = voice.tilt
    glottal = lfilter([1.0, -1.0], [1.0, -2 * g, g * g], pulses)  # glottal low-pass + lip radiation
    glottal /= np.sqrt(np.mean(glottal ** 2) + 1e-12) * np.sqrt(np.mean(plan.voicing > 0) + 1e-3) + 1e-12
    noise = rng.normal(0, 1, n)
    breath = np.diff(noise, prepend=0.0) * voice.breathiness * opts.breath_scale
    voiced = (glottal + breath) * plan.voicing + noise * plan.aspiration
    fric = rng.normal(0, 1, n) * plan.frication

    sv, sf = dsp.stft(voiced), dsp.stft(fric)
    if opts.aperiodic_hf > 0:
        ap = dsp.stft(rng.normal(0, 1, n) * plan.voicing)
        w = np.clip((dsp.FREQS - 2500) / 3000, 0, 1) * opts.aperiodic_hf
        scale = np.sqrt(np.mean(np.abs(sv) ** 2, axis=1, keepdims=True)
                        / (np.mean(np.abs(ap) ** 2, axis=1, keepdims=True) + 1e-12))
        sv = sv * (1 - w) + ap * scale * w

    env_v = voiced_envelope(plan, voice, opts.bw_scale)
    env_f = _fricative_env(plan, voice) + dsp.db_to_logmag(0.5 * dsp.smooth_curve(voice.timbre))[None, :]
    env_v, env_f = _transform_env(env_v, opts), _transform_env(env_f, opts)
    if opts.phase in ("minimum", "griffinlim"):
        # Frication filters are piecewise constant (one per phone): transform each distinct row once.
        _, first, inverse = np.unique(env_f @ _ROW_KEY, return_index=True, return_inverse=True)
        hv, hf = dsp.minimum_phase(env_v), dsp.minimum_phase(env_f[first])[inverse.reshape(-1)]
    elif opts.phase == "zero":
        hv, hf = np.exp(env_v), np.exp(env_f)
    else:
        raise ValueError(f"unknown phase model {opts.phase!r}; choose 'minimum', 'zero' or 'griffinlim'")
    spec = sv * hv + sf * hf
    if channel_db is not None:
        spec = spec * np.exp(dsp.db_to_logmag(channel_db))[None, :]
    if opts.lowpass_hz is not None:
        spec = dsp.lowpass_spec(spec, opts.lowpass_hz)
    if opts.phase == "griffinlim":
        return dsp.griffin_lim(np.abs(spec), n, opts.gl_iters, rng)
    return dsp.istft(spec, n)


def _transform_env(env: np.ndarray, opts: VocoderOptions) -> np.ndarray:
    if opts.env_lifter is not None:
        env = dsp.lifter(env, opts.env_lifter)
    if opts.env_hold > 1:
        idx = (np.arange(len(env)) // opts.env_hold) * opts.env_hold
        env = env[idx]
    if opts.env_quant_db > 0:
        step = dsp.db_to_logmag(opts.env_quant_db)
        env = np.round(env / step) * step
    return env


def sample_channel(rng: np.random.Generator, strength: float) -> np.ndarray:
    """A recording-channel colouring (bins,) in dB: random tilt and smooth ripples; strength ~ 0..1."""
    coeffs = rng.normal(0, 1.5 * strength, 5)
    tilt = rng.normal(0, 2.0 * strength) * np.log2(np.maximum(dsp.FREQS, 100) / 1000)
    return dsp.smooth_curve(coeffs) + tilt


def finish(x: np.ndarray, rng: np.random.Generator, snr_db: float, peak: float,
           mu_law_bits: int | None = None) -> np.ndarray:
    """Level normalisation, optional mu-law output quantisation, then a background noise floor; float32 in [-1, 1]."""
    x = x - x.mean()
    x = x * (peak / (np.abs(x).max() + 1e-9))
    if mu_law_bits is not None:
        x = dsp.mu_law(x, mu_law_bits)
    speech_rms = np.sqrt(np.mean(x[np.abs(x) > 0.02 * peak] ** 2)) if np.any(np.abs(x) > 0.02 * peak) else peak / 4
    floor = rng.normal(0, 1, len(x))
    floor = lfilter([1.0], [1.0, -0.7], floor)  # slightly pink, like room noise
    floor *= speech_rms * 10 ** (-snr_db / 20) / (np.sqrt(np.mean(floor ** 2)) + 1e-12)
    return np.clip(x + floor, -1.0, 1.0).astype(np.float32)
