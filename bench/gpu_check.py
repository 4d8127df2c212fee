"""What runs on a GPU, with its figures: one short script for the occasional machine with CUDA.

    python bench/gpu_check.py [--device auto|cuda|cpu] [--time-limit 420] [--parts amp ddp joint throughput]
                              [--json OUT]

Parts, each independent (a failure is printed and the others still run), all through the project's code:
- amp: a few training steps through `engine.fit` of AASIST (cm.build_model, weighted CE) and ECAPA-TDNN
  (asv.build_model, a linear softmax head over 1211 speakers) on random 4.04 s waveforms, under bf16 and fp16
  autocast (fp16 with the engine's GradScaler, whose scale is read back from last.pt): losses finite, median
  step time, peak GPU memory;
- ddp: `torchrun` over nccl with bench/gpu_ddp_worker.py (tests/ddp_worker.py's run on the GPU), 2 processes
  when there are 2 GPUs, else 1 (nccl is still initialised and checked with an all_reduce); its weights are
  compared with a one-process run;
- joint: the tiny synthetic corpus, then `pipeline.recipes.sasv_task.run` in joint mode for one short epoch with
  configs/quickstart.conf's untrained front-ends (ECAPA-TDNN + LCNN-LFCC-LPS);
- throughput: inference of AASIST, AASIST-L, ResNetSE34V2, ResNetSE34L, ECAPA-TDNN and LCNN at batch 64 on
  4.04 s segments, fp32 and bf16 autocast: segments/s, and how far bf16 outputs are from fp32 ones.

Prints one JSON line per result, then a readable summary; exit status 1 when a part failed. Without CUDA
(and no --device cpu) it prints one line and exits 0. `--device cpu` is the dry run that tests/test_gpu_check.py
uses: every part on the CPU with tiny models and sizes, gloo instead of nccl, amp off instead of fp16 (the
engine allows fp16 on CUDA only). `--time-limit` bounds the whole run: a part still running then is stopped
and reported, and parts not yet started are skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

SEGMENT = 64600  # 4.04 s at 16 kHz, the AASIST evaluation crop
ASV_SPEAKERS = 1211  # VoxCeleb1 dev
FRONTENDS = ("AASIST", "AASIST-L", "ResNetSE34V2", "ResNetSE34L", "ECAPA-TDNN", "LCNN")
PARTS = ("amp", "ddp", "joint", "throughput")

# the dry run's model sizes (the pipeline tests' tiny front-ends)
_TINY_AASIST = {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}
_TINY_RESNET = {"embedding_dim": 32, "channels": (8, 8, 16, 32)}
TINY_MODELS = {"AASIST": _TINY_AASIST, "AASIST-L": _TINY_AASIST, "ResNetSE34V2": _TINY_RESNET,
               "ResNetSE34L": _TINY_RESNET, "ECAPA-TDNN": {"C": 32, "embedding_dim": 32},
               "LCNN": {"channels": [8, 8, 8, 8], "embedding_dim": 16}}


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the GPU check, or the CPU dry run of the same code paths."""
    device: str
    train_batch: int
    train_samples: int
    train_steps: int
    infer_batch: int
    infer_samples: int
    infer_repeats: int
    infer_warmup: int
    amp_modes: tuple[str, ...]
    models: dict[str, dict] = field(default_factory=dict)  # arch -> model kwargs (empty: full size)
    joint_overrides: tuple[str, ...] = ()

    def model_kwargs(self, arch: str) -> dict:
        return self.models.get(arch, {})


GPU_PLAN = Plan("cuda", train_batch=16, train_samples=SEGMENT, train_steps=8, infer_batch=64, infer_samples=SEGMENT,
                infer_repeats=5, infer_warmup=2, amp_modes=("bf16", "fp16"),
                joint_overrides=("sampling.trials_per_epoch=256", "train.batch_size=32"))
CPU_DRY_PLAN = Plan("cpu", train_batch=2, train_samples=4000, train_steps=3, infer_batch=2, infer_samples=4000,
                    infer_repeats=1, infer_warmup=1, amp_modes=("bf16", "off"), models=TINY_MODELS,
                    joint_overrides=("sampling.trials_per_epoch=16", "train.batch_size=8", "asv.arch=ResNetSE34L",
                                     "asv.model={embedding_dim: 32, channels: [8, 8, 16, 32]}", "cm.arch=LCNN",
                                     "cm.model={channels: [8, 8, 8, 8], embedding_dim: 16}", "cm.crop.policy=first",
                                     "cm.crop.samples=4000", "asv.crop.policy=first", "asv.crop.samples=4000",
                                     "joint.test_samples=4000", "joint.enrol_samples=4000"))


# ---- timing helpers ------------------------------------------------------------------------------
class PartTimeout(Exception):
    """The run's --time-limit ran out while a part was running."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raises PartTimeout in the main thread after `seconds` (SIGALRM), so a stuck part cannot eat the others' time."""
    def expire(signum, frame):
        raise PartTimeout(f"stopped by --time-limit after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def build_frontend(arch: str, plan: Plan) -> tuple[nn.Module, str]:
    """(model, 'cm' or 'asv')."""
    import asv
    import cm
    if arch in cm.MODELS:
        return cm.build_model(arch, **plan.model_kwargs(arch)), "cm"
    return asv.build_model(arch, **plan.model_kwargs(arch)), "asv"


# ---- part 1: AMP training steps through the engine -----------------------------------------------
class _Classifier(nn.Module):
    """A front-end with what it is trained with: CM logits as they are; ASV embeddings into a softmax head."""

    def __init__(self, arch: str, plan: Plan):
        super().__init__()
        self.net, self.kind = build_frontend(arch, plan)
        self.head = nn.Linear(self.net.embedding_dim, ASV_SPEAKERS) if self.kind == "asv" else None

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, logits): a CM's own logits, or the speaker head's."""
        embedding, logits = self.net(wave) if self.kind == "cm" else (self.net(wave), None)
        return embedding, logits if logits is not None else self.head(embedding)


class _TimedTask:
    """engine.Task that records each step's loss and the time between step starts (one step apart)."""

    def __init__(self, device: torch.device, kind: str):
        from cm.losses import build_loss

        self.device, self.kind = device, kind
        self.starts: list[float] = []
        self.losses: list[torch.Tensor] = []
        self.cm_loss = build_loss("WeightedCE").to(device)

    def training_step(self, model, batch):
        sync(self.device)
        self.starts.append(time.perf_counter())
        wave, label = batch
        embedding, logits = model(wave)
        loss = (self.cm_loss(embedding.float(), logits.float(), label) if self.kind == "cm"
                else F.cross_entropy(logits.float(), label))
        self.losses.append(loss.detach())
        return loss, {}

    def evaluate(self, model):
        return {}


def amp_train(arch: str, amp: str, plan: Plan, out_dir: Path) -> dict:
    from torch.utils.data import TensorDataset

    from engine import TrainData, fit, load_checkpoint, seed_everything, train_config

    device = torch.device(plan.device)
    seed_everything(0)
    model = _Classifier(arch, plan)
    n = plan.train_batch * plan.train_steps
    classes = 2 if model.kind == "cm" else ASV_SPEAKERS
    data = TensorDataset(torch.randn(n, plan.train_samples) * 0.1, torch.arange(n) % classes)
    task = _TimedTask(device, model.kind)
    cfg = train_config({"epochs": 1, "batch_size": plan.train_batch, "device": plan.device, "amp": amp,
                        "progress": False, "log_every_steps": plan.train_steps,
                        "optimizer": {"name": "adam", "lr": 1e-4}})
    reset_peak_memory(device)
    start = time.perf_counter()
    fit(model, task, TrainData(data), cfg, out_dir)
    wall = time.perf_counter() - start
    losses = [float(x) for x in task.losses]
    # step times from consecutive start times; the first step carries the warm-up
    steps = [b - a for a, b in zip(task.starts[1:], task.starts[2:], strict=False)]
    scaler = load_checkpoint(out_dir / "last.pt").get("scaler") or {}
    return {"ok": all(map(math.isfinite, losses)), "steps": len(losses), "batch": plan.train_batch,
            "samples": plan.train_samples, "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
            "step_s_median": round(statistics.median(steps), 4) if steps else None,
            "grad_scaler_scale": scaler.get("scale"), "fit_wall_s": round(wall, 2),
            "peak_mem_gb": peak_memory_gb(device)}


# ---- part 2: torchrun + DDP through the engine ----------------------------------------------------
def ddp_run(plan: Plan, out_dir: Path, timeout: float) -> dict:
    from engine import load_checkpoint

    worker = ROOT / "bench" / "gpu_ddp_worker.py"
    procs = 2 if plan.device == "cpu" or torch.cuda.device_count() >= 2 else 1
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if plan.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    single, multi = out_dir / "single", out_dir / "torchrun"
    start = time.perf_counter()
    from bench.gpu_ddp_worker import main as reference_run
    with contextlib.redirect_stdout(sys.stderr):
        reference_run(str(single), plan.device)  # in this process: one rank, no process group
    walls = {"single": round(time.perf_counter() - start, 2)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", str(worker),
           str(multi), plan.device]
    returncode, stderr = run_process_group(cmd, env, timeout - (time.perf_counter() - start) - 5)  # before the alarm
    if returncode != 0:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"torchrun exited with {returncode}: {tail}")
    walls["torchrun"] = round(time.perf_counter() - start - walls["single"], 2)
    a = load_checkpoint(single / "last.pt")
    b = load_checkpoint(multi / "last.pt")
    diff = max(float((a["model"][k] - b["model"][k]).abs().max()) for k in a["model"])
    collective = json.loads((multi / "collective.json").read_text())
    return {"ok": collective["all_reduce_ok"] and diff < 1e-4 and b["world_size"] == procs,
            "processes": procs, **collective, "engine_world_size": b["world_size"], "steps": b["global_step"],
            "max_abs_weight_diff_vs_single": diff, "wall_s": walls}


def run_process_group(cmd: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """(exit status, stderr) of `cmd` in its own process group, all of which is killed when it overruns or this
    process is interrupted: torchrun's workers must not outlive the check."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=max(timeout, 1))
    except BaseException as e:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            raise PartTimeout(f"the subprocess did not finish within {timeout:.0f} s") from None
        raise
    return proc.returncode, stderr


# ---- part 3: joint SASV mode on the tiny synthetic corpus -----------------------------------------
def joint_run(plan: Plan, out_dir: Path) -> dict:
    from common.config import load_config
    from pipeline.recipes import sasv_task
    from synthetic import generate_corpus

    device = torch.device(plan.device)
    t0 = time.perf_counter()
    corpus = generate_corpus(out_dir / "corpus", preset="tiny")
    corpus_s = time.perf_counter() - t0
    overrides = [f"database={corpus.la}", f"output_dir={out_dir / 'sasv'}", "mode=joint", "backend.name=joint_oc",
                 "sampling.scheme=4class", f"device={plan.device}", f"train.device={plan.device}",
                 "asv.checkpoint=null", "cm.checkpoint=null", "allow_random_weights=true", "train.epochs=1",
                 "train.progress=false",
                 "det=false", *plan.joint_overrides]
    cfg = load_config(ROOT / "configs" / "quickstart.conf", overrides, sasv_task.SCHEMA)
    reset_peak_memory(device)
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the pipeline's own table; stdout stays JSON lines
        results = sasv_task.run(cfg)
    wall = time.perf_counter() - t1
    log = (out_dir / "sasv" / "joint_train" / "epoch_log.csv").read_text().splitlines()
    header, row = log[0].split(","), log[-1].split(",")
    train_loss = float(row[header.index("train_loss")])
    eers = {split: round(results[split]["sasv_eer"], 2) for split in ("dev", "eval")}
    return {"ok": math.isfinite(train_loss) and all(map(math.isfinite, eers.values())),
            "asv": cfg["asv"]["arch"], "cm": cfg["cm"]["arch"], "train_amp": cfg["train"]["amp"],
            "train_loss": round(train_loss, 4), "sasv_eer_untrained": eers, "corpus_s": round(corpus_s, 2),
            "joint_run_s": round(wall, 2), "peak_mem_gb": peak_memory_gb(device)}


# ---- part 4: inference throughput ------------------------------------------------------------------
def throughput(arch: str, plan: Plan) -> dict:
    device = torch.device(plan.device)
    torch.manual_seed(0)
    model = build_frontend(arch, plan)[0].to(device).eval()
    wave = torch.randn(plan.infer_batch, plan.infer_samples, device=device) * 0.1
    reset_peak_memory(device)
    row: dict[str, Any] = {"batch": plan.infer_batch, "samples": plan.infer_samples}
    outputs = {}
    for precision in ("fp32", "bf16"):
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())

        def infer(autocast=autocast) -> torch.Tensor:
            with torch.inference_mode(), autocast:
                out = model(wave)
            return (out[0] if isinstance(out, tuple) else out).float()

        for _ in range(plan.infer_warmup):  # cuDNN algorithm choice, allocator
            outputs[precision] = infer()
        times = []
        for _ in range(plan.infer_repeats):
            sync(device)
            t0 = time.perf_counter()
            infer()
            sync(device)
            times.append(time.perf_counter() - t0)
        row[f"{precision}_seg_per_s"] = round(plan.infer_batch / statistics.median(times), 2)
    ref, low = outputs["fp32"], outputs["bf16"]
    row["bf16_rel_diff"] = round(float((low - ref).norm() / ref.norm().clamp_min(1e-12)), 5)
    row["peak_mem_gb"] = peak_memory_gb(device)
    row["ok"] = bool(torch.isfinite(ref).all() and torch.isfinite(low).all())
    return row


# ---- the run ---------------------------------------------------------------------------------------
def environment(plan: Plan) -> dict:
    row: dict[str, Any] = {"part": "env", "device": plan.device, "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if plan.device == "cuda":
        row.update(cuda=torch.version.cuda, gpus=torch.cuda.device_count(), name=torch.cuda.get_device_name(0),
                   bf16=torch.cuda.is_bf16_supported(), nccl=".".join(map(str, torch.cuda.nccl.version())))
    return row


def jobs(plan: Plan, parts: list[str], work: Path) -> list[tuple[dict, Callable[[float], dict]]]:
    """(labels, fn(seconds left) -> figures) for every check of the selected parts, in order."""
    out: list[tuple[dict, Callable[[float], dict]]] = []
    if "amp" in parts:
        for arch in ("AASIST", "ECAPA-TDNN"):
            for amp in plan.amp_modes:
                out.append(({"part": "amp", "model": arch, "amp": amp},
                            lambda left, a=arch, m=amp: amp_train(a, m, plan, work / f"amp_{a}_{m}")))
    if "ddp" in parts:
        out.append(({"part": "ddp", "backend_wanted": "nccl" if plan.device == "cuda" else "gloo"},
                    lambda left: ddp_run(plan, work / "ddp", left)))
    if "joint" in parts:
        out.append(({"part": "joint"}, lambda left: joint_run(plan, work / "joint")))
    if "throughput" in parts:
        for arch in FRONTENDS:
            out.append(({"part": "throughput", "model": arch}, lambda left, a=arch: throughput(a, plan)))
    return out


def run(plan: Plan, parts: list[str], time_limit: float, emit: Callable[[dict], None]) -> list[dict]:
    """Runs every check, each under what is left of `time_limit`; returns the result rows."""
    start = time.perf_counter()
    rows = [environment(plan)]
    emit(rows[0])
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for labels, fn in jobs(plan, parts, Path(tmp)):
            left = time_limit - (time.perf_counter() - start)
            t0 = time.perf_counter()
            if left <= 1:
                row = {**labels, "ok": False, "skipped": "time limit reached before this check"}
            else:
                try:
                    with deadline(left):
                        row = {**labels, **fn(left)}
                except Exception as e:  # noqa: BLE001 -- one failing check must not stop the others
                    row = {**labels, "ok": False, "error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"}
            row["check_s"] = round(time.perf_counter() - t0, 2)
            if plan.device == "cuda":
                torch.cuda.empty_cache()
            rows.append(row)
            emit(row)
    return rows


def summary(rows: list[dict]) -> str:
    """A readable table of what ran, with its main figures."""
    lines = []
    for r in rows[1:]:
        name = " ".join(str(r[k]) for k in ("part", "model", "amp") if k in r)
        status = "ok" if r.get("ok") else "FAILED"
        if "error" in r or "skipped" in r:
            detail = r.get("error") or r.get("skipped")
        elif r["part"] == "amp":
            detail = (f"{r['steps']} steps of batch {r['batch']}, {r['step_s_median']} s/step, loss {r['loss_first']} "
                      f"-> {r['loss_last']}, GradScaler scale {r['grad_scaler_scale']}, peak {r['peak_mem_gb']} GB")
        elif r["part"] == "ddp":
            detail = (f"{r['processes']} process(es), {r['backend']}, all_reduce {r['all_reduce_sum']}, "
                      f"weights vs one process max diff {r['max_abs_weight_diff_vs_single']:.2g}")
        elif r["part"] == "joint":
            detail = (f"{r['asv']} + {r['cm']}, amp {r['train_amp']}, train loss {r['train_loss']}, "
                      f"{r['joint_run_s']} s (corpus {r['corpus_s']} s), untrained SASV-EER {r['sasv_eer_untrained']}")
        else:
            detail = (f"fp32 {r['fp32_seg_per_s']} seg/s, bf16 {r['bf16_seg_per_s']} seg/s "
                      f"(batch {r['batch']}), bf16 vs fp32 rel. diff {r['bf16_rel_diff']}")
        lines.append(f"{status:6} {name:28} {detail} [{r['check_s']} s]")
    failed = sum(not r.get("ok") for r in rows[1:])
    lines.append(f"{len(rows) - 1 - failed} of {len(rows) - 1} checks ok")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto: cuda when available, else say so and exit 0; cpu: the dry run (tiny sizes)")
    parser.add_argument("--time-limit", type=float, default=420.0, help="seconds for the whole run")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--json", help="also write the result rows (a JSON list) to this file")
    args = parser.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        print("gpu_check: no GPU is available (torch.cuda.is_available() is False); nothing run "
              "(--device cpu runs every part's code on the CPU with tiny sizes)")
        return 0
    plan = CPU_DRY_PLAN if args.device == "cpu" else GPU_PLAN
    rows = run(plan, args.parts, args.time_limit, lambda row: print(json.dumps(row), flush=True))
    print(summary(rows), flush=True)
    if args.json:
        from common.io import write_json
        write_json(args.json, rows)
    return 0 if all(r.get("ok") for r in rows[1:]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
