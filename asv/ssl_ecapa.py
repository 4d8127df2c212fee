"""SSL-ECAPA: ECAPA-TDNN on a learnt weighted sum of the layers of a self-supervised encoder (WavLM, HuBERT,
wav2vec 2.0) instead of log-mel filterbanks, as in the WavLM paper's speaker verification system (Chen et al.,
"WavLM: Large-scale self-supervised pre-training for full stack speech processing", IEEE JSTSP 2022; code
microsoft/UniSpeech `downstreams/speaker_verification`), ESPnet-SPK and WeSpeaker's SSL recipes.

wave (B, T) at 16 kHz -> encoder layers 0..L, softmax-weighted sum (`encoder.layer_weights`, trained with the
head) -> (B, D, frames) at 50 frames per second -> instance normalisation (each dimension to zero mean and unit
variance over the utterance, as UniSpeech's `instance_norm`; the fbank models subtract the mean) ->
ECAPA-TDNN's layers after the features (`asv.ecapa_tdnn.add_tdnn_layers`: its 5-wide stem maps the D encoder
dimensions to C channels, so no separate projection is needed) -> (B, embedding_dim).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from asv.ecapa_tdnn import add_tdnn_layers, tdnn_embedding
from common.errors import InputError
from ssl_models import SSLEncoder, build_encoder

MIN_FRAMES = 2   # the attention's utterance standard deviation and the instance norm need two frames

# The encoder section's defaults. Frozen by default: training the head costs one encoder forward per batch and
# fits a CPU or a small GPU; `freeze: N` is the WavLM paper's two stages (head on the fixed encoder, then the
# whole model fine-tuned), `freeze: false` fine-tunes from the start. lr: the encoder's rate once fine-tuned.
ENCODER = dict(name="wavlm_base_plus", checkpoint=None, layer="weighted", freeze=True, lr=2e-5,
               grad_checkpointing=False, normalize=False, options={})
CONFIG = {
    "encoder": ENCODER,   # an ssl_models encoder section; keys left out take ENCODER's
    "C": 512,             # channels of the SE-Res2 blocks (UniSpeech's WavLM ECAPA-TDNN: 512)
    "embedding_dim": 256,  # UniSpeech's WavLM ECAPA-TDNN: 256
}


class SSLECAPA(nn.Module):
    """SSL-ECAPA (module docstring): wave (B, T) float32 at 16 kHz -> embedding (B, embedding_dim), not
    length-normalised. Inputs shorter than two encoder frames (720 samples) are repeat-padded (the encoder's rule),
    so `min_samples` is 1. Layer names: `encoder` (the `ssl_models.SSLEncoder`, its layer weights included), then
    ECAPA-TDNN's (`conv1` ... `bn6`). Every argument comes from `CONFIG` (`asv.build_model` passes it)."""
    min_samples = SSLEncoder.min_samples   # 1: the encoder repeat-pads shorter inputs to its receptive field

    def __init__(self, encoder: Mapping, C: int, embedding_dim: int):
        super().__init__()
        if not isinstance(encoder, Mapping):
            raise InputError(f"SSL-ECAPA: encoder must be a mapping of encoder keys, got {encoder!r}")
        if C % 8:
            raise InputError(f"SSL-ECAPA: C must be a multiple of the Res2 scale 8, got {C}")
        self.embedding_dim = embedding_dim
        self.encoder = build_encoder(**{**ENCODER, **encoder})
        add_tdnn_layers(self, self.encoder.embed_dim, C, embedding_dim)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(wave, min_frames=MIN_FRAMES)              # (B, frames, D)
        return tdnn_embedding(self, F.instance_norm(feats.transpose(1, 2)))
