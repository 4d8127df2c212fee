"""AASIST and AASIST-L spoofing countermeasures (Jung et al., ICASSP 2022), tuned for CPU.

Parameter names follow clovaai/aasist, so the official checkpoints load strictly and reproduce the
official outputs. The computation is the official one, reorganised for speed (see docs/benchmarks.md):
- the sinc filter bank is built once, as a buffer, not rebuilt from numpy on every call;
- the encoder runs in channels-last layout, pools with reshape+amax instead of `max_pool2d`;
- in eval mode BatchNorm is folded into the preceding convolution and the expensive first encoder
  blocks run time tile by time tile (with exact halos and edge padding), so that their intermediate
  maps stay in cache instead of allocating ~0.5 GB feature maps per batch;
- the official encoder computes `selu(bn1(x))` in every residual block and then discards it (a known
  quirk); that dead computation is skipped, `bn1` is kept only so that the checkpoints load.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cm import fast_conv

CONFIGS: dict[str, dict] = {
    "AASIST": dict(first_conv=128, filts=[70, [1, 32], [32, 32], [32, 64], [64, 64]], gat_dims=[64, 32],
                   pool_ratios=[0.5, 0.7, 0.5, 0.5], temperatures=[2.0, 2.0, 100.0, 100.0]),
    "AASIST-L": dict(first_conv=128, filts=[70, [1, 32], [32, 32], [32, 24], [24, 24]], gat_dims=[24, 32],
                     pool_ratios=[0.4, 0.5, 0.7, 0.5], temperatures=[2.0, 2.0, 100.0, 100.0]),
}

CL = torch.channels_last


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
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        ideal = 2 * hi / sample_rate * np.sinc(2 * hi * t / sample_rate) - 2 * lo / sample_rate * np.sinc(2 * lo * t / sample_rate)
        bank[i] = window * torch.as_tensor(ideal, dtype=torch.float32)
    return bank


class SincConv(nn.Module):
    """Fixed (non-learnt) sinc band-pass front end; optional random frequency masking for training."""

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = 16000, max_mask: int = 20):
        super().__init__()
        self.kernel_size = kernel_size + 1 - kernel_size % 2  # odd, symmetric filters
        self.max_mask = max_mask
        self.register_buffer("band_pass", sinc_filter_bank(out_channels, self.kernel_size, sample_rate), persistent=False)

    def filters(self, mask: bool) -> torch.Tensor:
        """(C, 1, K) filters; with `mask`, zeroes a random band of 0..max_mask-1 adjacent filters (official Freq_aug)."""
        bank = self.band_pass
        if mask:
            width = int(torch.randint(0, self.max_mask, ()))
            start = int(torch.randint(0, bank.shape[0] - width + 1, ()))
            bank = bank.clone()
            bank[start:start + width] = 0
        return bank.unsqueeze(1)

    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        return F.conv1d(x.unsqueeze(1), self.filters(mask))


def _pool_time3(x: torch.Tensor) -> torch.Tensor:
    """max_pool2d(x, (1, 3)); without autograd, for a channels-last map, a reshape and amax over contiguous
    memory (faster forward; amax's backward is slow, so training keeps max_pool2d)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, (1, 3))
    b, c, h, w = x.shape
    w3 = w // 3
    y = x.permute(0, 2, 3, 1)[:, :, : 3 * w3].reshape(b, h, w3, 3, c).amax(3)
    return y.permute(0, 3, 1, 2)


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: tuple[int, int],
          fast_backward: bool = True) -> torch.Tensor:
    """conv2d returning a channels-last map. In training, `fast_conv.conv2d` (same values, a faster backward
    than oneDNN's for these shapes; docs/benchmarks.md) unless `fast_backward` is off. Without autograd a single input
    channel goes through one matmul over gathered patches: oneDNN has no fast kernel for it and would also
    return NCHW."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        if fast_backward:
            return fast_conv.conv2d(x, weight, bias, padding)
        return F.conv2d(x, weight, bias, padding=padding).contiguous(memory_format=CL)
    if weight.shape[1] != 1:
        return F.conv2d(x, weight, bias, padding=padding)
    return fast_conv.single_channel_conv(fast_conv.patches(x, weight.shape[2:], padding), weight, bias)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of conv followed by eval-mode BatchNorm, as one convolution."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return conv.weight * scale.view(-1, 1, 1, 1), (conv.bias - bn.running_mean) * scale + bn.bias


class ResidualBlock(nn.Module):
    """conv(2x3) -> BN -> SELU -> conv(2x3), plus a (1x3) conv shortcut when the width changes; max-pool 1x3 over time."""

    def __init__(self, nb_filts: list[int], first: bool = False, fast_backward: bool = True):
        super().__init__()
        c_in, c_out = nb_filts
        self.fast_backward = fast_backward
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)  # unused by the official forward; kept for the checkpoint keys
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = c_in != c_out
        if self.downsample:
            self.conv_downsample = nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole map, channels-last (training, or eval of the small late blocks)."""
        fast = self.fast_backward
        if self.training:
            out = F.selu_(self.bn2(_conv(x, self.conv1.weight, self.conv1.bias, (1, 1), fast)))
        else:
            out = F.selu_(_conv(x, *_fold_bn(self.conv1, self.bn2), (1, 1), fast))
        identity = _conv(x, self.conv_downsample.weight, self.conv_downsample.bias, (0, 1), fast) if self.downsample else x
        out = _conv(out, self.conv2.weight, self.conv2.bias, (0, 1), fast).add_(identity)
        return _pool_time3(out)

    def forward_tile(self, x: torch.Tensor, start: int, width: int, w1: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
        """Eval on a time slice. `x` holds input frames [start, start + n) with zeros where outside [0, width);
        returns output frames [(start + 2) / 3, (start + n - 2) / 3). The caller folds bn2 into (w1, b1)."""
        out = F.selu_(_conv(x, w1, b1, (1, 0)))  # frames [start + 1, start + n - 1)
        n = out.shape[-1]
        lo, hi = max(0, -(start + 1)), min(n, width - (start + 1))
        if lo > 0 or hi < n:  # the official conv2 zero-pads conv1's output, not conv1's input
            out[..., :lo] = 0
            out[..., hi:] = 0
        out = F.conv2d(out, self.conv2.weight, self.conv2.bias)  # frames [start + 2, start + n - 2)
        identity = _conv(x[..., 1:-1], self.conv_downsample.weight, self.conv_downsample.bias, (0, 0)) if self.downsample else x[..., 2:-2]
        return _pool_time3(out.add_(identity))


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

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, master: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


class GraphPool(nn.Module):
    """Keeps the top-k fraction of nodes by a learnt sigmoid score, scaling each kept node by its score."""

    def __init__(self, k: float, in_dim: int, p: float):
        super().__init__()
        self.k = k
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p) if p > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))
        n = max(int(h.shape[1] * self.k), 1)
        idx = torch.topk(scores, n, dim=1).indices
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[2]))


class AASIST(nn.Module):
    """AASIST: raw waveform (B, T) -> (embedding (B, 5 * gat_dims[1]), logits (B, 2)); logits[:, 1] is bona fide.

    `freq_aug` enables the official random filter-band masking in training mode. `tile_frames` is the
    time tile (in first-encoder-block frames) of the cache-friendly path used in eval mode without autograd
    (under `torch.inference_mode()` / `no_grad()`); 0 disables tiling. `fast_backward=False` trains the
    encoder convolutions through plain `F.conv2d` autograd instead of `fast_conv` (same gradients, slower).
    """

    def __init__(self, first_conv: int = 128, filts: list = CONFIGS["AASIST"]["filts"],
                 gat_dims: list = CONFIGS["AASIST"]["gat_dims"], pool_ratios: list = CONFIGS["AASIST"]["pool_ratios"],
                 temperatures: list = CONFIGS["AASIST"]["temperatures"], freq_aug: bool = False,
                 sample_rate: int = 16000, tile_frames: int = 1024, tiled_blocks: int = 3, fast_backward: bool = True):
        super().__init__()
        self.freq_aug = freq_aug
        self.tile_frames = tile_frames
        self.tiled_blocks = tiled_blocks
        self.conv_time = SincConv(filts[0], first_conv, sample_rate)
        self.first_bn = nn.BatchNorm2d(1)
        widths = [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
        self.encoder = nn.Sequential(*[nn.Sequential(ResidualBlock(w, first=i == 0, fast_backward=fast_backward)) for i, w in enumerate(widths)])
        self.n_spec = filts[0] // 3  # spectral nodes after the first 3x3 pooling
        c = filts[-1][-1]
        self.pos_S = nn.Parameter(torch.randn(1, self.n_spec, c))
        self.master1 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.master2 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.GAT_layer_S = GraphAttention(c, gat_dims[0], temperatures[0])
        self.GAT_layer_T = GraphAttention(c, gat_dims[0], temperatures[1])
        self.HtrgGAT_layer_ST11 = HtrgGraphAttention(gat_dims[0], gat_dims[1], temperatures[2])
        self.HtrgGAT_layer_ST12 = HtrgGraphAttention(gat_dims[1], gat_dims[1], temperatures[2])
        self.HtrgGAT_layer_ST21 = HtrgGraphAttention(gat_dims[0], gat_dims[1], temperatures[2])
        self.HtrgGAT_layer_ST22 = HtrgGraphAttention(gat_dims[1], gat_dims[1], temperatures[2])
        self.pool_S = GraphPool(pool_ratios[0], gat_dims[0], 0.3)
        self.pool_T = GraphPool(pool_ratios[1], gat_dims[0], 0.3)
        self.pool_hS1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hS2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.out_layer = nn.Linear(5 * gat_dims[1], 2)
        self.embedding_dim = 5 * gat_dims[1]

    # ---- front end: sinc filters, |.|, 3x3 max-pool, BN, SELU -> (B, 1, n_spec, frames)
    def _front(self, wave: torch.Tensor, mask: bool = False) -> torch.Tensor:
        y = self.conv_time(wave, mask)[:, : 3 * self.n_spec]  # the 3x3 pool drops filters beyond 3 * n_spec
        b, c, t = y.shape
        y = y[..., : t - t % 3]
        y = (y.abs() if y.requires_grad else y.abs_()).view(b, self.n_spec, 3, t // 3, 3).amax((2, 4)).unsqueeze(1)
        if self.training:
            return F.selu(self.first_bn(y))
        bn = self.first_bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return F.selu_(y.mul_(scale).add_(bn.bias - bn.running_mean * scale))

    @property
    def min_samples(self) -> int:
        """Shortest input: the sinc filter's length plus one frame through the encoder's time poolings."""
        return self.conv_time.kernel_size - 1 + 3 * 3 ** len(self.encoder)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform -> encoder map (B, C, n_spec, frames), channels-last."""
        if wave.dim() != 2:
            raise ValueError(f"AASIST expects a (batch, samples) waveform, got shape {tuple(wave.shape)}")
        if wave.shape[1] < self.min_samples:
            raise ValueError(f"AASIST needs at least {self.min_samples} samples per input, got {wave.shape[1]}")
        # tiling (eval, no autograd: its in-place edge zeroing is not differentiable)
        n_tiled = self.tiled_blocks if (not self.training and self.tile_frames > 0 and not torch.is_grad_enabled()) else 0
        if n_tiled:
            e = self._encode_tiled(wave.contiguous(), n_tiled)
        else:
            e = self._front(wave, mask=self.training and self.freq_aug).contiguous(memory_format=CL)
        for block in list(self.encoder)[n_tiled:]:
            e = block(e)
        return e

    def _encode_tiled(self, wave: torch.Tensor, n_tiled: int) -> torch.Tensor:
        """Eval: the first `n_tiled` blocks, tile by time tile; bit-for-bit the same maps as the whole-map path up to rounding."""
        blocks = [seq[0] for seq in list(self.encoder)[:n_tiled]]
        folded = [_fold_bn(b.conv1, b.bn2) for b in blocks]
        k = self.conv_time.kernel_size
        widths = [(wave.shape[1] - k + 1) // 3]  # frames at each level: front end, then each block
        for _ in blocks:
            widths.append(widths[-1] // 3)

        def level(i: int, a: int, b: int) -> torch.Tensor:
            """Frames [a, b) of level i (0 = front end), zero frames outside [0, widths[i])."""
            lo, hi = max(a, 0), min(b, widths[i])
            if i == 0:
                y = self._front(wave[:, 3 * lo: 3 * hi + k - 1])
            else:
                y = blocks[i - 1].forward_tile(level(i - 1, 3 * lo - 2, 3 * hi + 2), 3 * lo - 2, widths[i - 1], *folded[i - 1])
            if lo > a or hi < b:
                y = F.pad(y, (lo - a, b - hi))
            return y.contiguous(memory_format=CL)

        step = max(1, self.tile_frames // 3 ** n_tiled)
        top = widths[n_tiled]
        return torch.cat([level(n_tiled, a, min(a + step, top)) for a in range(0, top, step)], dim=3).contiguous(memory_format=CL)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encode(wave)
        b = e.shape[0]
        e_abs = e.abs()
        e_S = e_abs.amax(3).transpose(1, 2) + self.pos_S  # spectral nodes: max over time
        e_T = e_abs.amax(2).transpose(1, 2)  # temporal nodes: max over frequency
        out_S = self.pool_S(self.GAT_layer_S(e_S))
        out_T = self.pool_T(self.GAT_layer_T(e_T))

        branches = []
        for first, second, pool_S, pool_T, master in (
                (self.HtrgGAT_layer_ST11, self.HtrgGAT_layer_ST12, self.pool_hS1, self.pool_hT1, self.master1),
                (self.HtrgGAT_layer_ST21, self.HtrgGAT_layer_ST22, self.pool_hS2, self.pool_hT2, self.master2)):
            t, s, m = first(out_T, out_S, master.expand(b, -1, -1))
            s, t = pool_S(s), pool_T(t)
            t_aug, s_aug, m_aug = second(t, s, m)
            branches.append([F.dropout(v, 0.2, self.training) for v in (t + t_aug, s + s_aug, m + m_aug)])
        (t1, s1, m1), (t2, s2, m2) = branches
        t, s, m = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
        hidden = torch.cat([t.abs().amax(1), t.mean(1), s.abs().amax(1), s.mean(1), m.squeeze(1)], dim=1)
        hidden = F.dropout(hidden, 0.5, self.training)
        return hidden, self.logits_from_embedding(hidden)

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 2 logits of an embedding `forward` returned: lets cached embeddings give both logits."""
        return self.out_layer(embedding)
