"""How `cm.aasist` runs fast on a CPU: the official AASIST function, computed differently.

`cm/aasist.py` keeps the official structure and calls these where the official code calls a plain op
(measurements in docs/benchmarks.md). All of them give the official values up to float rounding:
- `conv`: convolutions return channels-last maps; in training they go through `cm.fast_conv.conv2d` (a faster
  backward), without autograd a single input channel is one matmul over gathered patches (and the bias);
- `conv_bn`, `batchnorm_`: in eval mode BatchNorm is folded into the preceding convolution, or applied in
  place as one multiply-add;
- `abs_pool3x3`, `pool_time3`: max-pools without autograd as maxima of strided slices, or reshape + amax over
  contiguous memory;
- `encode_tiled`: in eval without autograd the expensive first encoder blocks run time tile by time tile,
  with exact halos and the official zero padding at both ends, so that their intermediate maps stay in
  cache instead of allocating ~0.5 GB feature maps per batch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cm import fast_conv

if TYPE_CHECKING:
    from cm.aasist import AASIST, ResidualBlock

CL = torch.channels_last


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: tuple[int, int],
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
    return fast_conv.single_channel_conv_inference(x, weight, bias, padding)


def fold_bn(conv_layer: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of conv followed by eval-mode BatchNorm, as one convolution."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return conv_layer.weight * scale.view(-1, 1, 1, 1), (conv_layer.bias - bn.running_mean) * scale + bn.bias


def conv_bn(x: torch.Tensor, conv_layer: nn.Conv2d, bn: nn.BatchNorm2d, padding: tuple[int, int], training: bool,
            fast_backward: bool = True) -> torch.Tensor:
    """`bn(conv_layer(x))` as a channels-last map; out of training, one convolution with BatchNorm folded in."""
    if training:
        return bn(conv(x, conv_layer.weight, conv_layer.bias, padding, fast_backward))
    return conv(x, *fold_bn(conv_layer, bn), padding, fast_backward)


def batchnorm_(y: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode `bn(y)`, computed in place as one multiply-add."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return y.mul_(scale).add_(bn.bias - bn.running_mean * scale)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946  # torch's selu
SELU_CHUNK = 1 << 18  # elements a step: the chunk and its exp stay in a core's L2 cache


def selu_(y: torch.Tensor) -> torch.Tensor:
    """`F.selu_(y)` without autograd, as scale * (max(y, 0) + alpha * (exp(min(y, 0)) - 1)) a cache-sized chunk
    at a time. ATen's elu kernel computes expm1 for every element at a tenth of exp's speed, which made SELU a
    sixth of AASIST's inference time (docs/benchmarks.md). exp(y) - 1 differs from expm1(y) by float rounding
    (below 2e-7 in absolute value). With autograd, off the CPU (a GPU's elu kernel is fast, and each chunk would
    be five kernel launches), for a tensor that is not one dense block, and under torch.export (whose graph cannot
    hold a loop over a dynamic length), F.selu_."""
    if (y.requires_grad or y.device.type != "cpu" or torch.compiler.is_exporting()
            or not (y.is_contiguous() or y.is_contiguous(memory_format=CL))):
        return F.selu_(y)
    flat = (y if y.is_contiguous() else y.permute(0, 2, 3, 1)).view(-1)  # memory order: a view
    scratch = torch.empty(min(SELU_CHUNK, flat.numel()), dtype=y.dtype, device=y.device)
    for part in flat.split(SELU_CHUNK):
        e = torch.clamp(part, max=0, out=scratch[: part.numel()]).exp_().sub_(1)
        part.clamp_(min=0).add_(e, alpha=SELU_ALPHA).mul_(SELU_SCALE)
    return y


def abs_pool3x3(y: torch.Tensor, rows: int) -> torch.Tensor:
    """`max_pool2d(|y|, (3, 3))` of a filter-bank output (B, C, T) seen as one (C, T) map, -> (B, 1, rows, T // 3).
    Filters beyond 3 * rows and frames beyond a multiple of 3 fall outside the pool windows and are dropped.
    Without autograd |y| is taken in place."""
    y = y[:, : 3 * rows]
    b, _, t = y.shape
    if y.requires_grad:
        return y[..., : t - t % 3].abs().view(b, rows, 3, t // 3, 3).amax((2, 4)).unsqueeze(1)
    # without autograd: the maxima of strided slices, 3x faster than amax over two size-3 dimensions (the same values)
    y = y.abs_().view(b, rows, 3, t)[..., : t - t % 3]
    m = torch.maximum(torch.maximum(y[:, :, 0], y[:, :, 1]), y[:, :, 2]).view(b, rows, t // 3, 3)
    return torch.maximum(torch.maximum(m[..., 0], m[..., 1]), m[..., 2]).unsqueeze(1)


def pool_time3(x: torch.Tensor) -> torch.Tensor:
    """max_pool2d(x, (1, 3)); without autograd, for a channels-last map, a reshape and amax over contiguous
    memory (faster forward; amax's backward is slow, so training keeps max_pool2d)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, (1, 3))
    b, c, h, w = x.shape
    w3 = w // 3
    y = x.permute(0, 2, 3, 1)[:, :, : 3 * w3].reshape(b, h, w3, 3, c).amax(3)
    return y.permute(0, 3, 1, 2)


def block_tile(block: ResidualBlock, x: torch.Tensor, start: int, width: int, w1: torch.Tensor,
               b1: torch.Tensor) -> torch.Tensor:
    """`block` in eval on a time slice. `x` holds input frames [start, start + n) with zeros where outside
    [0, width); returns output frames [(start + 2) / 3, (start + n - 2) / 3). (w1, b1): conv1 with bn2 folded."""
    out = selu_(conv(x, w1, b1, (1, 0)))  # frames [start + 1, start + n - 1)
    n = out.shape[-1]
    lo, hi = max(0, -(start + 1)), min(n, width - (start + 1))
    if lo > 0 or hi < n:  # the official conv2 zero-pads conv1's output, not conv1's input
        out[..., :lo] = 0
        out[..., hi:] = 0
    out = F.conv2d(out, block.conv2.weight, block.conv2.bias)  # frames [start + 2, start + n - 2)
    identity = (conv(x[..., 1:-1], block.conv_downsample.weight, block.conv_downsample.bias, (0, 0))
                if block.downsample else x[..., 2:-2])
    return pool_time3(out.add_(identity))


def blocks_to_tile(model: AASIST) -> int:
    """How many encoder blocks `model.encode` runs tile by tile: `tiled_blocks` in eval without autograd (the
    tiles' in-place edge zeroing is not differentiable) when `tile_frames` > 0, else none."""
    if model.training or model.tile_frames <= 0 or torch.is_grad_enabled():
        return 0
    return model.tiled_blocks


def encode_tiled(model: AASIST, wave: torch.Tensor, n_tiled: int) -> torch.Tensor:
    """Eval: the front end and the first `n_tiled` encoder blocks, tile by time tile of `model.tile_frames`
    first-block frames; the same map as the whole-map path up to rounding."""
    blocks = [seq[0] for seq in list(model.encoder)[:n_tiled]]
    folded = [fold_bn(b.conv1, b.bn2) for b in blocks]
    k = model.conv_time.kernel_size
    widths = [(wave.shape[1] - k + 1) // 3]  # frames at each level: front end, then each block
    for _ in blocks:
        widths.append(widths[-1] // 3)

    def level(i: int, a: int, b: int) -> torch.Tensor:
        """Frames [a, b) of level i (0 = front end), zero frames outside [0, widths[i])."""
        lo, hi = max(a, 0), min(b, widths[i])
        if i == 0:
            y = model.front_end(wave[:, 3 * lo: 3 * hi + k - 1])
        else:
            y = block_tile(blocks[i - 1], level(i - 1, 3 * lo - 2, 3 * hi + 2), 3 * lo - 2, widths[i - 1],
                           *folded[i - 1])
        if lo > a or hi < b:
            y = F.pad(y, (lo - a, b - hi))
        return y.contiguous(memory_format=CL)

    step = max(1, model.tile_frames // 3 ** n_tiled)
    top = widths[n_tiled]
    return torch.cat([level(n_tiled, a, min(a + step, top)) for a in range(0, top, step)],
                     dim=3).contiguous(memory_format=CL)
