"""The end-to-end demo on the embedded synthetic corpus (the README's first command).

    python demo.py [--out exp/quickstart] [--corpus corpus/default] [--preset default]
    python demo.py --layout asvspoof5 [--out exp/quickstart_asvspoof5] [--corpus corpus/asvspoof5]

1. generates the synthetic corpus (ASVspoof 2019 LA + VoxCeleb layouts);
2. pre-trains the ASV front-end on the VoxCeleb part (configs/quickstart_asv.conf) and adapts it to the LA
   voices on LA train bona fide speech (configs/quickstart_asv_la.conf);
3. trains the CM front-end, an LCNN on LFCC + log power spectrum, on LA train (configs/quickstart_cm.conf);
4. dumps embeddings and scores once (the stage code), then scores the SASV trials with single systems,
   score-level fusions, frozen embedding back-ends and one joint fine-tune (configs/quickstart.conf);
5. trains the single SASV embedding (the SASV2 recipe, task sasv_e2e): stage 1 is the speaker model of step 2a,
   stage 2 adds vocoded copies of the VoxCeleb part as a spoof class (copy_synthesis.py), stage 3 fine-tunes on
   LA train (configs/quickstart_sasv2_stage{2,3}.conf), scored by one cosine;
6. prints a table like Table 2 of the SASV 2022 evaluation plan and draws one DET plot of every system;
   <out>/results.json holds every system's metrics (`systems`) and what made them (`provenance`).

`--layout asvspoof5` runs the same pipeline on the synthetic ASVspoof 5 layout (Track 1 CM, Track 2 SASV with
list enrolment and coded eval copies): the ASV front-end trained on its train bona fide speakers, the CM on its
train, the score and embedding back-ends on Track 2, and two tables: the CM's Track 1 metrics (minDCF, actDCF,
Cllr, EER; per codec condition on eval) and each system's Track 2 metrics (min a-DCF, min t-DCF, t-EER).

Within one run, a front-end's output on an utterance is computed once: a later step that scores the same audio with
the same weights (the SASV stage re-scoring the CM's dev and eval, the joint run's starting point) reuses it
(pipeline/stages/cache.py, `remembering_outputs`); the numbers are the ones a new computation gives.

Every step skips work that is already done (its results.json made by the same config, checkpoints and
protocols), so a rerun (or a run after Ctrl-C) continues where it stopped; a step whose inputs changed (another
preset, a retrained front-end) is redone, its earlier output moved to `replaced-<time>/`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from common.allocator import retain_freed_memory
from common.cli import add_wait_flag, run_main
from common.config import ConfigError, dump_config, load_config
from common.folders import check_output_path, move_aside
from common.locking import hold_folders
from common.provenance import provenance
from common.runs import CONFIG, is_current, mark_started, resumable, write_results

if TYPE_CHECKING:
    from pipeline.stages.cache import OutputMemo

# the quickstart recipes beside this file (in a checkout its root, installed the package `sasv`): any working folder
CONFIGS = Path(__file__).resolve().parent / "configs"
# (row label, overrides of configs/quickstart.conf) in the order of Table 2 of the SASV 2022 evaluation plan
SYSTEMS: list[tuple[str, list[str]]] = [
    ("ASV only", ["backend.name=asv_only"]),
    ("CM only", ["backend.name=cm_only"]),
    ("Score sum (Baseline1)", ["backend.name=score_sum", "backend.options={normalise: zscore}"]),
    ("Product rule", ["backend.name=product_rule"]),
    ("LR fusion", ["backend.name=lr_fusion"]),
    # The published Baseline2 draws ~5 M training trials (200 epochs over 25,380 embeddings); one epoch of this
    # train set is 8 batches, so the demo draws 8192 trials per epoch to come near its training length.
    ("Baseline2 DNN", ["backend.name=baseline2", "sampling.scheme=baseline2", "sampling.trials_per_epoch=8192",
                       "train.epochs=20"]),
    ("OC back-end, frozen", ["backend.name=joint_oc", "sampling.scheme=4class"]),
    # Two-stage, as the SASV2 "stage 3" recipe: the frozen run's back-end, then everything fine-tuned gently
    # (back-end lr 1e-4, front-ends 1e-5). From scratch, 2 short epochs left the back-end undertrained and
    # the front-ends worse: on one of three small-corpus runs its eval SASV-EER was above ASV only. One epoch:
    # a second one never improved dev (it cost ~50 s, which the single-embedding row now uses). The starting point
    # competes on dev (select_initial): fine-tuning that only makes dev worse ends where it started. quickstart.conf
    # crops 2.5 s, about the longest synthetic utterance (as the published 4 s crops cover most ASVspoof
    # utterances): on 1 s crops the back-end learnt to separate speakers from half an utterance and lost it on the
    # whole ones it is scored on (dev SASV-EER 6.00 -> 8.75 %, eval 17.7 -> 27.1 %).
    ("OC back-end, joint", ["backend.name=joint_oc", "mode=joint", "sampling.scheme=4class",
                            "backend.checkpoint={systems}/oc_back_end_frozen/backend.pt",
                            "train.optimizer={name: adam, lr: 1.0e-4}", "joint.frontend_lr=1.0e-5",
                            "sampling.trials_per_epoch=256", "train.epochs=1", "train.batch_size=16",
                            "train.select_initial=true"]),
]
SINGLE_EMBEDDING = "Single SASV embedding (stages 1+2+3)"
# Stage 2's data: one vocoder over 4 utterances of each VoxCeleb-part speaker (240 copies, seconds to write);
# the published recipe vocodes all of VoxCeleb2 with several vocoders (configs/sasv2_stage2_*.conf).
COPY_SYNTHESIS = ["--vocoders", "lpc", "--limit-per-speaker", "4", "--workers", "1"]
COLUMNS = [("sv_eer", "SV-EER"), ("spf_eer", "SPF-EER"), ("sasv_eer", "SASV-EER"), ("min_a_dcf", "min a-DCF")]

# --layout asvspoof5: the systems scored on Track 2 (the ASVspoof 5 fusion baseline is the score sum) and the columns
ASVSPOOF5_SYSTEMS: list[tuple[str, list[str]]] = [
    ("ASV only", ["backend.name=asv_only"]),
    ("CM only", ["backend.name=cm_only"]),
    ("Score sum (Baseline1)", ["backend.name=score_sum", "backend.options={normalise: zscore}"]),
    ("LR fusion", ["backend.name=lr_fusion"]),
    ("OC back-end, frozen", ["backend.name=joint_oc", "sampling.scheme=4class"]),
]
# the ASV front-end learns speakers from ASVspoof 5 train bona fide alone (no VoxCeleb pre-training): longer than 2b
ASVSPOOF5_ASV = ["asv.checkpoint=null", "train.epochs=12", "train.eval_every=4"]
TRACK1_COLUMNS = [("min_dcf", "minDCF"), ("act_dcf", "actDCF"), ("cllr", "Cllr"), ("eer", "EER")]
TRACK2_COLUMNS = [("min_a_dcf_asvspoof5", "min a-DCF"), ("sasv_eer", "SASV-EER"), ("sv_eer", "SV-EER"),
                  ("spf_eer", "SPF-EER")]
FRONT_END_COLUMNS = [("min_t_dcf_asvspoof5", "min t-DCF"), ("t_eer", "t-EER")]   # of the ASV + CM pair: every row


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_").replace("__", "_")


class _StepClock:
    """Prints each step's title and, at the end, how long each took (what each row of the table costs)."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []

    def step(self, title: str) -> None:
        self.starts.append((title.split(" ", 1)[0], time.time()))
        print(f"\n=== {title}", file=sys.stderr, flush=True)

    def summary(self) -> str:
        ends = [t for _, t in self.starts[1:]] + [time.time()]
        spans = zip(self.starts, ends, strict=True)
        return ", ".join(f"step {name} {end - start:.0f} s" for (name, start), end in spans)


def _start_step(folder: Path, cfg: dict, checkpoints: dict, protocols: dict, outputs: dict | None = None) -> bool:
    """True when the step is done with exactly these inputs (skip it). Otherwise prepares it: an unfinished run
    with the same inputs is continued; output made by other inputs (another config, a retrained front-end,
    another corpus) is moved to `replaced-<time>/`, never deleted. `outputs`: checkpoints the step writes
    (recorded in its results.json beside the inputs)."""
    if is_current(folder / "results.json", cfg, {**checkpoints, **(outputs or {})}, protocols):
        print(f"{folder}: up to date, skipped", file=sys.stderr, flush=True)
        if not (folder / CONFIG).is_file():      # made before step folders described themselves
            dump_config(cfg, folder / CONFIG)
        return True
    if not resumable(folder, cfg, checkpoints, protocols):
        moved = move_aside(folder)
        if moved is not None:
            print(f"{folder}: made by other inputs; moved to {moved}", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    mark_started(folder, cfg, checkpoints, protocols)
    dump_config(cfg, folder / CONFIG)       # the folder describes itself: verify.py --config <folder>/config.yaml
    return False


@dataclasses.dataclass(frozen=True)
class DemoConfigs:
    """The resolved config of every step the demo runs."""
    asv: dict                      # 2a: speaker pre-training on the VoxCeleb part
    asv_la: dict                   # 2b: adaptation on LA train bona fide
    cm: dict                       # 3: the CM front-end
    systems: dict[str, dict]       # 4: one SASV config per table row
    stage2: dict                   # 5: single SASV embedding, copy-synthesis stage
    stage3: dict                   # 5: single SASV embedding, LA stage (the table's last row)


def _check_overrides(extra: Sequence[str], modules: Sequence) -> None:
    """An override no step's schema has is a typo: one line before anything runs."""
    keys = {k for module in modules for k in module.SCHEMA}
    unknown = [o for o in extra if o.split("=", 1)[0].split(".")[0] not in keys]
    if unknown:
        raise ConfigError(f"override {unknown[0]!r}: no quickstart config has the key "
                          f"'{unknown[0].split('=', 1)[0].split('.')[0]}'")


def _load(name: str, module, overrides: list[str], extra: Sequence[str]) -> dict:
    """configs/<name> with the step's overrides, then those `extra` overrides its schema has; training checked."""
    from engine import check_train_config
    own = [o for o in extra if o.split("=", 1)[0].split(".")[0] in module.SCHEMA]
    cfg = load_config(CONFIGS / name, [*overrides, *own], module.SCHEMA)
    check_train_config(cfg["train"])
    return cfg


def demo_configs(out: Path, corpus: Path, systems: Sequence[tuple[str, list[str]]] = SYSTEMS,
                 extra: Sequence[str] = ()) -> DemoConfigs:
    """Every step's config, loaded and checked (each key's rule, training settings, the SASV rules) before anything
    is generated or trained: a bad override (`train.epochs=0`, a typo'd key) fails in one line before step 1, not
    after the corpus and the first front-end. `extra` overrides apply to every config whose schema has their key."""
    from pipeline.recipes import asv_task, cm_task, sasv_e2e_task, sasv_task
    from pipeline.stages.experiment import check_sasv_config
    from synthetic import corpus_paths

    paths = corpus_paths(corpus)
    _check_overrides(extra, (asv_task, cm_task, sasv_task, sasv_e2e_task))

    def config(name: str, module, overrides: list[str]) -> dict:
        return _load(name, module, overrides, extra)

    sasv: dict[str, dict] = {}
    common = [f"database={paths.la}", f"embeddings_dir={out / 'embeddings'}", "det=false",
              f"asv.checkpoint={out / 'asv_la' / 'asv_model.pt'}", f"cm.checkpoint={out / 'cm' / 'cm_model.pt'}"]
    for label, overrides in systems:
        overrides = [o.replace("{systems}", str(out / "systems")) for o in overrides]
        sasv[label] = config("quickstart.conf", sasv_task,
                             [*common, f"output_dir={out / 'systems' / _slug(label)}", *overrides])
        check_sasv_config(sasv[label])
    return DemoConfigs(
        asv=config("quickstart_asv.conf", asv_task, [f"data.voxceleb={paths.voxceleb}", f"output_dir={out / 'asv'}"]),
        asv_la=config("quickstart_asv_la.conf", asv_task,
                      [f"data.database={paths.la}", f"asv.checkpoint={out / 'asv' / 'asv_model.pt'}",
                       f"output_dir={out / 'asv_la'}"]),
        cm=config("quickstart_cm.conf", cm_task, [f"database={paths.la}", f"output_dir={out / 'cm'}"]),
        systems=sasv,
        stage2=config("quickstart_sasv2_stage2.conf", sasv_e2e_task,
                      [f"data.voxceleb={paths.voxceleb}", f"data.copy_synthesis={out / 'copy_synthesis'}",
                       f"asv.checkpoint={out / 'asv' / 'asv_model.pt'}", f"output_dir={out / 'sasv2_stage2'}"]),
        stage3=config("quickstart_sasv2_stage3.conf", sasv_e2e_task,
                      [f"data.database={paths.la}", f"asv.checkpoint={out / 'sasv2_stage2' / 'sasv_embedding.pt'}",
                       f"output_dir={out / 'systems' / _slug(SINGLE_EMBEDDING)}"]))


def run_demo(out: Path, corpus: Path, preset: str, systems: Sequence[tuple[str, list[str]]] = SYSTEMS,
             extra: Sequence[str] = ()) -> dict[str, dict]:
    """Runs every step; `extra` overrides apply to every quickstart config (e.g. smaller runs in tests)."""
    from pipeline.stages.cache import remembering_outputs

    configs = demo_configs(out, corpus, systems, extra)     # every config checked before anything runs
    with remembering_outputs() as memo:
        return _run_demo_steps(out, corpus, preset, systems, extra, configs, memo)


def _run_demo_steps(out: Path, corpus: Path, preset: str, systems: Sequence[tuple[str, list[str]]],
                    extra: Sequence[str], configs: DemoConfigs, memo: OutputMemo) -> dict[str, dict]:
    """The steps of `run_demo`, with one memo of front-end outputs for all of them."""
    import copy_synthesis
    from data.score_files import read_sasv_scores
    from metrics.det import plot_det
    from pipeline.recipes import asv_task, cm_task, sasv_e2e_task, sasv_task
    from pipeline.stages.experiment import protocol_digests
    from pipeline.stages.sasv import config_checkpoints
    from synthetic import generate_corpus

    def frontend_step(module, cfg: dict, checkpoints: dict, model: str) -> None:
        folder = Path(cfg["output_dir"])
        if not _start_step(folder, cfg, checkpoints, module.protocol_digests(cfg), {model: folder / f"{model}.pt"}):
            module.run(cfg, resume=True)

    t0, clock = time.time(), _StepClock()
    clock.step(f"1/5 synthetic corpus ({preset}) -> {corpus}")
    paths = generate_corpus(corpus, preset=preset)

    clock.step("2/5 ASV front-end: ECAPA-TDNN (C=256) pre-trained on the VoxCeleb part, adapted on LA train bona fide")
    asv_cfg = configs.asv
    frontend_step(asv_task, asv_cfg, {"initial": asv_cfg["asv"]["checkpoint"]}, "asv_model")
    adapt_cfg = configs.asv_la
    frontend_step(asv_task, adapt_cfg, {"initial": adapt_cfg["asv"]["checkpoint"]}, "asv_model")

    clock.step("3/5 CM front-end: LCNN on LFCC + log power spectrum (LCNN-LFCC-LPS), LA train")
    cm_cfg = configs.cm
    frontend_step(cm_task, cm_cfg, {"initial": cm_cfg["cm"]["checkpoint"]}, "cm_model")

    clock.step("4/5 SASV: embeddings once, then every back-end")
    results: dict[str, dict] = {}
    curves: dict[str, tuple[np.ndarray, list[str]]] = {}

    def collect(label: str, system_dir: Path) -> None:
        """A finished system's metrics for the table and its eval scores for the DET plot."""
        results[label] = json.loads((system_dir / "results.json").read_text())
        scores = read_sasv_scores(system_dir / "scores" / "sasv_eval.txt")
        curves[label] = (scores.score, scores.key)

    for label, cfg in configs.systems.items():
        system_dir = Path(cfg["output_dir"])
        print(f"\n--- {label}", file=sys.stderr, flush=True)
        if not _start_step(system_dir, cfg, config_checkpoints(cfg), protocol_digests(cfg)):
            sasv_task.run(cfg, resume=True)
        collect(label, system_dir)

    clock.step("5/5 single SASV embedding (SASV2): stage 1 = the speaker model of step 2, then copy-synthesis, then LA")
    copies = Path(configs.stage2["data"]["copy_synthesis"])
    copy_synthesis.main(["--voxceleb", str(paths.voxceleb), "--out", str(copies), *COPY_SYNTHESIS])
    stage2 = configs.stage2
    frontend_step(sasv_e2e_task, stage2, {"initial": stage2["asv"]["checkpoint"]}, "sasv_embedding")
    stage3 = configs.stage3
    system_dir = Path(stage3["output_dir"])
    frontend_step(sasv_e2e_task, stage3, {"initial": stage3["asv"]["checkpoint"]}, "sasv_embedding")
    collect(SINGLE_EMBEDDING, system_dir)

    det = out / "det_eval.png"
    plot_det(curves, det, title="SASV systems on the synthetic eval set")
    write_results(out, {"systems": results}, provenance(
        {"preset": preset if isinstance(preset, str) else dataclasses.asdict(preset), "corpus": str(corpus),
         "overrides": list(extra), "systems": [label for label, _ in systems] + [SINGLE_EMBEDDING]},
        checkpoints={"asv": out / "asv_la" / "asv_model.pt", "cm": out / "cm" / "cm_model.pt",
                     "single_embedding": system_dir / "sasv_embedding.pt"},
        protocols=protocol_digests(cfg), seeds={"train": cfg["train"]["seed"]}))
    print(table(results))
    print(f"\nDET curves of every system: {det}\nall numbers: {out / 'results.json'}"
          f"\nscore your own audio with the product rule: python verify.py --config "
          f"{out / 'systems' / _slug('Product rule') / CONFIG} --enroll YOUR_ENROLMENT.wav --test YOUR_TEST.wav"
          f"\nfinished in {time.time() - t0:.0f} s ({clock.summary()}; {_reused(memo)})")
    return results


def _reused(memo: OutputMemo) -> str:
    """How many whole-utterance front-end outputs the steps took from one another instead of computing them."""
    return f"front-end outputs on {memo.hits} of {memo.hits + memo.misses} scored utterances reused from earlier steps"


def table(results: dict[str, dict]) -> str:
    """Table 2 style: one row per system, dev and eval columns."""
    return systems_table("SASV 2022 metrics on the synthetic corpus (EERs in %; a stand-in, not a benchmark)",
                         results, COLUMNS, label_width=36, width=14)


def systems_table(title: str, results: dict[str, dict], columns: Sequence[tuple[str, str]], label_width: int,
                  width: int) -> str:
    """One row per system: the `columns` (results key, header) of dev, then of eval; EERs with 2 decimals."""
    head = f"{'system':<{label_width}}" + "".join(f"{'dev ' + name:>{width}}" for _, name in columns) \
        + "".join(f"{'eval ' + name:>{width + 1}}" for _, name in columns)
    lines = ["", title, head, "-" * len(head)]
    for label, r in results.items():
        lines.append(f"{label:<{label_width}}" + "".join(_number(k, r["dev"].get(k), width) for k, _ in columns)
                     + "".join(_number(k, r["eval"].get(k), width + 1) for k, _ in columns))
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ASVspoof5Configs:
    """The resolved config of every step of `--layout asvspoof5`."""
    asv: dict                      # 2: the ASV front-end on ASVspoof 5 train bona fide speakers
    cm: dict                       # 3: the CM front-end on ASVspoof 5 train (Track 1)
    systems: dict[str, dict]       # 4: one SASV config per Track 2 row


def asvspoof5_configs(out: Path, corpus: Path, preset: str = "default",
                      systems: Sequence[tuple[str, list[str]]] = ASVSPOOF5_SYSTEMS,
                      extra: Sequence[str] = ()) -> ASVspoof5Configs:
    """The quickstart configs pointed at the synthetic ASVspoof 5 database (`data.format: asvspoof5`), all checked
    before anything is generated or trained. The ASV batch holds at most the preset's train speakers."""
    import synthetic.asvspoof5 as asvspoof5
    from pipeline.recipes import asv_task, cm_task, sasv_task
    from pipeline.stages.experiment import check_sasv_config

    _check_overrides(extra, (asv_task, cm_task, sasv_task))
    database = corpus / asvspoof5.TOP
    common = [f"database={database}", "data.format=asvspoof5", f"embeddings_dir={out / 'embeddings'}", "det=false",
              f"asv.checkpoint={out / 'asv' / 'asv_model.pt'}", f"cm.checkpoint={out / 'cm' / 'cm_model.pt'}"]
    sasv: dict[str, dict] = {}
    for label, overrides in systems:
        sasv[label] = _load("quickstart.conf", sasv_task,
                            [*common, f"output_dir={out / 'systems' / _slug(label)}", *overrides], extra)
        check_sasv_config(sasv[label])
    return ASVspoof5Configs(
        asv=_load("quickstart_asv_la.conf", asv_task,
                  [f"data.database={database}", "data.format=asvspoof5", f"output_dir={out / 'asv'}", *ASVSPOOF5_ASV,
                   f"train.batch_size={min(10, asvspoof5.get_preset(preset).train.speakers)}"], extra),
        cm=_load("quickstart_cm.conf", cm_task, [f"database={database}", "data.format=asvspoof5",
                                                 f"output_dir={out / 'cm'}"], extra),
        systems=sasv)


def run_asvspoof5_demo(out: Path, corpus: Path, preset: str,
                       systems: Sequence[tuple[str, list[str]]] = ASVSPOOF5_SYSTEMS,
                       extra: Sequence[str] = ()) -> dict:
    """Every step of `--layout asvspoof5`; returns {"cm": the CM's results, "systems": {label: results}}."""
    from pipeline.stages.cache import remembering_outputs

    with remembering_outputs():     # as in run_demo: the Track 2 stage reuses the CM step's dev and eval outputs
        return _run_asvspoof5_steps(out, corpus, preset, systems, extra)


def _run_asvspoof5_steps(out: Path, corpus: Path, preset: str, systems: Sequence[tuple[str, list[str]]],
                         extra: Sequence[str]) -> dict:
    """The steps of `run_asvspoof5_demo`."""
    import synthetic.asvspoof5 as asvspoof5
    from data.score_files import read_sasv_scores
    from metrics.det import plot_det
    from pipeline.recipes import asv_task, cm_task, sasv_task
    from pipeline.stages.experiment import protocol_digests
    from pipeline.stages.sasv import config_checkpoints

    configs = asvspoof5_configs(out, corpus, preset, systems, extra)   # every config checked before anything runs

    def frontend_step(module, cfg: dict, model: str) -> dict:
        folder = Path(cfg["output_dir"])
        checkpoints = {"initial": cfg[model.split("_")[0]]["checkpoint"]}
        if not _start_step(folder, cfg, checkpoints, module.protocol_digests(cfg), {model: folder / f"{model}.pt"}):
            module.run(cfg, resume=True)
        return json.loads((folder / "results.json").read_text())

    t0, clock = time.time(), _StepClock()
    clock.step(f"1/4 synthetic ASVspoof 5 corpus ({preset}) -> {corpus}")
    asvspoof5.generate(corpus, preset, seed=0, progress=True)
    clock.step("2/4 ASV front-end: ECAPA-TDNN (C=256) on ASVspoof 5 train bona fide speakers")
    frontend_step(asv_task, configs.asv, "asv_model")
    clock.step("3/4 CM front-end: LCNN on LFCC + log power spectrum, ASVspoof 5 train (Track 1)")
    cm_results = frontend_step(cm_task, configs.cm, "cm_model")

    clock.step("4/4 Track 2: embeddings once, then every back-end")
    results: dict[str, dict] = {}
    curves: dict[str, tuple[np.ndarray, list[str]]] = {}
    for label, cfg in configs.systems.items():
        system_dir = Path(cfg["output_dir"])
        print(f"\n--- {label}", file=sys.stderr, flush=True)
        if not _start_step(system_dir, cfg, config_checkpoints(cfg), protocol_digests(cfg)):
            sasv_task.run(cfg, resume=True)
        results[label] = json.loads((system_dir / "results.json").read_text())
        scores = read_sasv_scores(system_dir / "scores" / "sasv_eval.txt")
        curves[label] = (scores.score, scores.key)

    det = out / "det_eval.png"
    plot_det(curves, det, title="SASV systems on the synthetic ASVspoof 5 eval set (Track 2)")
    write_results(out, {"cm": cm_results, "systems": results}, provenance(
        {"layout": "asvspoof5", "preset": preset, "corpus": str(corpus), "overrides": list(extra),
         "systems": [label for label, _ in systems]},
        checkpoints={"asv": out / "asv" / "asv_model.pt", "cm": out / "cm" / "cm_model.pt"},
        protocols=protocol_digests(cfg), seeds={"train": cfg["train"]["seed"]}))
    print(track1_table(cm_results, configs.cm["eval_splits"]))
    print(track2_table(results))
    print(f"\nDET curves of every system: {det}\nall numbers: {out / 'results.json'}"
          f"\nfinished in {time.time() - t0:.0f} s ({clock.summary()})")
    return {"cm": cm_results, "systems": results}


def _number(key: str, value: float | None, width: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width}.2f}" if "eer" in key else f"{value:>{width}.4f}"


def track1_table(cm_results: dict, splits: Sequence[str]) -> str:
    """The CM's ASVspoof 5 Track 1 metrics per split (EER in %, Cllr in bits), and minDCF per codec condition."""
    from metrics.breakdown import per_condition
    head = f"{'split':<8}" + "".join(f"{name:>10}" for _, name in TRACK1_COLUMNS)
    lines = ["", "ASVspoof 5 Track 1 (the CM) on the synthetic corpus (a stand-in, not a benchmark)", head,
             "-" * len(head)]
    for split in splits:
        lines.append(f"{split:<8}" + "".join(_number(k, cm_results.get(f"{split}_cm_{k}"), 10)
                                             for k, _ in TRACK1_COLUMNS))
    for split in splits:
        codecs = per_condition(cm_results.get(f"{split}_cm_breakdown", {}), "codec", "min_dcf")
        if len(codecs) > 1:
            lines.append(f"{split} minDCF per codec condition (- uncoded): "
                         + ", ".join(f"{c} {v:.4f}" for c, v in codecs.items()))
    return "\n".join(lines)


def track2_table(results: dict[str, dict]) -> str:
    """ASVspoof 5 Track 2 metrics of each system, dev and eval (SASV-, SV-, SPF-EER in %), and the front-ends' tandem
    metrics."""
    lines = [systems_table("ASVspoof 5 Track 2 (SASV) on the synthetic corpus (a stand-in, not a benchmark)",
                           results, TRACK2_COLUMNS, label_width=28, width=15)]
    if results:     # the tandem metrics judge the CM with the ASV scores: the same for every back-end
        first = next(iter(results.values()))
        lines.append("ASV + CM front-ends (the same for every system): " + "; ".join(
            f"{split} " + ", ".join(f"{name} {_number(k, first[split].get(k), 0).strip()}"
                                    for k, name in FRONT_END_COLUMNS) for split in ("dev", "eval")))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", default="la", choices=("la", "asvspoof5"),
                        help="la: ASVspoof 2019 LA + VoxCeleb (SASV 2022); asvspoof5: ASVspoof 5 Track 1 and 2")
    parser.add_argument("--out", default=None, help="experiment folder (default: exp/quickstart, "
                                                    "exp/quickstart_asvspoof5 with --layout asvspoof5)")
    parser.add_argument("--corpus", default=None, help="where the synthetic corpus is (or goes) (default: "
                                                       "corpus/default, corpus/asvspoof5 with --layout asvspoof5)")
    parser.add_argument("--preset", default="default", choices=("tiny", "default"))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="applied to the quickstart configs")
    add_wait_flag(parser)
    args = parser.parse_args(argv)
    a5 = args.layout == "asvspoof5"
    args.out = args.out if args.out is not None else "exp/quickstart_asvspoof5" if a5 else "exp/quickstart"
    args.corpus = args.corpus if args.corpus is not None else "corpus/asvspoof5" if a5 else "corpus/default"
    for flag, folder in (("--out", args.out), ("--corpus", args.corpus)):
        check_output_path(folder, flag)
    run = run_asvspoof5_demo if a5 else run_demo
    if a5:      # a bad override: one line, nothing run
        asvspoof5_configs(Path(args.out), Path(args.corpus), args.preset, extra=args.overrides)
    else:
        demo_configs(Path(args.out), Path(args.corpus), extra=args.overrides)
    retain_freed_memory()  # CPU training: reuse freed feature maps instead of page-faulting new ones
    with hold_folders([("--out", args.out), ("--corpus", args.corpus)], wait=args.wait):
        run(Path(args.out), Path(args.corpus), args.preset, extra=args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
