"""Front-end throughput on CPU: embedding extraction and training steps, in 4.04 s segments per second.

    python bench/frontends.py [--json OUT] [--models AASIST AASIST-L ...] [--threads 2] [--batch 8] [--samples 64600]
                              [--repeats 3] [--warmup 2] [--no-macs] [--compile]

Prints one JSON line per model: {"model", "params", "inference_seg_per_s", "train_seg_per_s", ...}. Inference is
`model.eval()` under `torch.inference_mode()`; a training step is forward + loss + backward + Adam step in
train mode (CM: weighted cross-entropy on the logits; ASV: a linear softmax head over 1211 speakers, the
VoxCeleb1 dev set). Each figure is the median over `--repeats` timed runs after `--warmup` (2) warm-up runs; the
runs' seconds per batch are in `inference_runs_s` / `train_runs_s` (on a shared machine, to tell noise from speed).
Memory: `inference_peak_rss_gb` / `train_peak_rss_gb` are the process's peak resident memory during that phase
(Linux: the peak is reset through /proc/self/clear_refs after `malloc_trim`, so they include the interpreter,
torch and the model, about 0.5 GB, but not what earlier models left behind; null where that reset is not
available); `process_peak_rss_gb` is the peak so far (models run in the order given). Compute:
`gmac_per_segment` is the multiply-accumulates of one eval forward on one segment and `train_gmac_per_segment`
those of a training step's forward + backward per segment (torch.utils.flop_counter: convolutions and matrix
products only, i.e. not the STFT, norms or activations; the eval forward is counted with the parameters'
requires_grad off, which runs the same operations but lets the counter's module tracker through; null with a
`*_error` key where the counter cannot trace the model); `--no-macs` skips the count. A model that cannot be
built (e.g. `asv` not importable) gets a {"model", "skipped": reason} line instead. `ECAPA-TDNN-C1024` is
ECAPA-TDNN at its published size (C=1024, 15.4 M parameters; `ECAPA-TDNN` is the project's default C=512),
the baseline of the SKA-TDNN and MFA-Conformer targets.
SSL front-ends (`SSL_MODELS`, docs/ssl.md; not in the default `--models`: minutes per row at 2 threads), all with
random encoder weights: `XLS-R-300M` / `WavLM-Base+` are the encoder alone (`ssl_models.SSLEncoder`, last layer;
inference only), `SSL-AASIST` (XLS-R 300M fine-tuned, the paper's) with `-frozen` (freeze: true) and `-gradckpt`
(fine-tuned with grad_checkpointing: true), `SSL-ECAPA` and `SSL-MHFA` (WavLM Base+ frozen, their defaults) with
`SSL-ECAPA-finetune` (freeze: false) and `SSL-ECAPA-finetune-gradckpt`; the fine-tuned WavLM rows set
encoder_layer_drop 0 (WavLM Base's builder default is 0.1), so that every step runs all 12 layers. A variant that
changes only training (freezing, checkpointing) is timed in training only: its inference is its base row's
(`inference_as`). SSL rows also give `encoder` (name, layer, freeze, grad_checkpointing, parameters) and
`trainable_params`.
`AASIST-official` / `AASIST-L-official` time the official code's structure with the same weights
(bench/official_aasist.py), the baseline of the speed targets; `--system-malloc` times without the allocator
setting that main.py applies (common/allocator.py).
`--onnx` adds, beside eager inference, the model exported to ONNX (runtime/onnx_export.py, as `runtime: onnx` does)
and run on ONNX Runtime with the same threads and batch (no training rows): `onnx_seg_per_s`, `onnx_speedup` (median
eager / median ONNX seconds over the same run's rounds: eager's timed runs, ONNX's, then both interleaved; the
session's idle threads sleep instead of spinning, which slowed the interleaved eager batches by up to 70 % before
2026-12-07 20:28 UTC and inflated every earlier ratio; `ort_spinning`), `onnx_export_s`, `onnx_max_rel_diff`
(against eager on two segments). AASIST's row with `AASIST-official` in the same run gives the fastest path's
ratio to the official code.
`--compile` times inference through `torch.compile(model)` instead (training is not compiled, so those rows have
no training figures): `compile_s` is the first call (tracing + code generation, not in the runs), and
`compile_max_abs_diff` how far the compiled output is from the eager one on the same batch. It is there to tell
per-operation overhead from arithmetic: a model held back by many small element-wise operations gains more from
fusion than one that spends its time in convolutions (docs/benchmarks.md).
`--peak` first measures the machine's float32 ceiling at --threads (best 2048^3 matrix product, GMAC/s) and adds to
each row with a MAC count `inference_gmac_per_s` and `inference_fraction_of_peak`: how close a model comes to what
the cores can do (convolutions and matrix products only are counted, so element-wise work lowers the fraction).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
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

CM_MODELS = ("AASIST", "AASIST-L", "LCNN", "LCNN-LFCC-LPS", "LFCC-LCNN-ASVspoof2021")
BASELINES = ("AASIST-official", "AASIST-L-official")  # the official structure, same weights (bench/official_aasist.py)
ASV_MODELS = ("ResNetSE34V2", "ResNetSE34L", "ECAPA-TDNN", "ECAPA-TDNN-C1024", "SKA-TDNN", "MFA-Conformer")
# bench name -> (asv architecture, build options) for the ASV rows that are not a registry default
ASV_VARIANTS = {"ECAPA-TDNN-C1024": ("ECAPA-TDNN", {"C": 1024})}
ASV_SPEAKERS = 1211
# SSL front-ends, random weights: bench name -> (kind, architecture, encoder section, row whose inference it shares).
# kind 'encoder': the SSLEncoder alone, inference only.
_XLSR, _WAVLM, _NO_LAYER_DROP = "wav2vec2_xlsr_300m", "wavlm_base_plus", {"options": {"encoder_layer_drop": 0.0}}
SSL_MODELS: dict[str, tuple[str, str | None, dict, str | None]] = {
    "XLS-R-300M": ("encoder", None, {"name": _XLSR, "layer": "last"}, None),
    "WavLM-Base+": ("encoder", None, {"name": _WAVLM, "layer": "last"}, None),
    "SSL-AASIST": ("cm", "SSL-AASIST", {}, None),   # XLS-R 300M fine-tuned (the paper's)
    "SSL-AASIST-frozen": ("cm", "SSL-AASIST", {"freeze": True}, "SSL-AASIST"),
    "SSL-AASIST-gradckpt": ("cm", "SSL-AASIST", {"grad_checkpointing": True}, "SSL-AASIST"),
    "SSL-ECAPA": ("asv", "SSL-ECAPA", {}, None),    # WavLM Base+ frozen, weighted layers
    "SSL-ECAPA-finetune": ("asv", "SSL-ECAPA", {"freeze": False, **_NO_LAYER_DROP}, "SSL-ECAPA"),
    "SSL-ECAPA-finetune-gradckpt": ("asv", "SSL-ECAPA", {"freeze": False, "grad_checkpointing": True,
                                                         **_NO_LAYER_DROP}, "SSL-ECAPA"),
    "SSL-MHFA": ("asv", "SSL-MHFA", {}, None),      # WavLM Base+ frozen, every layer
}


def build(name: str) -> tuple[torch.nn.Module, str]:
    """(model, kind) with kind 'cm', 'asv' or 'encoder' (an SSL encoder alone)."""
    if name in SSL_MODELS:
        kind, arch, section = SSL_MODELS[name][:3]
        if kind == "encoder":
            import ssl_models
            return ssl_models.build_encoder(**section), kind
        if kind == "cm":
            import cm
            return cm.build_model(arch, encoder=section), kind
        import asv
        return asv.build_model(arch, encoder=section), kind
    if name in BASELINES:
        from bench.official_aasist import OfficialStructureAASIST
        from cm.aasist import CONFIGS
        return OfficialStructureAASIST(**CONFIGS[name.removesuffix("-official")]), "cm"
    if name in CM_MODELS:
        import cm
        return cm.build_model(name), "cm"
    import asv
    arch, options = ASV_VARIANTS.get(name, (name, {}))
    return asv.build_model(arch, **options), "asv"


def _reset_peak_rss() -> bool:
    """Hand freed heap pages back (glibc) and restart the kernel's peak-RSS counter; False where unsupported."""
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_gb() -> float | None:
    """VmHWM of this process in GB (Linux), None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def count_gmacs(fn, *args) -> float:
    """Multiply-accumulates (G) of the convolutions and matrix products that `fn(*args)` runs (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 2e9


def timed_runs(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):  # warm-up: oneDNN primitive caches, the allocator's heap reaching its working size
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _ssl_fields(model: torch.nn.Module) -> dict:
    """`encoder` (what the SSL encoder inside `model` is) and `trainable_params`; {} for a model without one."""
    from ssl_models import SSLEncoder
    found = [m for m in model.modules() if isinstance(m, SSLEncoder)]
    if not found:
        return {}
    enc = found[0]
    return {"encoder": {"name": enc.name, "layer": enc.layer, "freeze": enc.freeze,
                        "grad_checkpointing": enc.grad_checkpointing,
                        "params": sum(p.numel() for p in enc.encoder_parameters())},
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def onnx_fields(model: torch.nn.Module, kind: str, wave: torch.Tensor, repeats: int, warmup: int, infer,
                eager_runs: list[float]) -> dict:
    """The model exported (runtime/onnx_export.py, as `runtime: onnx` does) and timed on ONNX Runtime on the same batch
    and threads, right after eager and then once more interleaved with it (eager, onnx, eager, ...), so that the ratio
    `onnx_speedup` (median eager s / median onnx s, over the same-run rounds) is one of the same load."""
    import tempfile

    from runtime.onnx_export import export_graph, frontend_graph, max_difference
    from runtime.onnx_session import open_session
    graph = frontend_graph(model, "cm" if kind == "cm" else "asv")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_graph(graph, Path(tmp) / "model.onnx", type(model).__name__)
        export_s = time.perf_counter() - start
        session = open_session(Path(tmp) / "model.onnx", spin=False)   # spinning threads would slow eager's rounds
    x = wave.numpy()

    def run():
        session.run(None, {"wave": x})
    onnx_runs = timed_runs(run, repeats, warmup)
    eager_more, onnx_more = [], []
    for _ in range(repeats):   # interleaved rounds: a change of machine load hits both
        eager_more += timed_runs(infer, 1, 0)
        onnx_more += timed_runs(run, 1, 0)
    eager_all, onnx_all = eager_runs + eager_more, onnx_runs + onnx_more
    return {"onnx_export_s": round(export_s, 1), "onnx_seg_per_s": round(len(x) / statistics.median(onnx_all), 3),
            "onnx_runs_s": [round(t, 3) for t in onnx_all], "eager_runs_s": [round(t, 3) for t in eager_all],
            "onnx_speedup": round(statistics.median(eager_all) / statistics.median(onnx_all), 2),
            "onnx_max_rel_diff": max_difference(graph.module, session, [wave[:2]]),
            "ort_threads": torch.get_num_threads(), "ort_spinning": False}


def bench_model(name: str, batch: int, samples: int, repeats: int, macs: bool = True, warmup: int = 2,
                compile_model: bool = False, onnx: bool = False) -> dict:
    torch.manual_seed(0)
    model, kind = build(name)
    n_params = sum(p.numel() for p in model.parameters())
    inference_as = SSL_MODELS[name][3] if name in SSL_MODELS else None  # same eval model as that row: not re-timed
    wave = torch.randn(batch, samples) * 0.1
    model.eval()

    compiled_fields: dict = {}
    forward = model
    if compile_model:
        forward = torch.compile(model)
        with torch.inference_mode():
            start = time.perf_counter()
            out = forward(wave)
            compile_s = time.perf_counter() - start
            reference = model(wave)
        out, reference = (o[-1] if isinstance(o, tuple) else o for o in (out, reference))  # CM: (embedding, logits)
        compiled_fields = {"compiled": True, "compile_s": round(compile_s, 1),
                           "compile_max_abs_diff": float((out - reference).abs().max())}

    def infer(x=wave):
        with torch.inference_mode():
            forward(x)

    def infer_counted(x):  # the same, with requires_grad off: FlopCounterMode's module tracker fails on a module
        flags = [(p, p.requires_grad) for p in model.parameters()]  # input that requires grad under inference_mode
        for p, _ in flags:  # (the parametrized weight-norm of wav2vec 2.0's position convolution, AASIST's layers)
            p.requires_grad_(False)
        try:
            infer(x)
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    phase_peak = _reset_peak_rss()  # False: no per-phase peak (the figures stay None)
    infer_runs, infer_peak = [], None
    if inference_as is None:
        infer_runs = timed_runs(infer, repeats, warmup)
        infer_peak = _peak_rss_gb() if phase_peak else None
    if onnx and inference_as is None and name not in BASELINES:   # the official code is the baseline, eager
        compiled_fields.update(onnx_fields(model, kind, wave, repeats, warmup, infer, infer_runs))

    train_step, train_runs, train_peak = None, [], None
    if kind != "encoder" and not compile_model and not onnx:  # an SSL encoder alone, compiled or ONNX: inference
        model.train()
        if kind == "cm":
            from cm.losses import build_loss
            loss_fn = build_loss("WeightedCE")
            params = list(model.parameters())
        else:
            head = torch.nn.Linear(model.embedding_dim, ASV_SPEAKERS)
            params = list(model.parameters()) + list(head.parameters())
        optimiser = torch.optim.Adam(params, lr=1e-4)

        def train_step(x=wave):
            labels = torch.arange(len(x)) % (2 if kind == "cm" else ASV_SPEAKERS)
            out = model(x)
            loss = loss_fn(*out, labels) if kind == "cm" else F.cross_entropy(head(out), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        _reset_peak_rss()
        train_runs = timed_runs(train_step, repeats, warmup)
        train_peak = _peak_rss_gb() if phase_peak else None
    row = {"model": name, "params": n_params, **_ssl_fields(model), **compiled_fields,
           "inference_seg_per_s": round(batch / statistics.median(infer_runs), 3) if infer_runs else None,
           "train_seg_per_s": round(batch / statistics.median(train_runs), 3) if train_runs else None,
           "inference_runs_s": [round(t, 3) for t in infer_runs], "train_runs_s": [round(t, 3) for t in train_runs],
           "inference_peak_rss_gb": infer_peak, "train_peak_rss_gb": train_peak}
    if inference_as:
        row["inference_as"] = inference_as
    if macs:  # after the timing, on 1 (eval) and 2 (train: BatchNorm needs two) segments; per segment
        for key, mode, fn, n in (("gmac_per_segment", False, infer_counted if infer_runs else None, 1),
                                 ("train_gmac_per_segment", True, train_step, 2)):
            if fn is None or (compile_model and mode):
                continue
            model.train(mode)
            try:
                row[key] = round(count_gmacs(fn, wave[:n]) / n, 3)
            except Exception as e:  # noqa: BLE001 -- e.g. custom autograd functions the counter cannot trace
                row[key] = None
                row[f"{key}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return row


def matmul_peak_gmac_per_s(n: int = 2048, repeats: int = 7) -> float:
    """The best float32 rate of an n x n x n matrix product at torch's threads: what the cores reach on the most
    favourable work there is (MKL/oneDNN GEMM), the ceiling a model's GMAC/s is compared to. Best of `repeats`
    after one warm-up, so that a noisy machine lowers it as little as possible."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return n ** 3 / min(timed_runs(lambda: torch.mm(a, b), repeats, warmup=1)) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results (a JSON list) to this file")
    parser.add_argument("--models", nargs="+", default=list(BASELINES[:1] + CM_MODELS + ASV_MODELS),
                        help=f"of {', '.join(BASELINES + CM_MODELS + ASV_MODELS + tuple(SSL_MODELS))}")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64600, help="segment length (64600 = 4.04 s at 16 kHz)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before each figure's timed ones")
    parser.add_argument("--no-macs", action="store_true", help="skip the multiply-accumulate count")
    parser.add_argument("--compile", action="store_true", help="time inference through torch.compile (no training)")
    parser.add_argument("--onnx", action="store_true",
                        help="also time inference on ONNX Runtime (the exported graph; no training)")
    parser.add_argument("--peak", action="store_true",
                        help="also measure the machine's float32 multiply-accumulate rate at --threads (a 2048^3 "
                             "matrix product): each row then gets gmac_per_s and fraction_of_peak")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc malloc as it is (main.py retains freed memory; common/allocator.py)")
    args = parser.parse_args(argv)
    retained = False if args.system_malloc else retain_freed_memory()
    torch.set_num_threads(args.threads)
    setting = {"threads": args.threads, "batch": args.batch, "samples": args.samples, "warmup": args.warmup,
               "torch": torch.__version__, "retain_freed_memory": retained}
    results = []
    peak = None
    if args.peak:
        peak = matmul_peak_gmac_per_s()
        results.append({"machine_peak_gmac_per_s": round(peak, 1), **setting})
        print(json.dumps(results[-1]), flush=True)
    for name in args.models:
        load_before = os.getloadavg()[0]
        try:
            row = bench_model(name, args.batch, args.samples, args.repeats, macs=not args.no_macs,
                              warmup=args.warmup, compile_model=args.compile, onnx=args.onnx)
        except Exception as e:  # noqa: BLE001 -- a model under construction elsewhere must not stop the bench
            row = {"model": name, "skipped": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        if peak and row.get("gmac_per_segment") and row.get("inference_seg_per_s"):
            rate = row["gmac_per_segment"] * row["inference_seg_per_s"]
            row.update(inference_gmac_per_s=round(rate, 1), inference_fraction_of_peak=round(rate / peak, 3))
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
