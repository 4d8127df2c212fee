"""Real-scale dry run: every SASV stage on a corpus with the ASVspoof 2019 LA counts, at several sizes.

    .venv/bin/python bench/scale.py --work /tmp/sasv_scale [--fractions 0.25 1] [--vox-fractions 0.25 1]
                                    [--vox-files] [--json scale.json]

For each fraction f of the real size (`synthetic.presets.scaled(get_preset("scale"), f)`: the real speakers,
f times the utterances and trials; f = 1 is 122,299 LA files, 102,579 eval trials) it generates the corpus
(skipped when complete), saves untrained small front-ends (ResNetSE34L at a quarter of its width and one block a stage, a narrow
LCNN; a dry run needs their cost, not their accuracy) and runs, each in its own process:

    save_asv_embeddings.py, save_cm_score.py                       every utterance of train/dev/eval
    save_sasv_score.py   for every score-level back-end of fusion.BACKENDS, and lr_fusion with AS-norm
    main.py              task sasv, joint_oc back-end, mode frozen, train.epochs=1
    ablate.py            a 9-system grid (score norm, enrolment form, CM score types, trained back-ends)

and `bench/scale_vox.py` on a VoxCeleb2-size train list at each of --vox-fractions. Per stage it reports the
wall time and the peak resident memory of the stage's process tree (`os.wait4`), and, last, the ratios
between the largest and the smallest size: a linear stage grows by the size ratio (time, and memory above
the ~0.5 GB that importing torch costs, shown as the `import` stage).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the packages, not this folder

# Small, fast front-ends: the dry run measures the pipeline around them, which does not depend on their size.
# The embeddings keep the sizes of the real systems (ECAPA-TDNN 192, AASIST 160): per-trial and per-utterance
# arrays downstream grow with them.
ASV = {"arch": "ResNetSE34L", "model": {"channels": [8, 8, 16, 32], "layers": [1, 1, 1, 1], "n_mels": 20,
                                        "embedding_dim": 192},
       "crop": {"policy": "first", "samples": 1600, "count": 1}}
CM = {"arch": "LCNN", "model": {"channels": [8, 8, 8, 8], "embedding_dim": 160},
      "crop": {"policy": "first", "samples": 2400, "count": 1}}        # LCNN's minimum input
# The joint-optimisation back-end at an eighth of its width: the published one costs ~5 ms per trial on this CPU
# (a Conv1d stack over 3 x 192 inputs), which is its arithmetic, not the pipeline's (docs/benchmarks.md).
SMALL_OC = {"conv_channels": [8, 16, 32], "hidden": [64, 32]}
SCORE_BACKENDS = ("asv_only", "cm_only", "score_sum", "product_rule", "lr_fusion")
TOP_N = 10  # AS-norm cohort: the 20 LA training speakers' mean embeddings; the default top_n (100) exceeds it
ABLATION = [
    {"name": "asv_only", "backend": "asv_only"},
    {"name": "asv_only_asnorm", "backend": "asv_only", "overrides": {"score_norm.method": "asnorm"}},
    {"name": "cm_only", "backend": "cm_only"},
    {"name": "score_sum_zscore", "backend": "score_sum", "options": {"normalise": "zscore"}},
    {"name": "product_rule_posterior", "backend": "product_rule", "cm_score": "posterior"},
    {"name": "lr_fusion", "backend": "lr_fusion"},
    {"name": "lr_fusion_concat", "backend": "lr_fusion", "overrides": {"enrolment": "concat"}},
    {"name": "baseline2", "backend": "baseline2", "overrides": {"sampling.scheme": "baseline2"}},
    {"name": "joint_oc", "backend": "joint_oc", "options": SMALL_OC, "overrides": {"sampling.scheme": "4class"}},
]


@dataclass
class Measure:
    stage: str
    fraction: float
    seconds: float        # wall time
    cpu_seconds: float    # user + system time of the stage's process tree: less sensitive to other jobs' load
    peak_mb: float        # peak resident memory of the largest process of the tree
    note: str = ""
    base_mb: float | None = None   # memory the step starts from when it is not a whole process (VoxCeleb steps)


def run_stage(stage: str, fraction: float, argv: Sequence[str], log: Path) -> Measure:
    """Runs one stage as a child process; its wall time and the peak RSS of its process tree (ru_maxrss of
    wait4: the largest of the child and the descendants it waited for). A failure stops the bench."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] f={fraction:g} {stage} ...", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(list(argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise SystemExit(f"stage {stage} (f={fraction:g}) failed with exit code {proc.returncode}; {log}:\n{tail}")
    m = Measure(stage, fraction, round(seconds, 1), round(usage.ru_utime + usage.ru_stime, 1),
                round(usage.ru_maxrss / 1024, 1))
    print(f"    {m.seconds:8.1f} s  cpu {m.cpu_seconds:8.1f} s  peak {m.peak_mb:8.1f} MB", flush=True)
    return m


def write_config(path: Path, cfg: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1) + "\n")   # JSON is YAML: the entry points read it as config


def base_config(corpus: Path, exp: Path, models: Path) -> dict:
    return {
        "task": "sasv", "mode": "frozen", "database": str(corpus / "LA"), "output_dir": str(exp / "stages"),
        "embeddings_dir": str(exp / "embeddings"), "splits": ["train", "dev", "eval"], "batch_size": 128,
        "asv": {**ASV, "checkpoint": str(models / "asv_untrained.pt")},
        "cm": {**CM, "checkpoint": str(models / "cm_untrained.pt")},
        "score_norm": {"method": "none", "top_n": TOP_N},
        "backend": {"name": "score_sum"},
        "sampling": {"scheme": "2class", "trials_per_epoch": 0},
        "train": {"epochs": 1, "batch_size": 256, "progress": False, "log_every_steps": 100,
                  "select_metric": "dev_sasv_eer", "device": "cpu"},
    }


def save_untrained_frontends(models: Path) -> None:
    """Random-weight checkpoints (seeded) of the dry run's front-ends, so every stage loads a checkpoint."""
    import torch

    import asv
    import cm
    from asv.checkpoint import save_asv_state
    from cm.checkpoint import save_cm_state

    torch.manual_seed(0)
    save_asv_state(models / "asv_untrained.pt", asv.build_model(ASV["arch"], **ASV["model"]), arch=ASV["arch"],
                   note="untrained: scale dry run")
    save_cm_state(models / "cm_untrained.pt", cm.build_model(CM["arch"], **CM["model"]), loss_name="WeightedCE",
                  note="untrained: scale dry run")


def generate(out: Path, fraction: float, workers: int) -> None:
    import synthetic
    from synthetic.presets import scaled

    preset = synthetic.get_preset("scale")
    synthetic.generate_corpus(out, preset if fraction == 1 else scaled(preset, fraction), seed=0, workers=workers,
                              progress=False)


def sasv_stages(fraction: float, work: Path, workers: int) -> list[Measure]:
    """Every stage at one size, each in its own process, on a fresh experiment folder."""
    import shutil

    from synthetic.layout import MANIFEST

    py = sys.executable
    tag = f"{fraction:g}"
    corpus, exp, logs = work / f"corpus_{tag}", work / f"exp_{tag}", work / f"logs_{tag}"
    if exp.exists():
        shutil.rmtree(exp)
    out: list[Measure] = []
    m = run_stage("generate corpus", fraction,
                  [py, __file__, "--generate", str(corpus), "--fraction", tag, "--workers", str(workers)],
                  logs / "generate.log")
    manifest = json.loads((corpus / MANIFEST).read_text())
    if m.seconds < 0.5 * manifest["seconds"]:
        m.note = f"complete already; made in {manifest['seconds']:.0f} s"
    out.append(m)

    cfg = base_config(corpus, exp, work / "models")
    conf = exp / "scale.conf"
    write_config(conf, cfg)
    out.append(run_stage("save_asv_embeddings", fraction, [py, "save_asv_embeddings.py", "--config", str(conf)],
                         logs / "asv.log"))
    out.append(run_stage("save_cm_score", fraction, [py, "save_cm_score.py", "--config", str(conf)], logs / "cm.log"))
    for name in SCORE_BACKENDS:
        out.append(run_stage(f"save_sasv_score {name}", fraction,
                             [py, "save_sasv_score.py", "--config", str(conf), f"backend.name={name}",
                              f"output_dir={exp / ('sasv_' + name)}"], logs / f"sasv_{name}.log"))
    out.append(run_stage("save_sasv_score lr_fusion AS-norm", fraction,
                         [py, "save_sasv_score.py", "--config", str(conf), "backend.name=lr_fusion",
                          "score_norm.method=asnorm", f"output_dir={exp / 'sasv_lr_fusion_asnorm'}"],
                         logs / "sasv_lr_fusion_asnorm.log"))
    out.append(run_stage("main.py joint_oc frozen, 1 epoch", fraction,
                         [py, "main.py", "--config", str(conf), "backend.name=joint_oc", "sampling.scheme=4class",
                          f"backend.options={json.dumps(SMALL_OC)}", f"output_dir={exp / 'joint_oc_frozen'}"],
                         logs / "main_joint_oc.log"))
    grid = dict(cfg, output_dir=str(exp / "ablation_base"),
                ablation={"dir": str(exp / "ablation"), "seeds": [0], "systems": ABLATION})
    write_config(exp / "ablation.conf", grid)
    out.append(run_stage(f"ablate.py, {len(ABLATION)} systems", fraction,
                         [py, "ablate.py", "--config", str(exp / "ablation.conf")], logs / "ablate.log"))
    return out


def vox_stages(fraction: float, work: Path, files: bool) -> list[Measure]:
    """bench/scale_vox.py at `fraction` of VoxCeleb2 dev's 1,092,009 lines (5,994 speakers at every size): one
    process, one row per step (train list to compact paths, dataset, sampler, one epoch of batch indices)."""
    from scale_vox import VOX2_LINES  # bench/ is on sys.path when this file runs as a script

    tag = f"{fraction:g}"
    result = work / f"vox_{tag}.json"
    argv = [sys.executable, str(ROOT / "bench" / "scale_vox.py"), "--work", str(work / f"vox_{tag}"),
            "--lines", str(round(VOX2_LINES * fraction)), "--json", str(result)] + (["--files"] if files else [])
    whole = run_stage("VoxCeleb2 list (writing it + the steps)", fraction, argv, work / f"logs_vox_{tag}.log")
    data = json.loads(result.read_text())
    out = []
    for name, step in data["steps"].items():
        out.append(Measure(f"VoxCeleb2 {name}", fraction, step["s"], step["cpu_s"], step["peak_mb"],
                           base_mb=data["baseline_peak_mb"]))
    whole.note = f"{data['lines']} lines written in {data['write_s']} s; steps measured in-process from " \
                 f"{data['baseline_peak_mb']:.0f} MB after imports"
    return [whole] + out


def import_baseline(work: Path) -> Measure:
    """What every stage pays before any work: the interpreter, torch and the toolkit's imports."""
    return run_stage("import (torch + toolkit)", 0.0,
                     [sys.executable, "-c", "import torch, pipeline.sasv_task, pipeline.ablation"],
                     work / "logs_import.log")


def _num(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 10 else f"{seconds:.2f}"


def report(measures: list[Measure], baseline: Measure) -> str:
    """A table: per stage the wall time, CPU time and peak RSS at each size, and the ratios between the largest
    and the smallest size (memory: above what the imports alone take)."""
    fractions = sorted({m.fraction for m in measures})
    stages = list(dict.fromkeys(m.stage for m in measures))
    by = {(m.stage, m.fraction): m for m in measures}
    head = ["stage"]
    for f in fractions:
        head += [f"f={f:g} wall s", f"f={f:g} cpu s", f"f={f:g} peak MB"]
    if len(fractions) > 1:
        head += ["wall x", "cpu x", "mem above import x"]
    rows = [head]
    for stage in stages:
        ms = [by.get((stage, f)) for f in fractions]
        row = [stage]
        for m in ms:
            row += [_num(m.seconds), _num(m.cpu_seconds), f"{m.peak_mb:.0f}"] if m else ["-"] * 3
        if len(fractions) > 1:
            lo, hi = ms[0], ms[-1]
            if lo and hi:
                base = lo.base_mb if lo.base_mb is not None else baseline.peak_mb
                above = (lo.peak_mb - base, hi.peak_mb - base)
                row += [f"{hi.seconds / lo.seconds:.2f}" if lo.seconds > 0 else "-",
                        f"{hi.cpu_seconds / lo.cpu_seconds:.2f}" if lo.cpu_seconds > 0 else "-",
                        f"{above[1] / above[0]:.2f}" if above[0] > 20 else "-"]
            else:
                row += ["-"] * 3
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(fractions) > 1:
        lines.append(f"size ratio x{fractions[-1] / fractions[0]:g}; a linear stage's time (and memory above the "
                     f"imports) grows by about that much")
    lines.append(f"import baseline: {baseline.seconds:.1f} s wall, {baseline.cpu_seconds:.1f} s cpu, "
                 f"{baseline.peak_mb:.0f} MB")
    notes = [f"{m.stage} (f={m.fraction:g}): {m.note}" for m in measures if m.note]
    return "\n".join(lines + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sasv_scale"), help="corpora, experiments, logs")
    parser.add_argument("--fractions", type=float, nargs="*", default=[0.25, 1.0], help="sizes of the SASV runs")
    parser.add_argument("--vox-fractions", type=float, nargs="*", default=[0.25, 1.0],
                        help="sizes of the VoxCeleb2 list runs (fractions of 1,092,009 lines)")
    parser.add_argument("--vox-files", action="store_true", help="create the VoxCeleb files (empty) and time the check")
    parser.add_argument("--workers", type=int, default=2, help="corpus rendering processes")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)   # internal: the generation stage
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.fraction, args.workers)
        return
    for f in args.fractions + args.vox_fractions:
        if not 0 < f <= 1:
            parser.error(f"fractions must be in (0, 1], got {f}")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "models").mkdir(exist_ok=True)
    save_untrained_frontends(args.work / "models")
    started = time.strftime("%Y-%m-%d %H:%M")
    baseline = import_baseline(args.work)
    measures: list[Measure] = []
    for f in sorted(args.fractions):
        measures += sasv_stages(f, args.work, args.workers)
    for f in sorted(args.vox_fractions):
        measures += vox_stages(f, args.work, args.vox_files)
    text = report(measures, baseline)
    print(f"\nstarted {started}, load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n{text}")
    if args.json:
        args.json.write_text(json.dumps({"started": started, "baseline": asdict(baseline),
                                         "stages": [asdict(m) for m in measures]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
