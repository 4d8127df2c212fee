"""Running the grid: each system's scores (fitted, or trained per seed) unless its current result exists."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from common.io import atomic_write, file_sha256, read_json, write_json
from common.provenance import provenance
from common.runs import comparable
from data.score_files import ScoreFileError, read_sasv_scores, write_sasv_scores
from metrics.det import plot_det
from pipeline.stages.asv import asv_stage
from pipeline.stages.backend import ready_backend
from pipeline.stages.cache import fingerprint
from pipeline.stages.cm import cm_stage
from pipeline.stages.experiment import database, protocol_digests
from pipeline.stages.frontends import frontend_identity, frontends_record
from pipeline.stages.outputs import asv_embeddings_spec, cm_embeddings_spec, speaker_models_spec
from pipeline.stages.sasv import EVAL_SPLITS, TrialInputs, trial_inputs
from pipeline.tools.ablation.analysis import (
    Run,
    SplitTrials,
    analyse_run,
    draw_pictures,
    mean_over_runs,
    std_over_runs,
)
from pipeline.tools.ablation.cm_scores import with_cm_score
from pipeline.tools.ablation.grid import System, ablation_dir, parse_systems, score_files
from pipeline.tools.ablation.report import markdown, write_csv
from pipeline.tools.ablation.score_files import ScoreFileSource, fit_systems, read_score_files
from pipeline.tools.fuse import write_inputs

log = logging.getLogger(__name__)


VERSION = 2       # bump when the meaning of a result.json changes (2: LLR back-ends report the actual a-DCF)
RUN_VERSION = 1   # bump when a trained run's scores change meaning (its run.json; retrains every seed)

NOT_APPLICABLE = "-"   # score_norm / enrolment of a score-file system: made by whoever wrote the files


def system_inputs(cfg: Mapping) -> dict[str, str]:
    """SHA-256 of what a system's scores are computed from: its cached embeddings and speaker models (rewritten
    only when recomputed, e.g. for another corpus or audio) and the protocol files (trial lists and keys)."""
    db = database(cfg)
    specs = [asv_embeddings_spec(cfg, s, db) for s in cfg["splits"]] + \
            [cm_embeddings_spec(cfg, s, db) for s in cfg["splits"]] + \
            [speaker_models_spec(cfg, s, db) for s in EVAL_SPLITS]
    return {**{str(spec.path): file_sha256(spec.path) for spec in specs}, **protocol_digests(cfg)}


def system_fingerprint(system: System, frontends: Mapping, thresholds: Mapping, pictures: bool,
                       inputs: Mapping[str, str]) -> str:
    return fingerprint(version=VERSION, cfg=comparable(system.cfg), cm_score=system.cm_score, seeds=list(system.seeds),
                       calibrated=system.calibrated, thresholds=dict(thresholds), frontends=dict(frontends),
                       pictures=pictures, inputs=dict(inputs))


def _run_fingerprint(system: System, seed: int, frontends: Mapping, inputs: Mapping[str, str]) -> str:
    return fingerprint(version=RUN_VERSION, cfg=comparable(system.run_config(seed)), frontends=dict(frontends),
                       inputs=dict(inputs))


def run_system(system: System, frontends: Mapping, thresholds: Mapping, force: bool = False,
               pictures: bool = True) -> dict:
    """Scores (fits or trains) one system of a grid on cached embeddings unless its result.json is current; returns
    that result."""
    cfg = system.cfg
    asv_stage(cfg)          # embeddings skipped when cached; speaker models of this enrolment form; ASV scores
    cm_stage(cfg)
    inputs_digest = system_inputs(cfg)
    fp = system_fingerprint(system, frontends, thresholds, pictures, inputs_digest)
    done = None if force else current_result(system, fp)
    if done is not None:
        return done
    log.info(f"ablation {system.name}: {system.backend} {system.options or ''} {system.overrides or ''}"
        f" cm_score={system.cm_score}")
    inputs = {s: with_cm_score(cfg, trial_inputs(cfg, s), system.cm_score) for s in EVAL_SPLITS}
    if system.trained:
        runs = [_trained_run(system, seed, inputs, frontends, force, inputs_digest) for seed in system.seeds]
    else:
        backend = ready_backend(cfg, inputs, save=True)   # fitted on dev; its state in the system's folder
        runs = [Run(None, system.folder, {s: backend.score(d.asv_scores, d.cm_scores) for s, d in inputs.items()},
                    {s: d.keys for s, d in inputs.items()})]
    record = {"score_norm": cfg["score_norm"]["method"], "enrolment": cfg["enrolment"],
              "frontends": frontends_record(cfg),
              "provenance": provenance(cfg, checkpoints={key: cfg[key]["checkpoint"] for key in ("asv", "cm")},
                                       protocols=protocol_digests(cfg),
                                       seeds={"backend": [s for s in system.seeds if s is not None]},
                                       device=cfg["device"], database=database(cfg))}
    return finish_system(system, runs, inputs, thresholds, pictures, fp, record)


def current_result(system: System, fp: str) -> dict | None:
    """The system's result.json when it carries the fingerprint `fp` and its pictures exist (the system is skipped)."""
    result_path = system.folder / "result.json"
    done = read_json(result_path)
    if done is not None and done.get("fingerprint") == fp and all(
            (system.folder / p).exists() for p in done.get("files", [])):
        log.info(f"ablation {system.name}: {result_path} is up to date, skipped")
        return done
    return None


def finish_system(system: System, runs: Sequence[Run], inputs: Mapping[str, SplitTrials], thresholds: Mapping,
                  pictures: bool, fp: str, record: Mapping) -> dict:
    """Writes each run's SASV scores and thresholds, the pictures and result.json (last: its fingerprint marks the
    system finished); `record`: what the source adds to the result (score_norm, enrolment, provenance, ...)."""
    run_results = []
    for run in runs:
        for split, data in inputs.items():
            write_sasv_scores(run.folder / "scores" / f"sasv_{split}.txt", data.rows(run.scores[split]))
        run_results.append(analyse_run(system, run, inputs, thresholds))
    files = draw_pictures(system, runs[0], run_results[0], thresholds) if pictures else []
    rows = [r["row"] for r in run_results]
    result = {"system": system.name, "backend": system.backend, "options": system.options,
              "overrides": system.overrides, "cm_score": system.cm_score, "calibrated": system.calibrated,
              "score_norm": record["score_norm"], "enrolment": record["enrolment"],
              "seeds": [s for s in system.seeds if s is not None], "fingerprint": fp,
              "runs": [{"seed": r.seed, "folder": str(r.folder.relative_to(system.folder)), **rr["detail"]}
                       for r, rr in zip(runs, run_results, strict=True)],
              "mean": mean_over_runs(rows), "std": std_over_runs(rows), "files": files,
              **{k: v for k, v in record.items() if k not in ("score_norm", "enrolment")}}
    result_path = system.folder / "result.json"
    write_json(result_path, result)
    log.info(f"ablation {system.name}: dev SASV-EER {result['mean']['dev_sasv_eer']:.2f} %, "
         f"eval SASV-EER {result['mean']['eval_sasv_eer']:.2f} % -> {result_path}")
    return result


def run_score_file_systems(systems: Sequence[System], source: ScoreFileSource, root: Path, thresholds: Mapping,
                           force: bool = False, pictures: bool = True) -> list[dict]:
    """The systems of a score-file grid: those without a current result.json are all fitted on dev first (a rule
    that cannot be fitted is one line before anything is written), then score both splits and are written. The
    aligned inputs, the same for every system, go once to <root>/scores/{asv,cm_trials}_<split>.txt."""
    digests = source.digests()
    inputs_digest = {flag: d["sha256"] for flag, d in digests.items()}
    fps = {s.name: system_fingerprint(s, {}, thresholds, pictures, inputs_digest) for s in systems}
    done = {s.name: None if force else current_result(s, fps[s.name]) for s in systems}
    backends = fit_systems([s for s in systems if done[s.name] is None], source)
    for data in source.data.values():
        write_inputs(root, data)
    results = []
    for system in systems:
        if done[system.name] is not None:
            results.append(done[system.name])
            continue
        log.info(f"ablation {system.name}: {system.backend} {system.options or ''}".rstrip() + " (score files)")
        backend = backends[system.name]
        write_json(system.folder / "backend_state.json", backend.state_dict())
        runs = [Run(None, system.folder,
                    {s: backend.score(d.asv_scores, d.cm_scores) for s, d in source.data.items()},
                    {s: d.keys for s, d in source.data.items()})]
        record = {"score_norm": NOT_APPLICABLE, "enrolment": NOT_APPLICABLE,
                  "provenance": {**provenance(system.cfg, seeds={"backend": []}), "inputs": digests}}
        results.append(finish_system(system, runs, source.data, thresholds, pictures, fps[system.name], record))
    return results


def _trained_run(system: System, seed: int, inputs: Mapping[str, TrialInputs], frontends: Mapping,
                 force: bool, inputs_digest: Mapping[str, str]) -> Run:
    """Trains the embedding back-end for one seed on the cached train embeddings (or reuses a current run)."""
    from pipeline.recipes.frozen import train_frozen_backend
    from pipeline.stages.sasv import score_embeddings

    folder, cfg = system.run_dir(seed), system.run_config(seed)
    fp = _run_fingerprint(system, seed, frontends, inputs_digest)
    keys = {s: d.keys for s, d in inputs.items()}
    done = None if force else read_json(folder / "run.json")
    if done is not None and done.get("fingerprint") == fp:
        scores = _read_run_scores(folder, inputs)
        if scores is not None:
            log.info(f"ablation {system.name} seed {seed}: {folder / 'run.json'} is up to date, skipped")
            return Run(seed, folder, scores, keys)
    if done is not None:
        why = "--force" if force else "made by other inputs or settings"
        log.info(f"ablation {system.name} seed {seed}: retraining in {folder} ({why}); its earlier run is replaced")
    # seeded by cfg's train.seed (= seed); a new back-end (no backend.checkpoint in a system). This seed's training
    # folder belongs to the ablation: a run in it is obsolete (its fingerprint differs)
    backend, result = train_frozen_backend(cfg, inputs["dev"], folder / "train", folder / "backend.pt", replace=True)
    scores = {s: score_embeddings(backend, d) for s, d in inputs.items()}
    for split, data in inputs.items():
        write_sasv_scores(folder / "scores" / f"sasv_{split}.txt", data.rows(scores[split]))
    write_json(folder / "run.json", {"seed": seed, "fingerprint": fp, "best_epoch": result.best_epoch})
    return Run(seed, folder, scores, keys)


def _read_run_scores(folder: Path, inputs: Mapping[str, TrialInputs]) -> dict[str, np.ndarray] | None:
    """A finished run's SASV scores when its score files hold exactly the current trials, in order."""
    out = {}
    for split, data in inputs.items():
        try:
            s = read_sasv_scores(folder / "scores" / f"sasv_{split}.txt")
        except (ScoreFileError, FileNotFoundError, OSError):
            return None
        if s.trials() != [(t.speaker, t.utt) for t in data.trials]:
            return None
        out[split] = s.score
    return out


def run_ablation(cfg: Mapping, force: bool = False, source: ScoreFileSource | None = None) -> list[dict]:
    """Runs every system of the grid (skipping finished ones) and writes ablation.csv / .md / _det.png. A score-file
    grid reads its files here unless `source` holds them already (ablate.py reads them before it locks the folder)."""
    systems = parse_systems(cfg)      # every entry checked before anything runs
    thresholds = dict(cfg["ablation"]["thresholds"])
    pictures = cfg["ablation"]["pictures"]
    if score_files(cfg):
        results = run_score_file_systems(systems, source or read_score_files(cfg), ablation_dir(cfg), thresholds,
                                         force, pictures)
    else:
        frontends = {"asv": frontend_identity(cfg["asv"], "asv"), "cm": frontend_identity(cfg["cm"], "cm")}
        results = [run_system(s, frontends, thresholds, force, pictures) for s in systems]
    root = ablation_dir(cfg)
    order = sorted(range(len(results)), key=lambda i: results[i]["mean"]["dev_sasv_eer"])
    results = [results[i] for i in order]
    write_csv(root / "ablation.csv", results)
    curves = {}
    for r in results:
        first = r["runs"][0]
        scores = read_sasv_scores(root / r["system"] / first["folder"] / "scores" / "sasv_eval.txt")
        label = r["system"] if first["seed"] is None else f"{r['system']} (seed {first['seed']})"
        curves[label] = (scores.score, scores.key)
    plot_det(curves, root / "ablation_det.png", title="Fusion ablation: every system on eval")
    text = markdown(cfg, results, thresholds)
    with atomic_write(root / "ablation.md") as f:
        f.write(text)
    print(text.split("\n## ")[1].split("\n", 1)[1].strip())   # the results table
    log.info(f"ablation: {len(results)} systems -> {root / 'ablation.md'}, ablation.csv, ablation_det.png")
    return results
