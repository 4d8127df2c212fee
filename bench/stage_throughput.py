"""Stage extraction throughput on LA-like utterances, against the model alone on the same inputs.

    python bench/stage_throughput.py [--models AASIST-L:first ECAPA-TDNN:full ResNetSE34L:full LCNN:full]
        [--files 32] [--workers 0 1 2] [--repeats 3] [--threads 2] [--batch 16] [--audio-dir DIR] [--json OUT]
        [--runtime torch onnx]

A model is `NAME:POLICY[:SAMPLES[:COUNT]]` (the config's `crop`); weights are untrained, which does not change
the arithmetic. The audio is written once (into a temporary folder unless `--audio-dir`): PCM_16 FLAC from the
synthetic voice, durations spread over a log-normal of median 3 s clipped to 1-13 s, plus one 1 s and one
13 s file (an assumed LA-like spread: the real corpus is not available here).

Modes, timed in turn (the order rotates every repeat), after an untimed warm-up of each on four files:
  alone      `embed_fn` alone on the model inputs already decoded, cropped and batched in memory, batched as
             the stage may legally batch them: `first`/`even` crops are equal-length, so `--batch` utterances
             per call; `full` utterances differ in length and no model here masks padding (instance norm,
             statistics pooling), so one utterance per call -- the only legal batching for distinct lengths,
             and the lengths here are all distinct;
  stage-wN   `pipeline.stages.extract.extract` on the files, as the stages call it, with N DataLoader workers;
  fixed8     bench/frontends.py's setting on the same audio: batches of 8 first-64600-sample crops (4.04 s),
             what the model reaches on fixed-length batches; for `full` models it is a different computation
             (other inputs), shown only to explain the gap between the batch-8 figure and real utterances.
`--runtime onnx` runs each model on ONNX Runtime (its graph exported first, as `runtime: onnx` does): `alone` is
then the runtime's own model throughput and the stage ratio what the stage keeps of it.
Throughput is in model-input audio seconds per second (for `full` the utterance itself, for `first` 4.04 s
per utterance) and utterances per second; each figure is the median of `--repeats` timed passes, and
`ratio` is stage / alone of those medians (`ratio_paired`: the median of the per-repeat ratios, which a
drift in machine load disturbs less). The process uses the system allocator, as the stage scripts do
(`--retain-freed-memory` applies common/allocator.py as main.py does).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from data.audio import SAMPLE_RATE, CropSpec, crop_first, load_audio  # noqa: E402
from pipeline.stages.extract import EmbedFn, convolution_path, extract, model_input

DEFAULT_MODELS = ("AASIST-L:first", "ECAPA-TDNN:full", "ResNetSE34L:full", "LCNN:full")
FIXED_SAMPLES, FIXED_BATCH = 64600, 8          # bench/frontends.py's defaults


def la_like_durations(n: int) -> np.ndarray:
    """`n` durations in seconds: stratified quantiles of a log-normal (median 3 s, sigma 0.5) clipped to 1-13 s,
    with the two ends forced to 1 s and 13 s; deterministic, so every run times the same audio."""
    from statistics import NormalDist
    z = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])
    d = np.clip(3.0 * np.exp(0.5 * z), 1.0, 13.0)
    if n >= 2:
        d[0], d[-1] = 1.0, 13.0
    rng = np.random.default_rng(0)
    return rng.permutation(d)  # stored in a mixed order, as protocol files list them


def write_audio_set(folder: Path, n: int) -> list[tuple[str, Path]]:
    """(utt, path) of `n` FLAC files of synthetic speech in `folder`, written unless already there."""
    from synthetic.voice import finish, plan_utterance, render, sample_voice
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i, seconds in enumerate(la_like_durations(n)):
        path = folder / f"LA_B_{i:05d}.flac"
        if not path.exists():
            rng = np.random.default_rng(i)
            voice = sample_voice(rng, "female" if i % 2 else "male")
            x = render(plan_utterance(rng, float(seconds), voice.rate), voice, rng)
            x = finish(x, rng, snr_db=30.0, peak=0.5)[: int(round(seconds * SAMPLE_RATE))]
            sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        items.append((path.stem, path))
    return items


@dataclass
class Frontend:
    name: str
    crop: CropSpec
    embed_fn: EmbedFn


def build_frontend(spec: str, runtime: str = "torch", onnx_dir: str | Path = ".") -> Frontend:
    """`NAME:POLICY[:SAMPLES[:COUNT]]` -> the model as the stages build it (pipeline.stages.frontends), untrained,
    on `runtime` (onnx: exported into `onnx_dir` first)."""
    import cm
    from common.config import load_config
    from pipeline.stages.frontends import (
        ASV_SECTION,
        CM_SECTION,
        asv_embed_fn,
        build_asv,
        build_cm,
        cm_embed_fn,
    )
    name, *crop = spec.split(":")
    is_cm = name in cm.MODELS
    base = load_config(None, [], CM_SECTION if is_cm else ASV_SECTION)    # the section's defaults
    default = base["crop"]
    policy = crop[0] if crop else default["policy"]
    samples = int(crop[1]) if len(crop) > 1 else (FIXED_SAMPLES if policy == "first" else default["samples"])
    count = int(crop[2]) if len(crop) > 2 else default["count"]
    section = {**base, "arch": name, "model": {}, "checkpoint": None,
               "crop": {"policy": policy, "samples": samples, "count": count}}
    torch.manual_seed(0)
    model = build_cm(section) if is_cm else build_asv(section)
    kind, scoring_crop = ("cm" if is_cm else "asv"), CropSpec.from_config(section["crop"])
    if runtime == "onnx":     # the graph the stages run with runtime: onnx (runtime/onnx_cache.py exports the same)
        from runtime.onnx_export import export_graph, frontend_graph
        from runtime.onnx_session import onnx_embed_fn, open_session
        path = Path(onnx_dir) / f"{name}.onnx"
        export_graph(frontend_graph(model, kind), path, name)
        return Frontend(f"{spec} (onnx)", scoring_crop, onnx_embed_fn(open_session(path), kind))
    return Frontend(spec, scoring_crop, cm_embed_fn(model) if is_cm else asv_embed_fn(model))


def model_batches(waves: list[np.ndarray], crop: CropSpec, batch: int) -> list[torch.Tensor]:
    """The model inputs of the stage, batched as the model may legally take them (see the module docstring)."""
    inputs = [torch.from_numpy(model_input(w, crop)) for w in waves]
    per_call = 1 if crop.policy == "full" else batch
    return [torch.cat(inputs[i:i + per_call]) for i in range(0, len(inputs), per_call)]


def fixed_batches(waves: list[np.ndarray]) -> list[torch.Tensor]:
    """bench/frontends.py's setting on the same audio: first 64600 samples (repeat-padded), 8 per batch."""
    crops = [torch.from_numpy(crop_first(w, FIXED_SAMPLES)) for w in waves]
    return [torch.stack(crops[i:i + FIXED_BATCH]) for i in range(0, len(crops), FIXED_BATCH)]


def run_model(embed_fn: EmbedFn, batches: list[torch.Tensor], crop: CropSpec) -> None:
    """`embed_fn` on each batch, its convolutions where the stage runs them for `crop` (`convolution_path`)."""
    with torch.inference_mode(), convolution_path(embed_fn, crop):
        for x in batches:
            embed_fn(x)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


Mode = tuple[Callable[[], object], float]   # (one timed pass, model-input seconds it covers)


def make_modes(fe: Frontend, items: list[tuple[str, Path]], waves: list[np.ndarray], workers: list[int],
               batch: int) -> dict[str, Mode]:
    """The timed passes over `items` (see the module docstring); model inputs are prepared here, untimed."""
    batches = model_batches(waves, fe.crop, batch)
    fixed = fixed_batches(waves)
    seconds = sum(int(b.numel()) for b in batches) / SAMPLE_RATE
    return {
        "alone": (lambda: run_model(fe.embed_fn, batches, fe.crop), seconds),
        **{f"stage-w{w}": ((lambda w=w: extract(items, fe.embed_fn, fe.crop, batch_size=batch, num_workers=w,
                                                 desc="bench")), seconds) for w in workers},
        "fixed8": (lambda: run_model(fe.embed_fn, fixed, CropSpec("first", FIXED_SAMPLES)),
                   sum(int(b.numel()) for b in fixed) / SAMPLE_RATE),
    }


def bench_frontend(fe: Frontend, items: list[tuple[str, Path]], workers: list[int], batch: int,
                   repeats: int) -> dict:
    waves = [load_audio(p) for _, p in items]
    for fn, _ in make_modes(fe, items[:4], waves[:4], workers, batch).values():
        fn()  # warm-up on a few files: lazy imports, oneDNN kernels, the heap, the worker start-up path
    modes = make_modes(fe, items, waves, workers, batch)
    names = list(modes)
    times: dict[str, list[float]] = {name: [] for name in names}
    load = [os.getloadavg()[0]]
    for r in range(repeats):  # interleaved, the order rotating, so a change in machine load hits every mode
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(modes[name][0]))
    load.append(os.getloadavg()[0])
    row = {"model": fe.name, "files": len(items), "audio_s": round(sum(len(w) for w in waves) / SAMPLE_RATE, 1),
           "input_s": round(modes["alone"][1], 1), "batch": batch, "load_avg_1min": [round(x, 2) for x in load]}
    for name in names:
        med = statistics.median(times[name])
        row[name] = {"input_s_per_s": round(modes[name][1] / med, 2), "utt_per_s": round(len(items) / med, 2),
                     "median_s": round(med, 3), "runs_s": [round(t, 3) for t in times[name]]}
    alone = times["alone"]
    for w in workers:
        stage = times[f"stage-w{w}"]
        row[f"stage-w{w}"]["ratio"] = round(statistics.median(alone) / statistics.median(stage), 3)
        paired = [a / s for a, s in zip(alone, stage, strict=True)]
        row[f"stage-w{w}"]["ratio_paired"] = round(statistics.median(paired), 3)
    return row


def table(rows: list[dict], workers: list[int]) -> str:
    """The rows as a Markdown table: throughput in model-input audio s/s (utterances/s), ratios to `alone`."""
    head = ["model:crop", "alone", *(f"stage, {w} workers (ratio)" for w in workers), "fixed8", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        def cell(mode: str, r: dict = r) -> str:
            m = r[mode]
            ratio = f" ({m['ratio']:.2f}, paired {m['ratio_paired']:.2f})" if "ratio" in m else ""
            return f"{m['input_s_per_s']:.1f} s/s, {m['utt_per_s']:.2f} utt/s{ratio}"
        load = "-".join(f"{x:.1f}" for x in r["load_avg_1min"])
        lines.append("| " + " | ".join([r["model"], cell("alone"), *(cell(f"stage-w{w}") for w in workers),
                                         cell("fixed8"), load]) + " |")
    return "\n".join(lines)


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
        name += ", AVX-512" if "avx512f" in flags else ", AVX2" if "avx2" in flags else ""
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="NAME:POLICY[:SAMPLES[:COUNT]]")
    parser.add_argument("--files", type=int, default=32, help="number of LA-like utterances")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="num_workers values of the stage")
    parser.add_argument("--batch", type=int, default=16, help="stage batch_size (the SASV default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per mode (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--audio-dir", help="keep the generated audio here (reused when present)")
    parser.add_argument("--retain-freed-memory", action="store_true", help="apply common/allocator.py, as main.py")
    parser.add_argument("--runtime", nargs="+", choices=("torch", "onnx"), default=["torch"],
                        help="what runs each model: PyTorch eager and/or ONNX Runtime (runtime: onnx)")
    parser.add_argument("--json", help="also write the results (a JSON list) to this file")
    args = parser.parse_args(argv)
    if args.files < 1 or args.repeats < 1:
        parser.error("--files and --repeats must be at least 1")
    if args.retain_freed_memory:
        from common.allocator import retain_freed_memory
        retain_freed_memory()
    torch.set_num_threads(args.threads)
    setting = {"threads": args.threads, "torch": torch.__version__, "machine": machine(),
               "date": time.strftime("%Y-%m-%d %H:%M"), "retain_freed_memory": args.retain_freed_memory}
    print(json.dumps(setting), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="stage_bench_") as tmp:
        items = write_audio_set(Path(args.audio_dir or tmp), args.files)
        for spec in args.models:
            for runtime in args.runtime:
                fe = build_frontend(spec, runtime, tmp)
                row = {**bench_frontend(fe, items, args.workers, args.batch, args.repeats), **setting,
                       "runtime": runtime}
                print(json.dumps(row), flush=True)
                results.append(row)
    print(table(results, args.workers), flush=True)
    if args.json:
        from common.io import atomic_write
        with atomic_write(args.json) as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
