"""SSL-AASIST (Tak, Todisco, Wang, Jung, Yamagishi and Evans, "Automatic speaker verification spoofing and deepfake
detection using wav2vec 2.0 and data augmentation", Odyssey 2022; TakHemlata/SSL_Anti-spoofing `model.py`).

A self-supervised encoder (XLS-R 300M in the paper, fine-tuned with the rest) replaces AASIST's sinc front-end:
its 1024-d frames are projected to 128 and seen as a (128, frames) map, which AASIST's graph back-end classifies.
The layers are `cm.aasist`'s (residual blocks, graph attention, heterogeneous graph, graph pooling, readout);
what differs from AASIST is the paper's:
- the map is max-pooled 3x3, BatchNorm + SELU, then the six residual blocks run without time pooling (the
  frames are already 50 per second), followed by BatchNorm + SELU;
- spectral and temporal nodes come from attentive pooling (1x1 convolutions, softmax over time for the spectral
  nodes and over the projection axis for the temporal ones) instead of AASIST's max of |.|;
- graph pooling keeps half of the nodes at every stage (pool ratios 0.5).
Parameter names follow the paper's code (`LL`, `first_bn`, `first_bn1`, `attention`, then AASIST's), the encoder
being `ssl_model.model` (torchaudio names there, the paper's code has fairseq's).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from cm import aasist_speed as speed
from cm.aasist import ResidualBlock, add_graph, graph_embedding
from common.errors import InputError
from ssl_models import SSLEncoder, build_encoder

ATTENTION_CHANNELS = 128   # hidden width of the node-attention 1x1 convolutions (fixed in the paper's code)
MIN_FRAMES = 3             # the first 3x3 max-pool needs three encoder frames

# The encoder section: the paper fine-tunes all of XLS-R 300M (fairseq xlsr2_300m.pt) on its last layer at lr 1e-6.
ENCODER = dict(name="wav2vec2_xlsr_300m", checkpoint=None, layer="last", freeze=False, lr=1e-6,
               grad_checkpointing=False, normalize=False, options={})
CONFIGS: dict[str, dict] = {
    # filts[0]: the projection width (128 in the paper), then the residual blocks' (in, out) channels
    "SSL-AASIST": dict(encoder=ENCODER, filts=[128, [1, 32], [32, 32], [32, 64], [64, 64]], gat_dims=[64, 32],
                       pool_ratios=[0.5, 0.5, 0.5, 0.5], temperatures=[2.0, 2.0, 100.0, 100.0], fast_backward=True),
}


class SSLAASIST(nn.Module):
    """SSL-AASIST: raw waveform (B, T) -> (embedding (B, 5 * gat_dims[1]), logits (B, 2)); logits[:, 1] is bona fide.

    `encoder` is an encoder section (`ssl_models.CONFIG` keys) whose missing keys take the paper's (`ENCODER`);
    the other arguments come from `CONFIGS` (`cm.build_model` passes them; options override them).
    Inputs shorter than three encoder frames (1040 samples) are repeat-padded by the encoder's rule.
    """
    min_samples = SSLEncoder.min_samples   # 1: the encoder repeat-pads shorter inputs to three frames

    def __init__(self, encoder: Mapping, filts: list, gat_dims: list, pool_ratios: list, temperatures: list,
                 fast_backward: bool):
        super().__init__()
        if not isinstance(encoder, Mapping):
            raise InputError(f"SSL-AASIST: encoder must be a mapping of encoder keys, got {encoder!r}")
        if filts[0] < 3:
            raise InputError(f"SSL-AASIST: filts[0] (the projection width) must be at least 3, got {filts[0]}")
        self.ssl_model = build_encoder(**{**ENCODER, **encoder})
        self.LL = nn.Linear(self.ssl_model.embed_dim, filts[0])
        self.first_bn = nn.BatchNorm2d(1)
        c = filts[-1][-1]
        self.first_bn1 = nn.BatchNorm2d(c)
        widths = [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
        self.encoder = nn.Sequential(*[
            nn.Sequential(ResidualBlock(w, first=i == 0, fast_backward=fast_backward, pool=False))
            for i, w in enumerate(widths)])
        self.attention = nn.Sequential(nn.Conv2d(c, ATTENTION_CHANNELS, kernel_size=(1, 1)), nn.SELU(),
                                       nn.BatchNorm2d(ATTENTION_CHANNELS),
                                       nn.Conv2d(ATTENTION_CHANNELS, c, kernel_size=(1, 1)))
        self.n_spec = filts[0] // 3   # spectral nodes after the 3x3 max-pool
        self.pos_S = nn.Parameter(torch.randn(1, self.n_spec, c))
        add_graph(self, c, gat_dims, pool_ratios, temperatures)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform -> the residual encoder's map (B, C, n_spec, frames // 3) after BatchNorm + SELU."""
        feats = self.ssl_model(wave, min_frames=MIN_FRAMES)             # (B, frames, D)
        x = self.LL(feats).transpose(1, 2).unsqueeze(1)                  # (B, 1, filts[0], frames)
        x = F.selu(self.first_bn(F.max_pool2d(x, (3, 3))))
        x = self.encoder(x.contiguous(memory_format=speed.CL))
        return F.selu(self.first_bn1(x))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encode(wave)
        w = self.attention(x)
        e_S = (x * torch.softmax(w, dim=-1)).sum(-1).transpose(1, 2) + self.pos_S   # spectral nodes: over time
        e_T = (x * torch.softmax(w, dim=-2)).sum(-2).transpose(1, 2)                # temporal nodes: over features
        hidden = graph_embedding(self, e_S, e_T)
        return hidden, self.logits_from_embedding(hidden)

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 2 logits of an embedding `forward` returned: lets cached embeddings give both logits."""
        return self.out_layer(embedding)
