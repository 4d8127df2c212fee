"""The official clovaai/aasist encoder's structure and ops, as the speed baseline of `bench/frontends.py`.

The issue's reference figures (official code: 1.45 inference / 0.54 training seg/s) were taken on another
machine of this kind; throughput varies between machines and days, so the bench times the official
structure in the same process, back to back with ours. `OfficialStructureAASIST` shares our modules and
weights (the official checkpoints load into both) and replaces what we changed for speed with what the
official `Model.forward` does: the sinc bank rebuilt on every call, NCHW convolutions through nn.Conv2d,
`max_pool2d` everywhere, BatchNorm in eval not folded, the residual block's `selu(bn1(x))` computed and
discarded, out-of-place SELU/add. The graph-attention back half is ours, which is the official math at the
same cost. It reproduces the official reference outputs (tests/test_aasist.py checks it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cm.aasist import AASIST, ResidualBlock, sinc_filter_bank


def official_block_forward(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    identity = x
    if hasattr(block, "bn1"):
        _ = F.selu(block.bn1(x))  # the official block computes this and then convolves x instead
    out = F.selu(block.bn2(block.conv1(x)))
    out = block.conv2(out)
    if block.downsample:
        identity = block.conv_downsample(identity)
    return F.max_pool2d(out + identity, (1, 3))


class OfficialStructureAASIST(AASIST):
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        sinc = self.conv_time
        bank = sinc_filter_bank(sinc.band_pass.shape[0], sinc.kernel_size)  # rebuilt per call, as officially
        if self.training and self.freq_aug:
            bank = sinc.filters(mask=True).squeeze(1)
        x = F.conv1d(wave.unsqueeze(1), bank.unsqueeze(1)).unsqueeze(1)
        x = F.selu(self.first_bn(F.max_pool2d(x.abs(), (3, 3))))
        for seq in self.encoder:
            x = official_block_forward(seq[0], x)
        return x
