"""`SSLEncoder`: a torchaudio wav2vec 2.0 / HuBERT / WavLM encoder as a front-end that returns one feature sequence.

What it adds to `torchaudio.models.Wav2Vec2Model`:
- layer choice: the last layer, one layer, or a learnt softmax-weighted sum of all of them. Layers are numbered
  as in Hugging Face's `output_hidden_states` (and S3PRL): 0 is the transformer's input (the projected CNN
  features plus the convolutional position embedding), k = 1..L the output of transformer layer k; layer L of a
  pre-LayerNorm model (large, XLS-R) includes the encoder's final LayerNorm, so that 'last' is what the model's
  own forward returns (SSL-AASIST's fairseq `features_only` output).
- freezing: a frozen encoder runs under `torch.no_grad` in eval mode whatever its parent's mode, so training a
  head on it costs the encoder's forward only (no activations kept, no gradients). `no_grad` rather than
  `inference_mode`: the head's first layer must save the features for its own backward, which inference tensors
  forbid. `freeze: N` keeps it frozen for the first N epochs and fine-tunes it from epoch N (`set_epoch`).
- gradient checkpointing for fine-tuning: the CNN and each transformer layer are recomputed in backward.
- input rule: the CNN needs its receptive field (400 samples for every torchaudio architecture); shorter inputs
  are repeat-padded (tiled), as `data.audio.repeat_pad` pads short utterances everywhere else in the toolkit, so a
  short utterance gives the frames of its own signal rather than of silence. An empty input is an error.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchaudio import models as ta

from common.dispatch import build
from common.errors import InputError
from ssl_models.checkpoint import load_encoder_weights

logger = logging.getLogger(__name__)

# wav2vec2_base's architecture: what the custom builders use for every argument their `options` leave out.
_BASE = dict(extractor_mode="group_norm", extractor_conv_layer_config=None, extractor_conv_bias=False,
             encoder_embed_dim=768, encoder_projection_dropout=0.1, encoder_pos_conv_kernel=128,
             encoder_pos_conv_groups=16, encoder_num_layers=12, encoder_num_heads=12, encoder_attention_dropout=0.1,
             encoder_ff_interm_features=3072, encoder_ff_interm_dropout=0.1, encoder_dropout=0.1,
             encoder_layer_norm_first=False, encoder_layer_drop=0.1)

# name -> torchaudio builder, or (builder, defaults) for the custom architectures. Named builders take only their
# dropouts and layer drop as options; wav2vec2_model / wavlm_model take any architecture argument.
ENCODERS: dict[str, Any] = {
    "wav2vec2_model": (ta.wav2vec2_model, _BASE),
    "wavlm_model": (ta.wavlm_model, {**_BASE, "encoder_num_buckets": 320, "encoder_max_distance": 800}),
    "wav2vec2_base": ta.wav2vec2_base,
    "wav2vec2_large": ta.wav2vec2_large,
    "wav2vec2_large_lv60k": ta.wav2vec2_large_lv60k,
    "wav2vec2_xlsr_300m": ta.wav2vec2_xlsr_300m,
    "wav2vec2_xlsr_1b": ta.wav2vec2_xlsr_1b,
    "wav2vec2_xlsr_2b": ta.wav2vec2_xlsr_2b,
    "hubert_base": ta.hubert_base,
    "hubert_large": ta.hubert_large,
    "hubert_xlarge": ta.hubert_xlarge,
    "wavlm_base": ta.wavlm_base,
    "wavlm_base_plus": ta.wavlm_base,   # WavLM Base+ differs from Base in its training data, not its architecture
    "wavlm_large": ta.wavlm_large,
}

LAYER_CHOICES = ("last", "weighted")


class SSLEncoder(nn.Module):
    """wave (B, T) float32 at 16 kHz -> features (B, frames, embed_dim), one frame per `hop_samples` (20 ms).

    Every argument is a key of an encoder section (`ssl_models.CONFIG` holds the defaults; `build_encoder`).
    Attributes for the model that uses it: `embed_dim`, `num_layers` (L), `hop_samples`, `receptive_field`,
    `min_samples`, `frames(n_samples)`, `lr`, `frozen`, `encoder_parameters()`, `layer_weights` (weighted only).
    """
    min_samples = 1   # shorter than the receptive field is repeat-padded; only an empty input is refused

    def __init__(self, name: str, checkpoint: Optional[str], layer: str | int, freeze: bool | int, lr: float,
                 grad_checkpointing: bool, normalize: bool, options: Mapping[str, Any]):
        super().__init__()
        if not isinstance(options, Mapping):
            raise InputError(f"encoder.options: expected a mapping of builder arguments, got {options!r}")
        self.name = name
        try:
            self.model = build(ENCODERS, name, dict(options), "SSL encoder", fixed={"aux_num_out": None})
        except InputError as e:
            raise InputError(f"encoder.{'name' if name not in ENCODERS else 'options'}: {e}") from None
        transformer = self.model.encoder.transformer
        self.num_layers = len(transformer.layers)
        self.embed_dim = transformer.pos_conv_embed.embed_dim
        self.receptive_field, self.hop_samples = _conv_geometry(self.model)
        self.layer = _check_layer(layer, self.num_layers, name)
        if self.layer == "weighted":   # zeros: every layer weighs the same at the start
            self.layer_weights = nn.Parameter(torch.zeros(self.num_layers + 1))
        self.freeze = _check_freeze(freeze)
        self.lr = _check_lr(lr)
        self.grad_checkpointing = bool(grad_checkpointing)
        self.normalize = bool(normalize)
        self.frozen = self.freeze is True or (self.freeze is not False and self.freeze > 0)
        if self.freeze is True:   # never trained: out of every optimizer group
            for p in self.model.parameters():
                p.requires_grad_(False)
        if checkpoint:
            load_encoder_weights(self, checkpoint)
        self.train(self.training)

    # ------------------------------------------------------------------ training control
    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The pre-trained weights (not the learnt layer weights): the group trained at `lr`."""
        return self.model.parameters()

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of each (0-based) epoch: with `freeze: N`, frozen while epoch < N."""
        if isinstance(self.freeze, bool):
            return
        frozen = epoch < self.freeze
        if frozen != self.frozen:
            logger.info(f"SSL encoder {self.name}: {'frozen' if frozen else 'fine-tuned'} from epoch {epoch + 1}")
        self.frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> SSLEncoder:
        """A frozen encoder stays in eval mode (no dropout, no layer drop) when its parent trains."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    # ------------------------------------------------------------------ features
    def frames(self, n_samples: int) -> int:
        """Frames the encoder gives for an input of `n_samples` (after the padding rule)."""
        n = max(int(n_samples), self.receptive_field)
        return (n - self.receptive_field) // self.hop_samples + 1

    def samples_for(self, n_frames: int) -> int:
        """The fewest samples that give `n_frames` frames."""
        return self.receptive_field + (max(n_frames, 1) - 1) * self.hop_samples

    def pad(self, wave: torch.Tensor, min_frames: int = 1) -> torch.Tensor:
        """`wave` checked, and repeat-padded (tiled) to give at least `min_frames` frames."""
        if wave.dim() != 2:
            raise InputError(f"SSL encoder {self.name}: expected a (batch, samples) waveform tensor, "
                             f"got shape {tuple(wave.shape)}")
        if wave.shape[1] == 0:
            raise InputError(f"SSL encoder {self.name}: empty input (0 samples)")
        need = self.samples_for(min_frames)
        if wave.shape[1] < need:
            wave = wave.repeat(1, math.ceil(need / wave.shape[1]))[:, :need]
        return wave

    def hidden_states(self, wave: torch.Tensor, upto: Optional[int] = None) -> list[torch.Tensor]:
        """Layers 0..upto (default L) of an already padded `wave`, each (B, frames, embed_dim), under the current
        grad mode. Mirrors `Wav2Vec2Model.extract_features` (tests check it) plus layer 0, layer drop in training
        as in the model's own forward, the final LayerNorm of pre-LN models on layer L, and checkpointing."""
        upto = self.num_layers if upto is None else upto
        m = self.model
        recompute = self.grad_checkpointing and self.model.training and torch.is_grad_enabled()
        if self.normalize:    # as fairseq's `normalize` computes it
            wave = F.layer_norm(wave, wave.shape[1:])
        if recompute:
            x, _ = checkpoint(m.feature_extractor, wave, None, use_reentrant=False)
        else:
            x, _ = m.feature_extractor(wave, None)
        x, mask = m.encoder._preprocess(x, None)           # feature projection (LayerNorm, Linear, dropout)
        transformer = m.encoder.transformer
        x = transformer._preprocess(x)                     # + convolutional position embedding (, LayerNorm)
        states, position_bias = [x], None
        for layer in transformer.layers[:upto]:
            if transformer.training and transformer.layer_drop > 0 and torch.rand(1).item() <= transformer.layer_drop:
                states.append(x)
                continue
            if recompute:
                x, position_bias = checkpoint(layer, x, mask, position_bias, use_reentrant=False)
            else:
                x, position_bias = layer(x, mask, position_bias=position_bias)
            states.append(x)
        if upto == self.num_layers and not transformer.layer_norm_first:   # pre-LN model: its final LayerNorm
            states[-1] = transformer.layer_norm(states[-1])
        return states

    def layer_outputs(self, wave: torch.Tensor, min_frames: int = 1, upto: Optional[int] = None) -> list[torch.Tensor]:
        """`hidden_states` of a raw (B, T) waveform: repeat-padded to `min_frames` frames, under the freezing rule
        (a frozen encoder runs without autograd). For heads that weigh the layers themselves (SSL-MHFA)."""
        wave = self.pad(wave, min_frames)
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            return self.hidden_states(wave, upto)

    def forward(self, wave: torch.Tensor, min_frames: int = 1) -> torch.Tensor:
        """(B, T) waveform -> (B, frames, embed_dim) features of the configured layer (or weighted sum); inputs
        giving fewer than `min_frames` frames are repeat-padded first."""
        states = self.layer_outputs(wave, min_frames, self.layer if isinstance(self.layer, int) else None)
        if self.layer == "weighted":
            return weighted_sum(self.layer_weights, states)
        return states[-1]

    def extra_repr(self) -> str:
        freeze = {True: "frozen", False: "fine-tuned"}.get(self.freeze, f"frozen for {self.freeze} epochs")
        return f"name={self.name}, layer={self.layer}, {freeze}, lr={self.lr:g}"


def weighted_sum(logits: torch.Tensor, states: list[torch.Tensor]) -> torch.Tensor:
    """sum_l softmax(logits)_l * states[l]: the learnt layer weighting (one logit per layer, zeros = equal)."""
    weights = torch.softmax(logits, dim=0).to(states[0].dtype)
    return torch.einsum("l,lbtd->btd", weights, torch.stack(states))


def _conv_geometry(model: nn.Module) -> tuple[int, int]:
    """(receptive field, hop) in samples of the CNN feature extractor: 400 and 320 for every published model."""
    field, hop = 1, 1
    for block in model.feature_extractor.conv_layers:
        field += (block.conv.kernel_size[0] - 1) * hop
        hop *= block.conv.stride[0]
    return field, hop


def _check_layer(layer: Any, num_layers: int, name: str) -> str | int:
    if isinstance(layer, str) and layer in LAYER_CHOICES:
        return layer
    if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer <= num_layers:
        return layer
    raise InputError(f"encoder.layer: {layer!r} is not a layer of {name}: give 'last', 'weighted' or an int in "
                     f"0..{num_layers} (0 = the CNN features entering the transformer, {num_layers} = its last layer)")


def _check_freeze(freeze: Any) -> bool | int:
    if isinstance(freeze, bool) or (isinstance(freeze, int) and freeze >= 0):
        return freeze
    raise InputError(f"encoder.freeze: expected true, false or an epoch number >= 0, got {freeze!r}")


def _check_lr(lr: Any) -> float:
    try:
        value = float(lr)   # YAML reads 1e-6 (no dot) as a string
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0:
        raise InputError(f"encoder.lr: expected a positive learning rate, got {lr!r}")
    return value
