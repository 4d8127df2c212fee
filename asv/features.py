"""Log-mel front-end shared by the speaker models.

Numerically the same as the seeds' `PreEmphasis` + `torchaudio.transforms.MelSpectrogram` stack, but the window
and the mel filterbank are computed once as non-persistent buffers: they follow `.to(device)`, are never
recomputed per forward, and stay out of the state dict (the checkpoint adapter drops the copies the seeds store).
Feature extraction runs without autograd and in float32 even under autocast, as in the seeds.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from common.errors import InputError

SAMPLE_RATE = 16000
N_FFT = 512
WIN_LENGTH = 400   # 25 ms
HOP_LENGTH = 160   # 10 ms

SpecAugmentFn = Callable[[torch.Tensor], torch.Tensor]


def pre_emphasis(wave: torch.Tensor, coef: float) -> torch.Tensor:
    """y[t] = x[t] - coef * x[t-1], with x[-1] := x[1] (the seeds' reflect padding)."""
    previous = torch.cat((wave[:, 1:2], wave[:, :-1]), dim=1)
    return wave - coef * previous


class LogMelFrontend(nn.Module):
    """wave (B, T) -> log-mel (B, n_mels, frames), normalised over time per utterance.

    norm="instance": zero mean, unit variance per mel band (voxceleb_trainer's InstanceNorm1d).
    norm="mean": mean subtraction only (ECAPA-TDNN, TaoRuijie).
    """

    def __init__(self, n_mels: int, f_min: float = 0.0, f_max: Optional[float] = None,
                 pre_emphasis: Optional[float] = 0.97, norm: str = "instance"):
        super().__init__()
        if norm not in ("instance", "mean"):
            raise InputError(f"unknown feature normalisation '{norm}' (valid: instance, mean)")
        self.n_mels = n_mels
        self.pre_emphasis = pre_emphasis
        self.norm = norm
        # torch.stft centres a shorter window inside n_fft; padding it once here saves that per call.
        window = F.pad(torch.hamming_window(WIN_LENGTH), ((N_FFT - WIN_LENGTH) // 2,) * 2)
        self.register_buffer("window", window, persistent=False)
        fb = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1, f_min, float(f_max if f_max is not None else SAMPLE_RATE // 2), n_mels, SAMPLE_RATE)
        self.register_buffer("mel_fb", fb.T.contiguous(), persistent=False)  # (n_mels, n_freq)

    def forward(self, wave: torch.Tensor, spec_augment: Optional[SpecAugmentFn] = None) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device_type=wave.device.type, enabled=False):
            x = wave.float()
            if self.pre_emphasis is not None:
                x = pre_emphasis(x, self.pre_emphasis)
            spec = torch.stft(x, N_FFT, HOP_LENGTH, N_FFT, self.window, center=True, pad_mode="reflect",
                              return_complex=True)
            power = spec.real.square() + spec.imag.square()          # (B, n_freq, frames)
            x = torch.matmul(self.mel_fb, power).add_(1e-6).log_()  # (B, n_mels, frames)
            if self.norm == "instance":
                x = F.instance_norm(x)
            else:
                x = x - x.mean(dim=-1, keepdim=True)
            if spec_augment is not None:
                x = spec_augment(x)
        return x


def resolve_spec_augment(value: object, model_name: str) -> Optional[SpecAugmentFn]:
    """The model's `spec_augment` setting: None/False (none), True (data.augment.SpecAugment defaults), a mapping
    (its keyword arguments, e.g. from a config) or any callable on (B, n_mels, frames) features."""
    if value is None or value is False:
        return None
    if value is True or isinstance(value, Mapping):
        from data.augment import SpecAugment as SpecAugmentModule  # lazy: models do not need the data package
        settings = {} if value is True else dict(value)
        try:
            return SpecAugmentModule(**settings)
        except TypeError as e:
            raise InputError(f"{model_name}: bad spec_augment settings {settings}: {e}") from None
    if callable(value):
        return value
    raise InputError(f"{model_name}: spec_augment must be None, a bool, a mapping or a callable, "
                     f"got {type(value).__name__}")


def augmenter(model_name: str, aug: bool, spec_augment: Optional[SpecAugmentFn]) -> Optional[SpecAugmentFn]:
    """The SpecAugment callable to apply in this forward, refusing aug=True on a model built without one."""
    if not aug:
        return None
    if spec_augment is None:
        raise InputError(f"{model_name}: forward(aug=True) but the model was built without spec_augment")
    return spec_augment


def check_wave(wave: torch.Tensor, model_name: str) -> None:
    """Models take (B, T) float waveforms; anything else gets a one-line error instead of a shape crash deep inside."""
    if wave.dim() != 2:
        raise InputError(f"{model_name}: expected a (batch, samples) waveform tensor, got shape {tuple(wave.shape)}")
    if wave.shape[1] < WIN_LENGTH:
        raise InputError(f"{model_name}: input of {wave.shape[1]} samples is shorter than one "
                         f"{WIN_LENGTH}-sample analysis window")
