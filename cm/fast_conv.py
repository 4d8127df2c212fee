"""2-D convolutions with a faster CPU backward, for training AASIST's encoder.

AASIST's encoder convolves long, narrow maps (up to 8 x 32 x 24 x 21490) with 2x3 and 1x3 kernels whose
width is padded to keep the time axis ("same width"). oneDNN computes their forward well, but in training
their backward took 3-4x the forward's time (docs/benchmarks.md): the channels-last weight gradient runs at
a fraction of the forward's speed, and a single input channel has no fast kernel at all and comes back in
NCHW, which costs layout copies of half-gigabyte maps. `conv2d` computes the same values and gradients as
`F.conv2d` (up to float rounding), differently:

- in channels-last memory an input map flattened to (H * W, C) rows is "shifted" by a kernel tap by an
  offset of (tap row - pad) * W + (tap column - pad) rows, so the weight gradient of one tap is one GEMM
  between the output gradient and a slice of the input, with no im2col copy. Taps that cross a row end
  wrap to the neighbouring row instead of reading the zero padding; those few terms are subtracted after.
- the input gradient of a multi-channel convolution is oneDNN's backward-data, which is fast.
- a single input channel goes through a matmul over gathered (N, KH * KW) patches in both directions,
  writing channels-last directly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable

CL = torch.channels_last
CHUNK_ROWS = 4096  # output positions per GEMM: the output-gradient chunk of all batch items stays in cache


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=padding)` (stride 1) as a channels-last map, with the fast backward
    for "same width" kernels (kernel width = 2 * width padding + 1) on the CPU. Elsewhere (GPUs, where cuDNN's
    backward is fast; CPU autocast; other kernels) it is plain `F.conv2d`."""
    if (x.device.type != "cpu" or torch.is_autocast_enabled("cpu")
            or weight.shape[3] != 2 * padding[1] + 1 or padding[1] > x.shape[3]):
        return F.conv2d(x, weight, bias, padding=padding).contiguous(memory_format=CL)
    if weight.shape[1] == 1:
        return _SingleChannelConv.apply(x, weight, bias, padding)
    return _SameWidthConv.apply(x, weight, bias, padding)


def patches(x: torch.Tensor, kernel: tuple[int, int], padding: tuple[int, int], ones: bool = False) -> torch.Tensor:
    """(B, Ho, Wo, KH * KW) input values under each kernel tap of a single-channel map (B, 1, H, W); `ones` appends
    a column of ones (B, Ho, Wo, KH * KW + 1), for a bias carried as one more weight."""
    kh, kw = kernel
    xp = F.pad(x[:, 0], (padding[1], padding[1], padding[0], padding[0]))
    ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    taps = [xp[:, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)]
    if ones:
        taps.append(xp.new_ones(()).expand_as(taps[0]))
    return torch.stack(taps, dim=-1)


def single_channel_conv(p: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Convolution of a single-channel map from its `patches` (one matmul), as a channels-last map."""
    b, ho, wo, _ = p.shape
    out = torch.addmm(bias, p.view(-1, p.shape[-1]), weight.view(weight.shape[0], -1).t())
    return out.view(b, ho, wo, -1).permute(0, 3, 1, 2)


def single_channel_conv_inference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                                  padding: tuple[int, int]) -> torch.Tensor:
    """`single_channel_conv` over `patches` without autograd, the bias as the weight of one more patch column of
    ones: the matmul then writes the output once, where addmm first fills it with the bias. On AASIST's largest
    maps (8 x 32 x 24 x 1049 a time tile) that fill cost more than the matmul (docs/benchmarks.md)."""
    p = patches(x, weight.shape[2:], padding, ones=True)
    b, ho, wo, k = p.shape
    w = torch.cat([weight.reshape(weight.shape[0], -1), bias[:, None]], dim=1)
    return torch.mm(p.view(-1, k), w.t()).view(b, ho, wo, -1).permute(0, 3, 1, 2)


class _SingleChannelConv(torch.autograd.Function):
    """C_in = 1: forward and both gradients as matmuls over the (N, KH * KW) patches."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                padding: tuple[int, int]) -> torch.Tensor:
        p = patches(x, weight.shape[2:], padding)
        ctx.save_for_backward(p, weight)
        ctx.padding, ctx.x_shape = padding, x.shape
        return single_channel_conv(p, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, gy: torch.Tensor):
        p, weight = ctx.saved_tensors
        c_out, _, kh, kw = weight.shape
        g = gy.permute(0, 2, 3, 1).reshape(-1, c_out)  # a view when gy is channels-last
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            # each output position's gradient spread over its taps, then summed back onto the input positions
            spread = torch.mm(weight.view(c_out, -1).t(), g.t()).view(kh, kw, *p.shape[:3])
            b, h, w = ctx.x_shape[0], ctx.x_shape[2], ctx.x_shape[3]
            ph, pw = ctx.padding
            gxp = gy.new_zeros(b, h + 2 * ph, w + 2 * pw)
            for i in range(kh):
                for j in range(kw):
                    gxp[:, i:i + p.shape[1], j:j + p.shape[2]] += spread[i, j]
            gx = gxp[:, ph:ph + h, pw:pw + w].unsqueeze(1).contiguous()
        if ctx.needs_input_grad[1]:
            gw = torch.mm(p.view(-1, kh * kw).t(), g).t().reshape(weight.shape)
        if ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb, None


class _SameWidthConv(torch.autograd.Function):
    """C_in > 1: oneDNN forward and input gradient; the weight gradient as per-tap GEMMs (`weight_grad`)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                padding: tuple[int, int]) -> torch.Tensor:
        x = x.contiguous(memory_format=CL)
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding).contiguous(memory_format=CL)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, gy: torch.Tensor):
        x, weight = ctx.saved_tensors
        gy = gy.contiguous(memory_format=CL)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(gy, x, weight, None, (1, 1), ctx.padding, (1, 1), False, (0, 0), 1,
                                                     (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            gw = weight_grad(gy, x, weight.shape[2:], ctx.padding)
        if ctx.needs_input_grad[2]:
            gb = gy.permute(0, 2, 3, 1).reshape(-1, gy.shape[1]).sum(0)
        return gx, gw, gb, None


def weight_grad(gy: torch.Tensor, x: torch.Tensor, kernel: tuple[int, int], padding: tuple[int, int],
                chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Weight gradient (C_out, C_in, KH, KW) of a same-width, stride-1 conv2d from channels-last `gy` and `x`."""
    b, c, h, w = x.shape
    c_out, ho = gy.shape[1], gy.shape[2]
    kh, kw = kernel
    ph, pw = padding
    xf = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # views for channels-last maps
    gf = gy.permute(0, 2, 3, 1).reshape(b, ho * w, c_out)
    taps = [(i, j, (i - ph) * w + (j - pw)) for i in range(kh) for j in range(kw)]
    per_item = x.new_zeros(kh * kw, b, c_out, c)
    for start in range(0, ho * w, chunk_rows):
        stop = min(start + chunk_rows, ho * w)
        for t, (_, _, off) in enumerate(taps):
            lo, hi = max(start, -off), min(stop, h * w - off)  # outside: the zero padding above and below
            if lo < hi:
                per_item[t].baddbmm_(gf[:, lo:hi].transpose(1, 2), xf[:, lo + off:hi + off])
    gw = per_item.sum(1)
    # at the first (last) columns, taps left (right) of the kernel centre read the previous (next) row's
    # last (first) columns instead of the zero padding: subtract those terms
    x4, g4 = x.permute(0, 2, 3, 1), gy.permute(0, 2, 3, 1)
    for t, (i, j, _) in enumerate(taps):
        d, e = j - pw, i - ph  # tap column and row offsets
        if d == 0:
            continue
        step = -1 if d < 0 else 1  # the input row read, relative to e, and the columns involved
        lo, hi = max(0, -e - step), min(ho, h - e - step)
        if lo >= hi:
            continue
        g_cols, x_cols = (slice(0, -d), slice(w + d, w)) if d < 0 else (slice(w - d, w), slice(0, d))
        gs = g4[:, lo:hi, g_cols]
        xs = x4[:, lo + e + step:hi + e + step, x_cols]
        gw[t] -= gs.reshape(-1, c_out).t() @ xs.reshape(-1, c)
    return gw.view(kh, kw, c_out, c).permute(2, 3, 0, 1).contiguous()
