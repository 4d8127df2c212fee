"""Training steps in float32 against bf16 autocast on this CPU: the demo's front-ends at the demo's batch shapes.

    .venv/bin/python bench/training_precision.py [--threads 2] [--rounds 7] [--json OUT]

What `train.amp: native_bf16` (engine/precision.py) buys where the CPU multiplies bf16 in hardware. Per model, one
process, the two precisions interleaved step by step (fp32, bf16, fp32, ...) after two warm-up steps of each, so that
both meet the same load; the figure is the median step time and the ratio bf16 / fp32 of the medians. A step is
forward + loss + backward + Adam in train mode, with the allocator setting of the training entry points
(common/allocator.py). Models and shapes: the demo's ECAPA-TDNN (C=256, 128-d, a linear softmax head over 60
speakers, 32 x 1 s: configs/quickstart_asv.conf) and LCNN-LFCC-LPS (16 x 1 s, its 2 logits:
configs/quickstart_cm.conf). `cpu_computes_bf16` says whether `native_bf16` would pick bf16 here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asv  # noqa: E402
import cm  # noqa: E402
from common.allocator import retain_freed_memory  # noqa: E402
from engine.precision import cpu_computes_bf16  # noqa: E402


def demo_models() -> dict:
    """name -> (model, loss of one batch)."""
    torch.manual_seed(0)
    ecapa = asv.build_model("ECAPA-TDNN", C=256, embedding_dim=128)
    head = torch.nn.Linear(128, 60)
    speech, speakers = torch.randn(32, 16000), torch.randint(0, 60, (32,))
    lcnn = cm.build_model("LCNN-LFCC-LPS")
    crops, labels = torch.randn(16, 16000), torch.randint(0, 2, (16,))
    return {
        "ECAPA-TDNN C=256, 32 x 1 s": (torch.nn.ModuleList([ecapa, head]),
                                       lambda: F.cross_entropy(head(ecapa(speech)).float(), speakers)),
        "LCNN-LFCC-LPS, 16 x 1 s": (lcnn, lambda: F.cross_entropy(lcnn(crops)[1].float(), labels)),
    }


def time_model(model: torch.nn.Module, loss_fn, rounds: int) -> dict:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
        optimiser.step()
        return time.perf_counter() - start

    for bf16 in (False, True, False, True):
        step(bf16)
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for bf16 in (False, True):
            runs[bf16].append(step(bf16))
    fp32, bf16 = statistics.median(runs[False]), statistics.median(runs[True])
    return {"fp32_step_s": round(fp32, 4), "bf16_step_s": round(bf16, 4), "bf16_over_fp32": round(bf16 / fp32, 3),
            "fp32_runs_s": [round(t, 4) for t in runs[False]], "bf16_runs_s": [round(t, 4) for t in runs[True]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    retain_freed_memory()
    torch.set_num_threads(args.threads)
    rows = []
    for name, (model, loss_fn) in demo_models().items():
        row = {"model": name, "threads": args.threads, "cpu_computes_bf16": cpu_computes_bf16(),
               **time_model(model, loss_fn, args.rounds)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
