"""Spoofing "attack systems": each imitates the claimed speaker's voice but leaves its own artefacts.

The systems loosely follow ASVspoof 2019 LA. Train and dev use A01-A06; eval uses A07-A19, where A16 is
A04 and A19 is A06 (as in the real corpus), some eval systems share part of a training system's artefacts
(mu-law output, WORLD-like excitation, spectral smoothing) and some are unseen in kind (sinusoidal sources,
Griffin-Lim phase, band limitation). The artefacts are deliberately mild: a speaker model still accepts most
spoofs, and a countermeasure trained on A01-A06 only partly generalises to the eval systems.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import dsp
from .voice import Plan, VocoderOptions, Voice, perturb_voice, plan_utterance, render, voiced_envelope

TRAIN_ATTACKS = ("A01", "A02", "A03", "A04", "A05", "A06")
EVAL_ATTACKS = ("A07", "A08", "A09", "A10", "A11", "A12", "A13", "A14", "A15", "A16", "A17", "A18", "A19")


@dataclass(frozen=True)
class AttackSystem:
    """One spoofing system: how it produces speech ('vocoder', 'concat' or 'filter') and its settings."""
    name: str
    description: str
    method: str = "vocoder"
    perturb: float = 0.5                  # how far the imitation drifts from the target voice
    opts: VocoderOptions = field(default_factory=VocoderOptions)
    mu_law_bits: int | None = None        # output quantisation of a WaveNet-like waveform model
    filter_lifter: int = 40               # 'filter': cepstral order (detail) of the source-to-target filter
    filter_noise_db: float = 10.0         # 'filter': frame-to-frame estimation noise of that filter


_WORLD = dict(jitter_scale=0.0, shimmer_scale=0.0, breath_scale=0.0, prosody_scale=0.7)

ATTACKS: dict[str, AttackSystem] = {a.name: a for a in (
    AttackSystem("A01", "neural TTS with a WaveNet-like waveform model: over-smoothed formants, 8-bit mu-law output",
                 opts=VocoderOptions(bw_scale=1.3, jitter_scale=0.3, shimmer_scale=0.5), mu_law_bits=8),
    AttackSystem("A02", "TTS with a WORLD-like vocoder: jitter-free pulses, band-aperiodicity noise, smoothed envelope",
                 opts=VocoderOptions(aperiodic_hf=0.8, env_lifter=16, **_WORLD)),
    AttackSystem("A03", "TTS with a WORLD-like vocoder at a coarse frame rate with quantised envelopes",
                 opts=VocoderOptions(jitter_scale=0.0, shimmer_scale=0.0, breath_scale=0.3, aperiodic_hf=0.6,
                                     env_hold=6, env_quant_db=5.0)),
    AttackSystem("A04", "waveform concatenation of natural units with hard joins and level jumps",
                 method="concat", perturb=0.15),
    AttackSystem("A05", "voice conversion (VAE-like) with a WORLD-like vocoder and coarse f0",
                 perturb=1.0, opts=VocoderOptions(env_lifter=16, aperiodic_hf=0.7, f0_quant_st=1.0, **_WORLD)),
    AttackSystem("A06", "voice conversion by spectral filtering of another speaker's natural speech",
                 method="filter", perturb=0.6),
    AttackSystem("A07", "neural TTS with a WORLD-like vocoder and a GAN post-filter restoring envelope detail",
                 opts=VocoderOptions(aperiodic_hf=0.2, **_WORLD)),
    AttackSystem("A08", "neural source-filter model: harmonic-sum (sine) excitation",
                 opts=VocoderOptions(excitation="sine", breath_scale=0.5)),
    AttackSystem("A09", "sinusoidal (Vocaine-like) vocoder with a smoothed, coarse-frame envelope",
                 opts=VocoderOptions(excitation="sine", env_lifter=30, env_hold=2, breath_scale=0.3)),
    AttackSystem("A10", "Tacotron-like TTS with a WaveRNN-like 9-bit output",
                 opts=VocoderOptions(bw_scale=1.2, prosody_scale=0.8), mu_law_bits=9),
    AttackSystem("A11", "Tacotron-like TTS with Griffin-Lim phase reconstruction",
                 opts=VocoderOptions(phase="griffinlim", gl_iters=20)),
    AttackSystem("A12", "neural TTS with a WaveNet-like 10-bit output",
                 opts=VocoderOptions(jitter_scale=0.5), mu_law_bits=10),
    AttackSystem("A13", "moment-matching TTS with waveform filtering of natural speech",
                 method="filter", perturb=0.5, filter_lifter=16, filter_noise_db=3.0),
    AttackSystem("A14", "voice conversion with a STRAIGHT-like vocoder",
                 perturb=0.8, opts=VocoderOptions(env_lifter=50, aperiodic_hf=0.25, jitter_scale=0.3,
                                                  shimmer_scale=0.3)),
    AttackSystem("A15", "voice conversion with a WaveNet-like 8-bit output",
                 perturb=1.0, opts=VocoderOptions(jitter_scale=0.5), mu_law_bits=8),
    AttackSystem("A16", "waveform concatenation (same system as A04)", method="concat", perturb=0.15),
    AttackSystem("A17", "VAE voice conversion with waveform filtering and a band-limited output",
                 perturb=0.8, opts=VocoderOptions(lowpass_hz=5500.0, env_lifter=30)),
    AttackSystem("A18", "voice conversion with an MFCC vocoder: low-order cepstral envelope, zero phase",
                 perturb=0.8, opts=VocoderOptions(env_lifter=16, phase="zero", jitter_scale=0.0, shimmer_scale=0.3)),
    AttackSystem("A19", "voice conversion by spectral filtering (same system as A06)",
                 method="filter", perturb=0.6),
)}


def get_attack(name: str) -> AttackSystem:
    """The attack system called `name` ('A01'..'A19')."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack system {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def synthesize_spoof(attack: AttackSystem, target: Voice, rng: np.random.Generator, duration_s: float,
                     channel_db: np.ndarray, source: Voice | None = None) -> tuple[np.ndarray, int | None]:
    """A spoof of `target` by `attack`, ~duration_s long; returns (unnormalised audio, mu-law bits or None).

    `source` is the speaker whose natural speech a 'filter' system converts (required for that method).
    """
    voice = perturb_voice(target, rng, attack.perturb)
    if attack.method == "vocoder":
        plan = plan_utterance(rng, duration_s, voice.rate)
        return render(plan, voice, rng, attack.opts, channel_db), attack.mu_law_bits
    if attack.method == "concat":
        return _concatenate(voice, rng, duration_s, channel_db), attack.mu_law_bits
    if attack.method == "filter":
        if source is None:
            raise ValueError(f"attack {attack.name} converts another speaker's speech: pass source=")
        plan = plan_utterance(rng, duration_s, source.rate)
        x = _filter_convert(plan, voice, source, rng, attack.filter_lifter, attack.filter_noise_db, channel_db)
        return x, attack.mu_law_bits
    raise ValueError(f"attack {attack.name}: unknown method {attack.method!r}")


def _concatenate(voice: Voice, rng: np.random.Generator, duration_s: float, channel_db: np.ndarray) -> np.ndarray:
    """Unit selection: cuts pieces out of several natural renderings and joins them with 2 ms cross-fades."""
    total = int(duration_s * dsp.SAMPLE_RATE)
    fade = 4  # joins are nearly hard cuts: waveform and pitch-phase discontinuities
    ramp = np.linspace(0.0, 1.0, fade)
    out = np.zeros(0)
    while len(out) < total:
        length = int(rng.uniform(0.08, 0.25) * dsp.SAMPLE_RATE)
        plan = plan_utterance(rng, length / dsp.SAMPLE_RATE + 0.35, voice.rate)
        unit = render(plan, voice, rng, VocoderOptions(), channel_db)
        start = int(rng.integers(0, max(1, plan.n - length)))
        unit = unit[start:start + length] * 10 ** (rng.normal(0, 4.0) / 20)  # units differ slightly in level
        if len(out) >= fade:
            out[-fade:] = out[-fade:] * ramp[::-1] + unit[:fade] * ramp
            unit = unit[fade:]
        out = np.concatenate([out, unit])
    return out[:total]


def _filter_convert(plan: Plan, target: Voice, source: Voice, rng: np.random.Generator, order: int,
                    noise_db: float, channel_db: np.ndarray) -> np.ndarray:
    """Renders the source speaker (with the target's pitch) and filters it by a smoothed target/source
    envelope ratio."""
    src = replace(source, f0_mean=target.f0_mean, f0_range=target.f0_range, declination=target.declination)
    x = render(plan, src, rng, VocoderOptions(), channel_db)
    ratio = voiced_envelope(plan, target) - voiced_envelope(plan, src)
    # The system estimates both envelopes from speech: its filter fluctuates from frame to frame.
    ratio = dsp.lifter(ratio + dsp.db_to_logmag(rng.normal(0, noise_db, ratio.shape)), order)
    return dsp.istft(dsp.stft(x) * np.exp(ratio), plan.n)
