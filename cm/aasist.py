"""AASIST and AASIST-L spoofing countermeasures (Jung et al., "AASIST: Audio anti-spoofing using integrated
spectro-temporal graph attention networks", ICASSP 2022; clovaai/aasist).

Raw waveform -> fixed sinc filter bank -> a 2-D residual encoder over (filter, frame) -> graph attention over
spectral and temporal nodes, then a heterogeneous graph with a master node in two branches -> 2 logits.
Parameter names follow clovaai/aasist, so the official checkpoints load strictly and reproduce the official
outputs. The computation is the official one; how it runs fast on a CPU (channels-last maps, folded
BatchNorm, time-tiled evaluation, a faster convolution backward) lives in `cm.aasist_speed`. One known quirk
of the official encoder is left out: every residual block computes `selu(bn1(x))` and then discards it; that
dead computation is skipped, `bn1` is kept only so that the checkpoints load.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cm import aasist_speed as speed

# How the model runs, not what it computes (the same for both architectures): `freq_aug` is the official
# random filter-band masking in training; `tile_frames` the time tile (in first-block frames) of the eval path
# without autograd, 0 = no tiling, over the first `tiled_blocks` encoder blocks; `fast_backward=False` trains
# the encoder convolutions through plain `F.conv2d` autograd instead of `cm.fast_conv` (same gradients, slower).
_RUNTIME = dict(freq_aug=False, sample_rate=16000, tile_frames=1024, tiled_blocks=3, fast_backward=True)
# Every constructor argument of each architecture, as in the official AASIST.conf / AASIST-L.conf.
CONFIGS: dict[str, dict] = {
    "AASIST": dict(first_conv=128, filts=[70, [1, 32], [32, 32], [32, 64], [64, 64]], gat_dims=[64, 32],
                   pool_ratios=[0.5, 0.7, 0.5, 0.5], temperatures=[2.0, 2.0, 100.0, 100.0], **_RUNTIME),
    "AASIST-L": dict(first_conv=128, filts=[70, [1, 32], [32, 32], [32, 24], [24, 24]], gat_dims=[24, 32],
                     pool_ratios=[0.4, 0.5, 0.7, 0.5], temperatures=[2.0, 2.0, 100.0, 100.0], **_RUNTIME),
}


def sinc_filter_bank(out_channels: int, kernel_size: int, sample_rate: int = 16000) -> torch.Tensor:
    """Hamming-windowed band-pass filters with mel-spaced edges, exactly as the official `CONV` builds them."""
    to_mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    f = int(sample_rate / 2) * np.linspace(0, 1, 257)
    edges_mel = np.linspace(to_mel(f).min(), to_mel(f).max(), out_channels + 1)
    edges = 700 * (10 ** (edges_mel / 2595) - 1)
    # same dtypes as the official code (float32 support, numpy sinc), so the bank matches it bit for bit
    t = torch.arange(-(kernel_size - 1) / 2, (kernel_size - 1) / 2 + 1)
    window = torch.from_numpy(np.hamming(kernel_size)).float()
    bank = torch.zeros(out_channels, kernel_size)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        ideal = (2 * hi / sample_rate * np.sinc(2 * hi * t / sample_rate)
                 - 2 * lo / sample_rate * np.sinc(2 * lo * t / sample_rate))
        bank[i] = window * torch.as_tensor(ideal, dtype=torch.float32)
    return bank


class SincConv(nn.Module):
    """Fixed (non-learnt) sinc band-pass front end; optional random frequency masking for training."""

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = 16000, max_mask: int = 20):
        super().__init__()
        self.kernel_size = kernel_size + 1 - kernel_size % 2  # odd, symmetric filters
        self.max_mask = max_mask
        self.register_buffer("band_pass", sinc_filter_bank(out_channels, self.kernel_size, sample_rate),
                             persistent=False)

    def filters(self, mask: bool) -> torch.Tensor:
        """(C, 1, K) filters; with `mask`, zeroes a random band of 0..max_mask-1 adjacent filters
        (official Freq_aug)."""
        bank = self.band_pass
        if mask:
            width = int(torch.randint(0, self.max_mask, ()))
            start = int(torch.randint(0, bank.shape[0] - width + 1, ()))
            bank = bank.clone()
            bank[start:start + width] = 0
        return bank.unsqueeze(1)

    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        return F.conv1d(x.unsqueeze(1), self.filters(mask))


class ResidualBlock(nn.Module):
    """conv(2x3) -> BN -> SELU -> conv(2x3), plus a (1x3) conv shortcut when the width changes; max-pool 1x3 over time
    (`pool=False`: none, as SSL-AASIST's encoder on 50 Hz SSL frames). Maps are channels-last (see cm.aasist_speed)."""

    def __init__(self, nb_filts: list[int], first: bool, fast_backward: bool, pool: bool = True):
        super().__init__()
        c_in, c_out = nb_filts
        self.fast_backward = fast_backward
        self.pool = pool
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)  # unused by the official forward; kept for the checkpoint keys
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = c_in != c_out
        if self.downsample:
            self.conv_downsample = nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = self.fast_backward
        out = speed.conv_bn(x, self.conv1, self.bn2, (1, 1), self.training, fast)
        # in place saves a copy, but out of training `out` is a custom Function's output, which autograd may not
        # see modified in place: gradients in eval mode (frozen BatchNorm statistics) need the out-of-place form
        out = F.selu(out) if out.requires_grad and not self.training else speed.selu_(out)
        out = speed.conv(out, self.conv2.weight, self.conv2.bias, (0, 1), fast)
        identity = (speed.conv(x, self.conv_downsample.weight, self.conv_downsample.bias, (0, 1), fast)
                    if self.downsample else x)
        out = out.add_(identity)
        return speed.pool_time3(out) if self.pool else out


class GraphAttention(nn.Module):
    """Graph attention over fully connected nodes: attention from pairwise node products, as in the official code."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0):
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(0.2)
        self.temp = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_drop(x)
        scores = torch.tanh(self.att_proj(x.unsqueeze(2) * x.unsqueeze(1))) @ self.att_weight  # (B, N, N, 1)
        att = torch.softmax(scores.squeeze(-1) / self.temp, dim=2)
        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return F.selu(self.bn(x.flatten(0, 1)).view_as(x))


class HtrgGraphAttention(nn.Module):
    """Heterogeneous graph attention over two node types (temporal, spectral) plus a master node."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0):
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        for name in ("att_weight11", "att_weight22", "att_weight12", "att_weightM"):
            setattr(self, name, nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1))))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(0.2)
        self.temp = temperature

    def forward(self, x1: torch.Tensor, x2: torch.Tensor,
                master: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n1, n2 = x1.shape[1], x2.shape[1]
        x = self.input_drop(torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1))
        # node-pair scores with one attention vector per type pair (11, 22, and 12 for both cross directions)
        pair = torch.tanh(self.att_proj(x.unsqueeze(2) * x.unsqueeze(1)))
        scores = pair @ torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)  # (B, N, N, 3)
        kind = torch.full((n1 + n2, n1 + n2), 2, dtype=torch.long, device=x.device)
        kind[:n1, :n1], kind[n1:, n1:] = 0, 1
        scores = scores.gather(3, kind.expand(x.shape[0], -1, -1).unsqueeze(-1)).squeeze(-1)
        att = torch.softmax(scores / self.temp, dim=2)
        # master node: attends over all nodes
        att_m = torch.softmax((torch.tanh(self.att_projM(x * master)) @ self.att_weightM) / self.temp, dim=1)
        master = self.proj_with_attM(att_m.transpose(1, 2) @ x) + self.proj_without_attM(master)
        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        x = F.selu(self.bn(x.flatten(0, 1)).view_as(x))
        return x[:, :n1], x[:, n1:], master


def kept_nodes(n: int, ratio: float) -> int:
    """max(int(n * ratio), 1), the official count, in float64 (90 * 0.7 = 62.99999999999999: 62 nodes). Under
    torch.export the graph computes it from its dynamic node count, in float64 too: a symbolic size times a float
    would be exported as a float32 product, which rounds 90 * 0.7 up to 63 (runtime/onnx_export.py)."""
    if not torch.compiler.is_exporting():
        return max(int(n * ratio), 1)
    product = torch.scalar_tensor(n, dtype=torch.float64) * torch.tensor(ratio, dtype=torch.float64)  # not float32
    count = product.long().clamp(min=1).item()
    torch._check(count >= 1)
    torch._check(count <= n)
    return count


class GraphPool(nn.Module):
    """Keeps the top-k fraction of nodes by a learnt sigmoid score, scaling each kept node by its score."""

    def __init__(self, k: float, in_dim: int, p: float):
        super().__init__()
        self.k = k
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p) if p > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))
        n = kept_nodes(h.shape[1], self.k)
        idx = torch.topk(scores, n, dim=1).indices
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[2]))


def add_graph(m: nn.Module, channels: int, gat_dims: list, pool_ratios: list, temperatures: list) -> None:
    """Registers AASIST's graph back-end on `m` under the official names (master nodes, spectral and temporal graph
    attention, the two heterogeneous branches, graph pooling, output layer) and sets `m.embedding_dim`; shared by
    AASIST and SSL-AASIST, whose node features (`channels` wide) come from different encoders."""
    m.master1 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
    m.master2 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
    m.GAT_layer_S = GraphAttention(channels, gat_dims[0], temperatures[0])
    m.GAT_layer_T = GraphAttention(channels, gat_dims[0], temperatures[1])
    m.HtrgGAT_layer_ST11 = HtrgGraphAttention(gat_dims[0], gat_dims[1], temperatures[2])
    m.HtrgGAT_layer_ST12 = HtrgGraphAttention(gat_dims[1], gat_dims[1], temperatures[2])
    m.HtrgGAT_layer_ST21 = HtrgGraphAttention(gat_dims[0], gat_dims[1], temperatures[2])
    m.HtrgGAT_layer_ST22 = HtrgGraphAttention(gat_dims[1], gat_dims[1], temperatures[2])
    m.pool_S = GraphPool(pool_ratios[0], gat_dims[0], 0.3)
    m.pool_T = GraphPool(pool_ratios[1], gat_dims[0], 0.3)
    m.pool_hS1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
    m.pool_hT1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
    m.pool_hS2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
    m.pool_hT2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
    m.out_layer = nn.Linear(5 * gat_dims[1], 2)
    m.embedding_dim = 5 * gat_dims[1]


def graph_embedding(m: nn.Module, e_S: torch.Tensor, e_T: torch.Tensor) -> torch.Tensor:
    """The graph back-end `add_graph` registered on `m`: spectral nodes e_S (B, N_S, C) and temporal nodes e_T
    (B, N_T, C) -> the readout embedding (B, 5 * gat_dims[1]), with the official dropouts in training."""
    b = e_S.shape[0]
    out_S = m.pool_S(m.GAT_layer_S(e_S))
    out_T = m.pool_T(m.GAT_layer_T(e_T))
    branches = []
    for first, second, pool_S, pool_T, master in (
            (m.HtrgGAT_layer_ST11, m.HtrgGAT_layer_ST12, m.pool_hS1, m.pool_hT1, m.master1),
            (m.HtrgGAT_layer_ST21, m.HtrgGAT_layer_ST22, m.pool_hS2, m.pool_hT2, m.master2)):
        t, s, mm = first(out_T, out_S, master.expand(b, -1, -1))
        s, t = pool_S(s), pool_T(t)
        t_aug, s_aug, m_aug = second(t, s, mm)
        branches.append([F.dropout(v, 0.2, m.training) for v in (t + t_aug, s + s_aug, mm + m_aug)])
    (t1, s1, m1), (t2, s2, m2) = branches
    t, s, mm = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
    hidden = torch.cat([t.abs().amax(1), t.mean(1), s.abs().amax(1), s.mean(1), mm.squeeze(1)], dim=1)
    return F.dropout(hidden, 0.5, m.training)


class AASIST(nn.Module):
    """AASIST: raw waveform (B, T) -> (embedding (B, 5 * gat_dims[1]), logits (B, 2)); logits[:, 1] is bona fide.

    Every argument comes from a `CONFIGS` entry (`cm.build_model` passes it; options override it).
    """

    def __init__(self, first_conv: int, filts: list, gat_dims: list, pool_ratios: list, temperatures: list,
                 freq_aug: bool, sample_rate: int, tile_frames: int, tiled_blocks: int, fast_backward: bool):
        super().__init__()
        self.freq_aug = freq_aug
        self.tile_frames = tile_frames
        self.tiled_blocks = tiled_blocks
        self.conv_time = SincConv(filts[0], first_conv, sample_rate)
        self.first_bn = nn.BatchNorm2d(1)
        widths = [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
        self.encoder = nn.Sequential(*[nn.Sequential(ResidualBlock(w, first=i == 0, fast_backward=fast_backward))
                                       for i, w in enumerate(widths)])
        self.n_spec = filts[0] // 3  # spectral nodes after the first 3x3 pooling
        c = filts[-1][-1]
        self.pos_S = nn.Parameter(torch.randn(1, self.n_spec, c))
        add_graph(self, c, gat_dims, pool_ratios, temperatures)

    def front_end(self, wave: torch.Tensor, mask: bool = False) -> torch.Tensor:
        """Sinc filters, |.|, 3x3 max-pool, BN, SELU -> (B, 1, n_spec, frames)."""
        y = speed.abs_pool3x3(self.conv_time(wave, mask), self.n_spec)
        if self.training or y.requires_grad:   # in place only where autograd keeps nothing (inference)
            return F.selu(self.first_bn(y))
        return speed.selu_(speed.batchnorm_(y, self.first_bn))

    @property
    def min_samples(self) -> int:
        """Shortest input: the sinc filter's length plus one frame through the encoder's time poolings."""
        return self.conv_time.kernel_size - 1 + 3 * 3 ** len(self.encoder)

    def for_export(self) -> "AASIST":
        """A copy for the ONNX exporter: the same math without time tiling (`encode_tiled` loops over tiles in
        Python, which would fix the traced length in the graph)."""
        model = copy.deepcopy(self)
        model.tile_frames = 0
        return model

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform -> encoder map (B, C, n_spec, frames), channels-last."""
        if wave.dim() != 2:
            raise ValueError(f"AASIST expects a (batch, samples) waveform, got shape {tuple(wave.shape)}")
        if wave.shape[1] < self.min_samples:
            raise ValueError(f"AASIST needs at least {self.min_samples} samples per input, got {wave.shape[1]}")
        n_tiled = speed.blocks_to_tile(self)
        if n_tiled:
            e = speed.encode_tiled(self, wave.contiguous(), n_tiled)
        else:
            e = self.front_end(wave, mask=self.training and self.freq_aug).contiguous(memory_format=speed.CL)
        for block in list(self.encoder)[n_tiled:]:
            e = block(e)
        return e

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e_abs = self.encode(wave).abs()
        e_S = e_abs.amax(3).transpose(1, 2) + self.pos_S  # spectral nodes: max over time
        e_T = e_abs.amax(2).transpose(1, 2)  # temporal nodes: max over frequency
        hidden = graph_embedding(self, e_S, e_T)
        return hidden, self.logits_from_embedding(hidden)

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 2 logits of an embedding `forward` returned: lets cached embeddings give both logits."""
        return self.out_layer(embedding)
