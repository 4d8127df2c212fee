"""Layers that torch.export cannot keep dynamic, as custom operators that the ONNX exporter writes as one ONNX
operator each.

`nn.LSTM` is one such layer: torch.export decomposes it into one step per frame, which fixes the sequence length to
the traced one, while ONNX has an LSTM operator with a dynamic sequence axis. `BiLSTMForExport` runs a
bidirectional one-layer `nn.LSTM` through the custom operator `sasv::bidirectional_lstm`, opaque to torch.export,
and `translations()` tells torch.onnx to write it as ONNX's LSTM. Eager PyTorch runs the operator with torch.lstm,
so the exporter's check (eager against ONNX Runtime) compares two implementations.

This module imports only torch: the models' `for_export` use it; onnxscript is imported by `translations()`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

# Gate order along the rows of the weights: PyTorch stacks (input, forget, cell, output), ONNX (input, output,
# forget, cell).
_TORCH_FROM_ONNX = (0, 2, 3, 1)
_ONNX_FROM_TORCH = (0, 3, 1, 2)


def _gates(matrix: Tensor, order: tuple[int, ...]) -> Tensor:
    parts = matrix.chunk(4, dim=0)
    return torch.cat([parts[i] for i in order])


@torch.library.custom_op("sasv::bidirectional_lstm", mutates_args=())
def bidirectional_lstm(x: Tensor, w: Tensor, r: Tensor, b: Tensor, hidden: int) -> Tensor:
    """ONNX's LSTM (direction bidirectional, zero initial states, every sequence full length) on a batch-first
    input: x (B, T, I), w (2, 4H, I), r (2, 4H, H), b (2, 8H) with the gates in ONNX's order -> (B, T, 2H), the
    forward direction's output then the reverse one's, as nn.LSTM gives them."""
    flat = []
    for d in range(2):
        flat += [_gates(w[d], _TORCH_FROM_ONNX), _gates(r[d], _TORCH_FROM_ONNX),
                 _gates(b[d, :4 * hidden], _TORCH_FROM_ONNX), _gates(b[d, 4 * hidden:], _TORCH_FROM_ONNX)]
    h0 = x.new_zeros(2, x.shape[0], hidden)
    return torch.lstm(x, (h0, h0), flat, True, 1, 0.0, False, True, True)[0]


@bidirectional_lstm.register_fake
def _(x: Tensor, w: Tensor, r: Tensor, b: Tensor, hidden: int) -> Tensor:
    return x.new_empty(x.shape[0], x.shape[1], 2 * hidden)


class BiLSTMForExport(nn.Module):
    """A trained `nn.LSTM(bidirectional=True, batch_first=True)` of one layer with biases, for the exporter: the same
    function through `sasv::bidirectional_lstm`, its weights as ONNX's LSTM takes them. Returns `(output,)`, so that
    code reading nn.LSTM's `[0]` reads the output."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if not (lstm.bidirectional and lstm.batch_first and lstm.bias and lstm.num_layers == 1
                and lstm.proj_size == 0):
            raise ValueError("BiLSTMForExport takes a one-layer bidirectional batch-first nn.LSTM with biases and no "
                             f"projection, got {lstm}")
        self.hidden = lstm.hidden_size
        directions = ("", "_reverse")

        def stacked(name: str) -> Tensor:
            return torch.stack([_gates(getattr(lstm, f"{name}_l0{d}").detach(), _ONNX_FROM_TORCH)
                                for d in directions])

        self.register_buffer("w", stacked("weight_ih"))
        self.register_buffer("r", stacked("weight_hh"))
        self.register_buffer("b", torch.cat([stacked("bias_ih"), stacked("bias_hh")], dim=1))

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (bidirectional_lstm(x, self.w, self.r, self.b, self.hidden),)


def translations() -> dict[Callable, Callable]:
    """torch.onnx's `custom_translation_table` for the operators above."""
    from onnxscript import opset18 as op

    def lstm_to_onnx(x, w, r, b, hidden: int):
        y, _, _ = op.LSTM(op.Transpose(x, perm=[1, 0, 2]), w, r, b, direction="bidirectional", hidden_size=hidden)
        y = op.Transpose(y, perm=[2, 0, 1, 3])                  # (T, 2, B, H) -> (B, T, 2, H)
        return op.Reshape(y, op.Constant(value_ints=[0, 0, -1]))

    return {torch.ops.sasv.bidirectional_lstm.default: lstm_to_onnx}
