"""The embedding stages under torchrun against one process: throughput, peak memory per process, same outputs.

    .venv/bin/python bench/sharded_stages.py --work /tmp/sasv_shard [--fractions 0.05 0.2] [--ranks 2]
                                             [--layout la|asvspoof5] [--json sharded.json]

For each fraction f of the LA (or ASVspoof 5) `scale` preset (bench/scale.py's corpus, generated once, and its
untrained small front-ends, first-crop, batch 128) it runs save_asv_embeddings.py and save_cm_score.py over train,
dev and eval:

    1 process, 1 thread     the reference the sharded outputs are compared with (same thread count per process)
    1 process, 2 threads    what one process makes of the machine
    torchrun, N ranks       N processes of 1 thread (torchrun's default), each embedding its slice

each on a fresh experiment folder. Per run it reports the wall time, the files per second of the work (after the
imports; a job's work is its slowest rank's) and every process's peak resident memory above what it held after
its imports (and in all); then it checks that the sharded caches hold the reference's arrays and that the score
files are byte-identical, and stops if not. Per-rank memory at two sizes shows whether a rank's memory follows its
slice (linear: the work MB grows as f does).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))   # bench/scale.py's helpers (it puts the repository on the path itself)

import numpy as np  # noqa: E402
from scale import (  # noqa: E402
    LAYOUTS,
    base_config,
    folders,
    machine,
    measure_work,
    save_untrained_frontends,
    write_config,
)

STAGES = {"save_asv_embeddings": ("save_asv_embeddings.py", "asv"), "save_cm_score": ("save_cm_score.py", "cm")}
SPLITS = ("train", "dev", "eval")


def launch(kind: str, ranks: int, script: str, conf: Path, measures: Path, log: Path) -> dict:
    """One run of `script` (kind: "1x1", "1x2" threads, or "torchrun"), each process measuring its work into
    `measures`.rankN.json; returns the job's wall time and every process's figures."""
    for old in measures.parent.glob(f"{measures.name}.rank*.json"):
        old.unlink()
    inner = [str(BENCH / "sharded_stages.py"), "--measure", str(measures), script, "--config", str(conf)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    if kind == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *inner]
        env["OMP_NUM_THREADS"] = "1"
    else:
        cmd = [sys.executable, *inner]
        env["OMP_NUM_THREADS"] = kind.split("x")[1]
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise SystemExit(f"{script} ({kind}) failed with exit code {code}; {log}:\n{tail}")
    procs = [json.loads(p.read_text()) for p in sorted(measures.parent.glob(f"{measures.name}.rank*.json"))]
    return {"wall_s": round(wall, 1), "processes": procs}


def items_in(embeddings: Path, kind: str) -> int:
    """The utterances a stage embedded: the rows of its per-split caches."""
    total = 0
    for split in SPLITS:
        with np.load(embeddings / f"{kind}_{split}.npz") as z:
            total += len(z["ids"])
    return total


def same_outputs(reference: Path, sharded: Path, kind: str) -> None:
    """The sharded run's caches hold the reference's arrays (every array, the cache record included, with its dtype,
    in the same order) and its score files are byte-identical; SystemExit naming the first difference otherwise."""
    for path in sorted((reference / "embeddings").glob(f"{kind}_*.npz")):
        with np.load(path) as a, np.load(sharded / "embeddings" / path.name) as b:
            if a.files != b.files:
                raise SystemExit(f"{path.name}: arrays {a.files} (one process) vs {b.files} (sharded)")
            for name in a.files:
                if a[name].dtype != b[name].dtype or not np.array_equal(a[name], b[name]):
                    raise SystemExit(f"{path.name}: array {name} differs between one process and the sharded run")
    for path in sorted((reference / "scores").glob(f"{kind}_*.txt")):
        if path.read_bytes() != (sharded / "scores" / path.name).read_bytes():
            raise SystemExit(f"{path.name}: differs between one process and the sharded run")


def bench(fraction: float, work: Path, ranks: int, layout: str = "la") -> list[dict]:
    tag = f"{fraction:g}"
    corpus = folders(work, fraction, layout)[0]      # generated once (the generator reuses a complete corpus)
    subprocess.run([sys.executable, str(BENCH / "scale.py"), "--generate", str(corpus), "--fraction", tag,
                    "--workers", "2", "--layout", layout], cwd=ROOT, check=True)
    tag = tag if layout == "la" else f"{layout}_{tag}"
    rows = []
    runs = {"1x1": 1, "1x2": 1, "torchrun": ranks}
    for kind in runs:
        exp = work / f"exp_{tag}_{kind}"
        if exp.exists():
            shutil.rmtree(exp)
        cfg = base_config(corpus, exp, work / "models", layout)
        cfg.pop("embeddings_dir")                      # <exp>/stages/embeddings: one fresh folder per run
        conf = exp / "run.conf"
        write_config(conf, cfg)
        for stage, (script, prefix) in STAGES.items():
            print(f"[{time.strftime('%H:%M:%S')}] f={tag} {stage} {kind} ...", flush=True)
            result = launch(kind, runs[kind], script, conf, exp / f"{stage}.measure", exp / f"{stage}.log")
            out = Path(cfg["output_dir"])
            n = items_in(out / "embeddings", prefix)
            slowest = max(p["work_s"] for p in result["processes"])
            row = {"layout": layout, "fraction": fraction, "stage": stage,
                   "run": kind if kind != "torchrun" else f"torchrun x{ranks}",
                   "files": n, "wall_s": result["wall_s"], "work_s": slowest,
                   "files_per_s": round(n / slowest, 1),
                   "work_mb": [p["work_mb"] for p in result["processes"]],
                   "peak_mb": [round(p["held_after_imports_mb"] + p["work_mb"], 1) for p in result["processes"]],
                   "cpu_s": round(sum(p["work_cpu_s"] for p in result["processes"]), 1)}
            print(f"    {row['files']} files, wall {row['wall_s']} s, work {slowest} s ({row['files_per_s']} files/s), "
                  f"work MB per process {row['work_mb']}, peak MB {row['peak_mb']}", flush=True)
            rows.append(row)
    for stage, (_, prefix) in STAGES.items():
        same_outputs(work / f"exp_{tag}_1x1" / "stages", work / f"exp_{tag}_torchrun" / "stages", prefix)
        print(f"    {stage}: the {ranks}-rank caches and score files equal the single process's", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    head = ["f", "stage", "run", "files", "wall s", "work s", "files/s", "CPU s", "work MB per process",
            "peak MB per process"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([f"{r['fraction']:g}", r["stage"], r["run"], f"{r['files']:,}",
                                        f"{r['wall_s']:.1f}", f"{r['work_s']:.1f}", f"{r['files_per_s']:.0f}",
                                        f"{r['cpu_s']:.1f}", " / ".join(f"{m:.0f}" for m in r["work_mb"]),
                                        " / ".join(f"{m:.0f}" for m in r["peak_mb"])]) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":   # inside a run: one process (a rank) measures its work
        rank = os.environ.get("RANK", "0")
        sys.exit(measure_work(Path(f"{sys.argv[2]}.rank{rank}.json"), sys.argv[3], sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sasv_shard"), help="corpora, experiments, logs")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2], help="sizes of the LA scale preset")
    parser.add_argument("--ranks", type=int, default=2, help="torchrun processes")
    parser.add_argument("--layout", default="la", choices=LAYOUTS, help="the scale preset's layout")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "models").mkdir(exist_ok=True)
    save_untrained_frontends(args.work / "models")
    started = f"{time.strftime('%Y-%m-%d %H:%M')} (load average {os.getloadavg()[0]:.1f})"
    rows = [row for f in sorted(args.fractions) for row in bench(f, args.work, args.ranks, args.layout)]
    ended = f"{time.strftime('%H:%M')} (load average {os.getloadavg()[0]:.1f})"
    print(f"\n{machine()}\nstarted {started}, ended {ended}\n{table(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "started": started, "ended": ended, "rows": rows},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
