"""Training precision (`train.amp`): which autocast dtype a run trains in, and which devices multiply bf16 natively.

Autocast runs matrix products and convolutions in a 16-bit type and keeps reductions, norms and the loss in float32
(PyTorch's autocast op lists). On a GPU that is the usual way to train. On a CPU it pays only where the CPU multiplies
bf16 in hardware: Intel's AMX tiles (Sapphire Rapids and later) run oneDNN's bf16 convolutions and matrix products
faster than float32, while a CPU without them converts and computes in float32 and gets slower. So
`native_bf16` asks for bf16 exactly where it is native, and `auto` stays float32 on every CPU: a run's numbers then
never depend on which CPU it met unless the config says so. On an AMX Xeon a training step of the demo's
ECAPA-TDNN (C=256, 32 x 1 s) took 0.63x its float32 time, one of its LCNN-LFCC-LPS (16 x 1 s) 0.86x
(bench/training_precision.py; docs/benchmarks.md, "Training precision"). The quickstart recipes stay float32: with
every step in bf16 the demo's table kept its ordering, but on the learning test's smaller corpus the single SASV
embedding fell behind its own stage-1 network (eval SASV-EER 40.6 against 37.5 %), which float32 does not.

Evaluation during training runs under the same autocast (model selection only); the stages and verify.py always
score in float32 (pipeline/stages/extract.py refuses autocast), so score files do not depend on `amp`.
"""
from __future__ import annotations

import torch

# auto: bf16 on CUDA (fp16 where bf16 is unsupported), float32 on CPU; native_bf16: bf16 where the device computes
# it natively (CUDA with bf16, a CPU with AMX), else float32; off: float32; bf16: always; fp16: CUDA only
AMP_MODES = ("auto", "native_bf16", "off", "bf16", "fp16")


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles, which oneDNN uses for bf16 convolutions and matrix
    products). AVX512-BF16 alone is not counted: not measured here. False where PyTorch cannot tell."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)   # PyTorch >= 2.3 (no public name yet)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.amp` on `device`; None = float32 (no autocast)."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp: must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    cuda = device.type == "cuda"
    if mode == "off" or (mode == "auto" and not cuda):
        return None
    if mode == "native_bf16":
        native = torch.cuda.is_bf16_supported() if cuda else device.type == "cpu" and cpu_computes_bf16()
        return torch.bfloat16 if native else None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and not cuda:
        raise ValueError("amp: fp16 needs a CUDA device (use off, or bf16, on CPU)")
    return torch.float16 if mode == "fp16" else torch.bfloat16
