"""Real-scale dry run: every SASV stage on a corpus with the ASVspoof 2019 LA (or ASVspoof 5) counts, at several sizes.

    .venv/bin/python bench/scale.py --work /tmp/sasv_scale [--fractions 0.02 0.25 1]
                                    [--vox-fractions 0.05 0.25 1] [--vox-files] [--json scale.json]
                                    [--only-embeddings] [--layout la|asvspoof5]

For each fraction f of the real size (`synthetic.presets.scaled(get_preset("scale"), f)`: the real speakers,
f times the utterances and trials; f = 1 is 122,299 LA files, 102,579 eval trials) it generates the corpus
(skipped when complete), saves untrained small front-ends (ResNetSE34L at a quarter of its width with one
block a stage, a narrow LCNN; a dry run needs their cost, not their accuracy) and runs, each in its own
process:

    save_asv_embeddings.py, save_cm_score.py                       every utterance of train/dev/eval
    save_sasv_score.py   for every score-level back-end of fusion.BACKENDS, and lr_fusion with AS-norm
    main.py              task sasv, joint_oc back-end, mode frozen, train.epochs=1
    ablate.py            a 9-system grid (score norm, enrolment form, CM score types, trained back-ends)

and `bench/scale_vox.py` on a VoxCeleb2-size train list at each of --vox-fractions. Per stage it reports the
wall time, the CPU time and the peak resident memory of the stage's process tree (`os.wait4`), and how each
grows with the size: above the smallest size (which cancels imports and other fixed costs), from the
second smallest to the largest, next to what a linear stage gives. `--report a.json b.json` prints the table
of earlier runs together (e.g. one size per run). `--only-embeddings` stops after the two per-file stages
(save_asv_embeddings, save_cm_score): the ones to re-measure on a quiet machine.

`--layout asvspoof5` does the same on the ASVspoof 5 layout (`synthetic.asvspoof5.scaled(PRESETS["scale"], f)`: the
real speakers and enrolment lists, f times the utterances, eval's coded copies and the Track 2 trials; f = 1 is
1,006,363 files, 282,456 dev and 834,536 eval trials) with the stages that apply to it: the two embedding stages
(train, dev, eval), save_sasv_score.py with every score-level back-end (and lr_fusion with AS-norm) on Track 2
(`data.format: asvspoof5`, the Track 2 enrolment lists), main.py task sasv with the joint_oc back-end frozen for one
epoch, and main.py task cm, mode evaluate, scoring eval with the saved untrained CM (Track 1 metrics per codec
condition). No VoxCeleb rows unless --vox-fractions asks for them. `--audio-pool N` (asvspoof5) generates each size
with N distinct recordings (and N coded copies) a split folder, every other file a hard link to one of them
(synthetic/asvspoof5.py): the lists, names, counts and everything that flows between stages are the full size's, so
memory is what it would be, but the audio is read from fewer distinct files (more page-cache hits) and the
embeddings repeat, so times are lower bounds for per-file reading; the generation row is the pool's, not the
corpus's. When the largest size is below 1, the table also
extrapolates each stage's work and its process's peak to f = 1 from the two largest sizes (a straight line).
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
    seconds: float        # wall time of the whole process
    cpu_seconds: float    # user + system time of the stage's process tree
    peak_mb: float        # peak resident memory of the largest process of the tree (what a user sees)
    work_seconds: float   # wall time after the imports: the stage's own work
    work_cpu: float       # its CPU time (with child processes): steadier than wall time when others load the CPUs
    work_mb: float        # its peak resident memory above what the process held after the imports
    note: str = ""


def run_stage(stage: str, fraction: float, argv: Sequence[str], log: Path) -> Measure:
    """Runs one stage (`argv`: python, a script, its arguments) in a child process that first imports the
    toolkit, then runs the script in-process and records the work alone (`measure_work`); the child's wall
    time, CPU time and tree peak RSS come from wait4 (ru_maxrss: the largest of the child and the descendants
    it waited for). A failure stops the bench with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    work = log.with_suffix(".work.json")
    print(f"[{time.strftime('%H:%M:%S')}] f={fraction:g} {stage} ...", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([argv[0], __file__, "--measure", str(work), *argv[1:]], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise SystemExit(f"stage {stage} (f={fraction:g}) failed with exit code {proc.returncode}; {log}:\n{tail}")
    w = json.loads(work.read_text())
    m = Measure(stage, fraction, round(seconds, 1), round(usage.ru_utime + usage.ru_stime, 1),
                round(usage.ru_maxrss / 1024, 1), w["work_s"], w["work_cpu_s"], w["work_mb"])
    print(f"    {m.seconds:8.1f} s  peak {m.peak_mb:7.1f} MB | work {m.work_seconds:8.1f} s, cpu {m.work_cpu:8.1f} s, "
          f"{m.work_mb:7.1f} MB", flush=True)
    return m


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure_work(out: Path, script: str, args: Sequence[str]) -> int:
    """Imports what every stage imports, then resets this process's peak-RSS mark (Linux: /proc/self/clear_refs)
    and runs `script` as __main__; writes the work's wall and CPU seconds and its peak RSS above the memory
    held after the imports. Import cost and its transient peak are the same at every size and would hide
    how the work grows."""
    import runpy

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import torch  # noqa: F401
    from scale_vox import peak_mb, reset_peak, rss_mb  # bench/ is on sys.path when this file runs

    import pipeline.recipes.sasv_task  # noqa: F401
    import pipeline.tools.ablation.runner  # noqa: F401
    import synthetic  # noqa: F401

    held = rss_mb()
    reset_peak()
    start, cpu = time.perf_counter(), _cpu_seconds()
    sys.argv = [script, *args]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out.write_text(json.dumps({"work_s": round(time.perf_counter() - start, 2),
                               "work_cpu_s": round(_cpu_seconds() - cpu, 2),
                               "work_mb": round(peak_mb() - held, 1),
                               "held_after_imports_mb": round(held, 1)}))
    return code


def write_config(path: Path, cfg: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1) + "\n")   # JSON is YAML: the entry points read it as config


def base_config(corpus: Path, exp: Path, models: Path, layout: str = "la") -> dict:
    """The task sasv config every stage of a size starts from: the corpus's database folder, the untrained
    front-ends, score_sum, one epoch; ASVspoof 5 adds its format (enrolment: the Track 2 lists, the default)."""
    cfg = {
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
    if layout == "asvspoof5":
        from synthetic.asvspoof5 import TOP

        cfg.update(database=str(corpus / TOP), data={"format": "asvspoof5"})
    return cfg


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


LAYOUTS = ("la", "asvspoof5")


def generate(out: Path, fraction: float, workers: int, layout: str = "la", audio_pool: int = 0) -> None:
    """The `scale` preset of `layout` at `fraction` of its size, written to `out` unless complete there already
    (ASVspoof 5 with `audio_pool` distinct recordings a folder when > 0: synthetic/asvspoof5.py)."""
    if layout == "asvspoof5":
        import synthetic.asvspoof5 as a5

        preset = a5.get_preset("scale")
        a5.generate(out, preset if fraction == 1 else a5.scaled(preset, fraction), seed=0, workers=workers,
                    progress=False, audio_pool=audio_pool)
        return
    import synthetic
    from synthetic.presets import scaled

    preset = synthetic.get_preset("scale")
    synthetic.generate_corpus(out, preset if fraction == 1 else scaled(preset, fraction), seed=0, workers=workers,
                              progress=False)


def folders(work: Path, fraction: float, layout: str = "la", audio_pool: int = 0) -> tuple[Path, Path, Path]:
    """The corpus, experiment and log folders of one size (LA's names as before; ASVspoof 5's carry the layout, and
    the pool when there is one)."""
    tag = f"{fraction:g}" if layout == "la" else f"{layout}_{fraction:g}"
    tag += f"_pool{audio_pool}" if audio_pool else ""
    return work / f"corpus_{tag}", work / f"exp_{tag}", work / f"logs_{tag}"


def generation_stage(fraction: float, corpus: Path, logs: Path, workers: int, layout: str = "la",
                     audio_pool: int = 0) -> Measure:
    """The corpus made (or found complete) in its own process; the note gives its file counts and, when it was
    complete already, how long making it took."""
    from synthetic.layout import MANIFEST

    m = run_stage("generate corpus", fraction,
                  [sys.executable, __file__, "--generate", str(corpus), "--fraction", f"{fraction:g}", "--workers",
                   str(workers), "--layout", layout, "--audio-pool", str(audio_pool)], logs / "generate.log")
    manifest = json.loads((corpus / MANIFEST).read_text())
    counts = manifest.get("counts", {})
    notes = [f"{sum(counts.values()):,} files ({' / '.join(f'{k} {v:,}' for k, v in counts.items())})"] \
        if counts and layout != "la" else []
    if audio_pool:
        notes.append(f"{manifest['distinct_recordings']:,} distinct recordings, the rest hard links")
    if m.seconds < 0.5 * manifest["seconds"]:
        notes.append(f"complete already; made in {manifest['seconds']:.0f} s")
    m.note = "; ".join(notes)
    return m


def embedding_stages(fraction: float, conf: Path, logs: Path) -> list[Measure]:
    """save_asv_embeddings.py and save_cm_score.py over the config's splits, each in its own process."""
    py = sys.executable
    return [run_stage("save_asv_embeddings", fraction, [py, "save_asv_embeddings.py", "--config", str(conf)],
                      logs / "asv.log"),
            run_stage("save_cm_score", fraction, [py, "save_cm_score.py", "--config", str(conf)], logs / "cm.log")]


def score_stages(fraction: float, conf: Path, exp: Path, logs: Path) -> list[Measure]:
    """save_sasv_score.py with every score-level back-end, lr_fusion with AS-norm, and main.py's frozen joint_oc
    back-end (one epoch on the cached embeddings), each in its own process and output folder."""
    py = sys.executable
    out = []
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
    return out


def common_stages(fraction: float, work: Path, workers: int, only_embeddings: bool,
                  layout: str, audio_pool: int = 0) -> tuple[list[Measure], dict, Path, Path]:
    """What both layouts run first, on a fresh experiment folder: the corpus generated (reused when complete), the
    embedding stages and, unless `only_embeddings`, the score-level SASV stages; (measures, config, exp, logs)."""
    import shutil

    corpus, exp, logs = folders(work, fraction, layout, audio_pool)
    if exp.exists():
        shutil.rmtree(exp)
    out = [generation_stage(fraction, corpus, logs, workers, layout, audio_pool)]
    cfg = base_config(corpus, exp, work / "models", layout)
    conf = exp / "scale.conf"
    write_config(conf, cfg)
    out += embedding_stages(fraction, conf, logs)
    if not only_embeddings:
        out += score_stages(fraction, conf, exp, logs)
    return out, cfg, exp, logs


def sasv_stages(fraction: float, work: Path, workers: int, only_embeddings: bool = False) -> list[Measure]:
    """Every stage at one size (or the two embedding stages), each in its own process, on a fresh experiment
    folder."""
    out, cfg, exp, logs = common_stages(fraction, work, workers, only_embeddings, "la")
    if only_embeddings:
        return out
    grid = dict(cfg, output_dir=str(exp / "ablation_base"),
                ablation={"dir": str(exp / "ablation"), "seeds": [0], "systems": ABLATION})
    write_config(exp / "ablation.conf", grid)
    out.append(run_stage(f"ablate.py, {len(ABLATION)} systems", fraction,
                         [sys.executable, "ablate.py", "--config", str(exp / "ablation.conf")], logs / "ablate.log"))
    return out


def asvspoof5_stages(fraction: float, work: Path, workers: int, only_embeddings: bool = False,
                     audio_pool: int = 0) -> list[Measure]:
    """The stages that apply to ASVspoof 5 at one size, each in its own process, on a fresh experiment folder: the
    embedding stages (train, dev, eval), the Track 2 SASV stages (score-level back-ends, joint_oc frozen) and the
    CM scored on eval by main.py task cm, mode evaluate (the Track 1 report, per codec condition)."""
    out, cfg, exp, logs = common_stages(fraction, work, workers, only_embeddings, "asvspoof5", audio_pool)
    if only_embeddings:
        return out
    cm_conf = exp / "cm_evaluate.conf"
    write_config(cm_conf, {"task": "cm", "mode": "evaluate", "database": cfg["database"], "data": cfg["data"],
                           "output_dir": str(exp / "cm_evaluate"), "cm": cfg["cm"], "eval_splits": ["eval"],
                           "train": {"device": "cpu", "progress": False, "batch_size": cfg["batch_size"]}})
    out.append(run_stage("main.py cm evaluate (eval)", fraction, [sys.executable, "main.py", "--config", str(cm_conf)],
                         logs / "main_cm_evaluate.log"))
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
    for name, step in data["steps"].items():   # in-process: each step's own time, the peak above the imports so far
        out.append(Measure(f"VoxCeleb2 {name}", fraction, step["s"], step["cpu_s"], step["peak_mb"], step["s"],
                           step["cpu_s"], step["work_mb"]))
    whole.note = f"{data['lines']} lines written in {data['write_s']} s"
    return [whole] + out


def import_baseline(work: Path) -> Measure:
    """What every stage pays before any work: the interpreter, torch and the toolkit's imports."""
    empty = work / "empty_stage.py"
    empty.write_text('"""No work: the bench measures the imports every stage pays."""\n')
    return run_stage("import (torch + toolkit)", 0.0, [sys.executable, str(empty)], work / "logs_import.log")


def _num(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 10 else f"{seconds:.2f}"


def report(measures: list[Measure], baseline: Measure) -> str:
    """Tables (one per set of sizes): per stage and size the process's wall time and peak RSS, and its work
    alone (after the imports: wall and CPU seconds, peak MB above the memory held after the imports); then
    how the work grows: (X_max - X_min) / (X_mid - X_min), X_mid at the second smallest size, next to
    (f_max - f_min) / (f_mid - f_min), what a linear stage gives (two sizes: X_max / X_min and f_max / f_min).
    Subtracting the smallest size cancels what the work costs whatever the size (model building, plots)."""
    by_sizes: dict[tuple[float, ...], list[str]] = {}
    for stage in dict.fromkeys(m.stage for m in measures):
        sizes = tuple(sorted(m.fraction for m in measures if m.stage == stage))
        by_sizes.setdefault(sizes, []).append(stage)
    by = {(m.stage, m.fraction): m for m in measures}
    out = []
    for fractions, stages in by_sizes.items():
        head = ["stage"]
        for f in fractions:
            head += [f"f={f:g} wall s", "peak MB", "work s", "cpu s", "work MB"]
        if len(fractions) > 1:
            head += ["growth: s", "cpu", "MB", "linear"]
        extrapolate = len(fractions) > 1 and fractions[-1] < 1
        if extrapolate:
            head += ["f=1: work s", "cpu s", "peak MB"]
        rows = [head]
        for stage in stages:
            ms = [by[stage, f] for f in fractions]
            row = [stage]
            for m in ms:
                row += [_num(m.seconds), f"{m.peak_mb:.0f}", _num(m.work_seconds), _num(m.work_cpu), f"{m.work_mb:.0f}"]
            if len(fractions) > 1:
                row += _growth(ms) + [f"{_linear(fractions):.2f}"]
            if extrapolate:
                row += _at_full_size(ms)
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        out += lines + [""]
    out.append("work: after the imports; growth: (work at the largest size - at the smallest) / (at the second "
               "smallest - at the smallest), '-' where an increment is under 0.5 s or 10 MB")
    if any(len(fs) > 1 and fs[-1] < 1 for fs in by_sizes):
        out.append("f=1: extrapolated, not measured: the straight line through the two largest sizes (work seconds, "
                   "CPU seconds; the process's peak grows as its work MB does), never below the largest size's")
    out.append(f"imports alone (an empty stage): {baseline.seconds:.1f} s wall, {baseline.peak_mb:.0f} MB peak")
    out += [f"{m.stage} (f={m.fraction:g}): {m.note}" for m in measures if m.note]
    return "\n".join(out)


def _linear(fractions: Sequence[float]) -> float:
    if len(fractions) > 2:
        return (fractions[-1] - fractions[0]) / (fractions[1] - fractions[0])
    return fractions[-1] / fractions[0]


def _growth(ms: list[Measure]) -> list[str]:
    """How one stage's work time, CPU time and memory grow (see `report`)."""
    if len(ms) > 2:
        lo, mid, hi = ms[0], ms[1], ms[-1]
    else:
        lo, (mid, hi) = None, ms
    cells = []
    for key, floor in (("work_seconds", 0.5), ("work_cpu", 0.5), ("work_mb", 10.0)):
        base = getattr(lo, key) if lo is not None else 0.0
        a, b = getattr(hi, key) - base, getattr(mid, key) - base
        cells.append(f"{a / b:.2f}" if b >= floor else "-")
    return cells


def _at_full_size(ms: list[Measure]) -> list[str]:
    """A stage's work seconds, CPU seconds and process peak MB at f = 1 on the straight line through its two
    largest sizes: what a stage linear in the size would take there (an estimate, not a measurement)."""
    mid, hi = ms[-2], ms[-1]
    k = (1 - hi.fraction) / (hi.fraction - mid.fraction)

    def line(key: str) -> float:
        a, b = getattr(mid, key), getattr(hi, key)
        return b + max(0.0, k * (b - a))

    return [_num(line("work_seconds")), _num(line("work_cpu")),
            f"{hi.peak_mb + max(0.0, k * (hi.work_mb - mid.work_mb)):.0f}"]


def load_measures(paths: Sequence[Path]) -> tuple[list[Measure], Measure]:
    """Measures of earlier runs (--json files), e.g. one run per size on the same machine and day; the import
    baseline of the first."""
    measures: dict[tuple[str, float], Measure] = {}
    baseline = None
    for path in paths:   # a later file's measure of the same stage and size replaces an earlier one
        data = json.loads(path.read_text())
        measures.update({(m["stage"], m["fraction"]): Measure(**m) for m in data["stages"]})
        baseline = baseline or Measure(**data["baseline"])
    return list(measures.values()), baseline


def machine() -> str:
    """CPU model and count, memory, torch version: the line that goes with the figures."""
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} x {model}, {memory:.0f} GB RAM, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sasv_scale"), help="corpora, experiments, logs")
    parser.add_argument("--fractions", type=float, nargs="*", default=[0.02, 0.25, 1.0],
                        help="sizes of the SASV runs")
    parser.add_argument("--vox-fractions", type=float, nargs="*", default=None,
                        help="sizes of the VoxCeleb2 list runs (fractions of 1,092,009 lines; default 0.05 0.25 1 "
                             "with --layout la, none with asvspoof5)")
    parser.add_argument("--vox-files", action="store_true", help="create the VoxCeleb files (empty) and time the check")
    parser.add_argument("--workers", type=int, default=2, help="corpus rendering processes")
    parser.add_argument("--layout", default="la", choices=LAYOUTS,
                        help="la: the ASVspoof 2019 LA counts (and the ablation grid); asvspoof5: the ASVspoof 5 ones")
    parser.add_argument("--audio-pool", type=int, default=0,
                        help="asvspoof5: render this many distinct recordings a folder, every other file a hard link "
                             "(full counts in minutes; times are then lower bounds: see the docstring)")
    parser.add_argument("--only-embeddings", action="store_true",
                        help="run only save_asv_embeddings and save_cm_score at each size")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--report", type=Path, nargs="+", help="only print the table of earlier --json files")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)   # internal: the generation stage
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)    # internal: see measure_work
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":   # the stage's own arguments follow: no parsing here
        sys.exit(measure_work(Path(sys.argv[2]), sys.argv[3], sys.argv[4:]))
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.fraction, args.workers, args.layout, args.audio_pool)
        return
    if args.report:
        print(report(*load_measures(args.report)))
        return
    if args.vox_fractions is None:
        args.vox_fractions = [0.05, 0.25, 1.0] if args.layout == "la" else []
    if args.audio_pool and args.layout != "asvspoof5":
        parser.error("--audio-pool applies to --layout asvspoof5 only")
    if args.audio_pool < 0:
        parser.error(f"--audio-pool must be >= 0, got {args.audio_pool}")
    for f in args.fractions + args.vox_fractions:
        if not 0 < f <= 1:
            parser.error(f"fractions must be in (0, 1], got {f}")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "models").mkdir(exist_ok=True)
    save_untrained_frontends(args.work / "models")
    started = f"{time.strftime('%Y-%m-%d %H:%M')} (load average {os.getloadavg()[0]:.1f})"
    baseline = import_baseline(args.work)
    measures: list[Measure] = []
    for f in sorted(args.fractions):
        if args.layout == "asvspoof5":
            measures += asvspoof5_stages(f, args.work, args.workers, args.only_embeddings, args.audio_pool)
        else:
            measures += sasv_stages(f, args.work, args.workers, args.only_embeddings)
    for f in sorted(args.vox_fractions):
        measures += vox_stages(f, args.work, args.vox_files)
    text = report(measures, baseline)
    print(f"\n{machine()}\nstarted {started}, ended {time.strftime('%H:%M')} (load average "
          f"{os.getloadavg()[0]:.1f})\n{text}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "started": started, "layout": args.layout,
                                         "audio_pool": args.audio_pool,
                                         "baseline": asdict(baseline),
                                         "stages": [asdict(m) for m in measures]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
