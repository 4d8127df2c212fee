"""SSL-MHFA: multi-head factorised attentive pooling on every layer of a self-supervised encoder (Peng,
Plchot, Stafylakis, Mosner, Burget and Cernocky, "An attention-based backend allowing efficient fine-tuning of
transformer models for speaker verification", SLT 2022; code JunyiPeng00/SLT22_MultiHead-Factorized-Attentive-
Pooling, and BUTSpeechFIT/wespeaker_ssl_public).

A light head (1.25 M parameters on WavLM Base+ with the defaults) made for a frozen or lightly fine-tuned encoder:
- keys and values are two softmax-weighted sums of the encoder's layers 0..L (`weights_k`, `weights_v`, starting
  equal), each compressed by a linear layer to `compression_dim` (`cmp_linear_k`, `cmp_linear_v`);
- `heads` attention distributions over the frames come from the compressed keys (`att_head`, a softmax over time
  per head);
- each head averages the compressed values with its weights; the `heads` x `compression_dim` averages are
  concatenated and a linear layer (`pooling_fc`) gives the embedding.
Parameter names follow the paper's code; the encoder is `encoder` (torchaudio names inside).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from common.errors import InputError
from ssl_models import SSLEncoder, build_encoder, weighted_sum

# The encoder section's defaults: frozen (what the head is built for; `freeze: false` with lr 2e-5 is the paper's
# fine-tuning rate for the transformer, which it fine-tunes with the CNN kept fixed: here the CNN trains too).
# `layer` must stay `last`: the head weighs the layers itself, and the encoder's own layer choice is unused.
ENCODER = dict(name="wavlm_base_plus", checkpoint=None, layer="last", freeze=True, lr=2e-5,
               grad_checkpointing=False, normalize=False, options={})
CONFIG = {
    "encoder": ENCODER,      # an ssl_models encoder section; keys left out take ENCODER's
    "heads": 32,             # attention heads (the paper's code: 32; WeSpeaker's MHFA recipes: 64)
    "compression_dim": 128,  # width of the compressed keys and values
    "embedding_dim": 256,
}


class SSLMHFA(nn.Module):
    """SSL-MHFA (module docstring): wave (B, T) float32 at 16 kHz -> embedding (B, embedding_dim), not
    length-normalised. Inputs shorter than one encoder frame are repeat-padded (the encoder's rule), so
    `min_samples` is 1. Every argument comes from `CONFIG` (`asv.build_model` passes it)."""
    min_samples = SSLEncoder.min_samples   # 1: the encoder repeat-pads shorter inputs to its receptive field

    def __init__(self, encoder: Mapping, heads: int, compression_dim: int, embedding_dim: int):
        super().__init__()
        if not isinstance(encoder, Mapping):
            raise InputError(f"SSL-MHFA: encoder must be a mapping of encoder keys, got {encoder!r}")
        section = {**ENCODER, **encoder}
        if section["layer"] != "last":
            raise InputError(f"SSL-MHFA: encoder.layer is {section['layer']!r}, but the head weighs every layer "
                             f"itself (weights_k, weights_v): leave encoder.layer out")
        for key, value in (("heads", heads), ("compression_dim", compression_dim), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"SSL-MHFA: {key} must be a positive integer, got {value!r}")
        self.embedding_dim = embedding_dim
        self.encoder = build_encoder(**section)
        layers, dim = self.encoder.num_layers + 1, self.encoder.embed_dim
        self.weights_k = nn.Parameter(torch.zeros(layers))   # softmax weights: equal at the start
        self.weights_v = nn.Parameter(torch.zeros(layers))
        self.cmp_linear_k = nn.Linear(dim, compression_dim)
        self.cmp_linear_v = nn.Linear(dim, compression_dim)
        self.att_head = nn.Linear(compression_dim, heads)
        self.pooling_fc = nn.Linear(heads * compression_dim, embedding_dim)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        states = self.encoder.layer_outputs(wave)                     # layers 0..L, each (B, frames, D)
        k = self.cmp_linear_k(weighted_sum(self.weights_k, states))   # (B, frames, compression_dim)
        v = self.cmp_linear_v(weighted_sum(self.weights_v, states))
        attention = torch.softmax(self.att_head(k), dim=1)            # (B, frames, heads): over frames
        pooled = torch.einsum("bth,btc->bhc", attention, v)            # per-head weighted means of the values
        return self.pooling_fc(pooled.flatten(1))
