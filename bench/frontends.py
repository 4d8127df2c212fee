"""Front-end throughput on CPU: embedding extraction and training steps, in 4.04 s segments per second.

    python bench/frontends.py [--json OUT] [--models AASIST AASIST-L ...] [--threads 2] [--batch 8] [--samples 64600]

Prints one JSON line per model: {"model", "inference_seg_per_s", "train_seg_per_s", ...}. Inference is
`model.eval()` under `torch.inference_mode()`; a training step is forward + loss + backward + Adam step in
train mode (CM: weighted cross-entropy on the logits; ASV: a linear softmax head over 1211 speakers, the
VoxCeleb1 dev set). Each figure is the median over `--repeats` timed runs after two warm-up runs;
`process_peak_rss_gb` is the process's peak resident memory so far (models run in the order given). A model
that cannot be built (e.g. `asv` not importable) gets a {"model", "skipped": reason} line instead.
`AASIST-official` / `AASIST-L-official` time the official code's structure with the same weights
(bench/official_aasist.py), the baseline of the speed targets; `--system-malloc` times without the allocator
setting that main.py applies (common/allocator.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common.allocator import retain_freed_memory  # noqa: E402

CM_MODELS = ("AASIST", "AASIST-L")
BASELINES = ("AASIST-official", "AASIST-L-official")  # the official structure, same weights (bench/official_aasist.py)
ASV_MODELS = ("ResNetSE34V2", "ResNetSE34L", "ECAPA-TDNN")
ASV_SPEAKERS = 1211


def build(name: str) -> tuple[torch.nn.Module, str]:
    """(model, kind) with kind 'cm' or 'asv'."""
    if name in BASELINES:
        from bench.official_aasist import OfficialStructureAASIST
        from cm.aasist import CONFIGS
        return OfficialStructureAASIST(**CONFIGS[name.removesuffix("-official")]), "cm"
    if name in CM_MODELS:
        import cm
        return cm.build_model(name), "cm"
    import asv
    return asv.build_model(name), "asv"


def median_seconds(fn, repeats: int) -> float:
    for _ in range(2):  # warm-up: oneDNN primitive caches, the allocator's heap reaching its working size
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, batch: int, samples: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model, kind = build(name)
    wave = torch.randn(batch, samples) * 0.1
    model.eval()

    def infer():
        with torch.inference_mode():
            model(wave)

    t_infer = median_seconds(infer, repeats)

    model.train()
    if kind == "cm":
        from cm.losses import build_loss
        loss_fn = build_loss("WeightedCE")
        labels = torch.arange(batch) % 2
        params = list(model.parameters())
    else:
        head = torch.nn.Linear(model.embedding_dim, ASV_SPEAKERS)
        labels = torch.arange(batch) % ASV_SPEAKERS
        params = list(model.parameters()) + list(head.parameters())
    optimiser = torch.optim.Adam(params, lr=1e-4)

    def train_step():
        out = model(wave)
        loss = loss_fn(*out, labels) if kind == "cm" else F.cross_entropy(head(out), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    t_train = median_seconds(train_step, repeats)
    return {"model": name, "inference_seg_per_s": round(batch / t_infer, 3),
            "train_seg_per_s": round(batch / t_train, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results (a JSON list) to this file")
    parser.add_argument("--models", nargs="+", default=list(BASELINES[:1] + CM_MODELS + ASV_MODELS),
                        help=f"of {', '.join(BASELINES + CM_MODELS + ASV_MODELS)}")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64600, help="segment length (64600 = 4.04 s at 16 kHz)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median reported)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc malloc as it is (main.py retains freed memory; common/allocator.py)")
    args = parser.parse_args(argv)
    retained = False if args.system_malloc else retain_freed_memory()
    torch.set_num_threads(args.threads)
    setting = {"threads": args.threads, "batch": args.batch, "samples": args.samples, "torch": torch.__version__,
               "retain_freed_memory": retained}
    results = []
    for name in args.models:
        load_before = os.getloadavg()[0]
        try:
            row = bench_model(name, args.batch, args.samples, args.repeats)
        except Exception as e:  # noqa: BLE001 -- a model under construction elsewhere must not stop the bench
            row = {"model": name, "skipped": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        row.update(setting, load_avg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)],
                   process_peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2))
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.json:
        from common.io import write_json
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
