"""Whole-utterance inference (crop policy `full`): oneDNN convolutions against ATen's own, utterance by utterance.

    python bench/variable_length.py [--models ECAPA-TDNN LCNN ...] [--utterances 24] [--rounds 3] [--threads 2]

The stages score `full` crops one utterance at a time, and no two utterances have the same length. oneDNN builds
(JIT-compiles) a convolution primitive for every new input shape, so a model that a fixed-shape benchmark
(bench/frontends.py, warmed up on one shape) shows fast can spend most of a real stage building primitives. This
bench takes bench/stage_throughput.py's LA-like durations (log-normal, median 3 s, 1-13 s), each moved by up to
0.1 s at random every round so that no shape repeats, and times each model on them twice per round, interleaved:
with oneDNN (`torch.backends.mkldnn` enabled, PyTorch's default) and without (ATen's im2col + BLAS convolutions).
Prints one JSON line per model: audio seconds per second on each path (median over rounds), `speedup` (median of the
per-round ratios native / oneDNN throughput) and `max_rel_diff` (largest |a - b| / max |a| between the two paths'
outputs). Models are built untrained (the speed does not depend on the weights); `--fixed` times every utterance
at the median length instead, the shape that fixed-crop benchmarks see.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.frontends import build  # noqa: E402
from bench.stage_throughput import la_like_durations  # noqa: E402
from data.audio import SAMPLE_RATE  # noqa: E402
from pipeline.stages.extract import onednn_enabled  # noqa: E402

MODELS = ("ECAPA-TDNN", "ECAPA-TDNN-C1024", "ResNetSE34V2", "ResNetSE34L", "SKA-TDNN", "MFA-Conformer",
          "LCNN", "LCNN-LFCC-LPS", "LFCC-LCNN-ASVspoof2021", "AASIST", "AASIST-L")


def draw_lengths(rng: np.random.Generator, n: int, fixed: bool) -> list[int]:
    """`n` utterance lengths in samples: the LA-like durations, each moved by a random 0-0.1 s (new shapes)."""
    if fixed:
        return [3 * SAMPLE_RATE] * n
    jitter = rng.integers(0, SAMPLE_RATE // 10, n)
    return [int(s * SAMPLE_RATE) + int(j) for s, j in zip(la_like_durations(n), jitter, strict=True)]


def first_output(out) -> torch.Tensor:
    return (out[0] if isinstance(out, (tuple, list)) else out).float()


def timed_pass(model: torch.nn.Module, waves: list[torch.Tensor], onednn: bool) -> tuple[float, list[torch.Tensor]]:
    """Seconds to run every wave through the model one by one, and the outputs."""
    outputs = []
    with torch.inference_mode(), onednn_enabled(onednn):
        start = time.perf_counter()
        for wave in waves:
            outputs.append(first_output(model(wave)))
        return time.perf_counter() - start, outputs


def bench_model(name: str, utterances: int, rounds: int, seed: int, fixed: bool) -> dict:
    torch.manual_seed(seed)
    model = build(name)[0].eval()
    rng = np.random.default_rng(seed)
    warm = [torch.randn(1, n) for n in draw_lengths(rng, 2, fixed)]
    for onednn in (True, False):
        timed_pass(model, warm, onednn)
    speed = {"onednn": [], "native": []}
    ratios, diff = [], 0.0
    for r in range(rounds):
        lengths = draw_lengths(rng, utterances, fixed)
        waves = [torch.randn(1, n) for n in lengths]
        audio_s = sum(lengths) / SAMPLE_RATE
        order = (True, False) if r % 2 == 0 else (False, True)    # neither path always goes first
        seconds, outs = {}, {}
        for onednn in order:
            seconds[onednn], outs[onednn] = timed_pass(model, waves, onednn)
        speed["onednn"].append(audio_s / seconds[True])
        speed["native"].append(audio_s / seconds[False])
        ratios.append(seconds[True] / seconds[False])
        for a, b in zip(outs[True], outs[False], strict=True):
            diff = max(diff, float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)))
    return {"model": name, "onednn_audio_s_per_s": round(statistics.median(speed["onednn"]), 2),
            "native_audio_s_per_s": round(statistics.median(speed["native"]), 2),
            "speedup": round(statistics.median(ratios), 2), "max_rel_diff": float(f"{diff:.2e}"),
            "rounds_speedup": [round(x, 2) for x in ratios], "utterances": utterances,
            "lengths": "fixed 3 s" if fixed else "LA-like 1-13 s"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--utterances", type=int, default=24, help="utterances per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fixed", action="store_true", help="every utterance 3 s long (one shape)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.models:
        print(json.dumps(bench_model(name, args.utterances, args.rounds, args.seed, args.fixed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
