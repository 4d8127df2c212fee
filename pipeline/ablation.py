"""Fusion ablation: a grid of SASV back-end variants scored from the cached embeddings of one experiment.

The config is a SASV config (pipeline/sasv_task.SCHEMA) plus an `ablation` section listing the systems.
Each system is a back-end by name with its options, config overrides (score normalisation, enrolment form,
sampling, training) and the CM score type it fuses. Front-end embeddings are computed once by the stage
code into the experiment's embedding folder and shared by every system (skipped when cached); score-level
back-ends are fitted in milliseconds and embedding-level ones trained on cached embeddings for each seed.

Layout under `ablation.dir` (default `<output_dir>/ablation`):

    ablation.csv, ablation.md, ablation_det.png      the comparison (see docs/ablation.md)
    <system>/result.json                             metrics of every run, mean/std, fingerprint (skip key)
    <system>/scores/{asv,cm,cm_trials,sasv}_{dev,eval}.txt, backend_state.json, thresholds.json
    <system>/seed_<k>/{scores/sasv_*.txt, thresholds.json, backend.pt, run.json, train/}   (trained back-ends)
    <system>/hist.png, det.png, reliability.png      pictures of the system (first seed)

A system whose result.json carries the current fingerprint (its resolved config, CM score type, seeds,
threshold settings, the front-ends with their checkpoints' SHA-256, the SHA-256 of the cached embeddings it
reads and of the protocol files) is skipped; a trained run whose run.json matches is reused, so adding a
seed trains only that seed. The stages run first for every system (a no-op when their caches are current).
"""
from __future__ import annotations

import copy
import csv
import inspect
import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from common.config import ConfigError, load_config
from common.errors import InputError
from common.io import atomic_write, file_sha256, read_json, write_json
from common.provenance import provenance
from data.score_files import ScoreFileError, read_sasv_scores, write_sasv_scores
from fusion import BACKENDS, is_score_backend
from metrics.calibration import cllr, min_cllr, plot_reliability
from metrics.det import plot_det
from metrics.plots import plot_score_histograms
from metrics.report import evaluate_trials
from metrics.thresholds import threshold_report
from pipeline.cache import fingerprint
from pipeline.sasv import EVAL_SPLITS, TrialInputs, fit_score_backend, trial_inputs
from pipeline.sasv_task import SCHEMA as SASV_SCHEMA
from pipeline.frontends import frontend_identity, frontends_record
from pipeline.stages import (asv_embeddings_spec, asv_stage, cm_embeddings_spec, cm_stage, database, experiment,
                             protocol_digests, sasv_rows, say, speaker_models_spec)

VERSION = 1   # bump when the meaning of cached results changes

ABLATION_SECTION = {
    "dir": None,                   # default <output_dir>/ablation
    "pictures": True,              # per-system hist.png / det.png / reliability.png (ablation_det.png always)
    "seeds": [0, 1, 2],            # seeds of trained (embedding-level) back-ends unless a system sets its own
    "thresholds": {
        "far": 0.01,               # target false-accept rate of the 'far' threshold
        "negatives": "both",       # negatives of the 'eer' and 'far' thresholds: nontarget | spoof | both
    },
    "systems": [],                 # [{name, backend, options, overrides, cm_score, seeds, calibrated}, ...]
}
SCHEMA = {**SASV_SCHEMA, "ablation": ABLATION_SECTION}

SYSTEM_KEYS = ("name", "backend", "options", "overrides", "cm_score", "seeds", "calibrated")
CM_SCORES = ("logit", "log_odds", "posterior")
CALIBRATED_BACKENDS = ("lr_fusion",)  # back-ends whose output is an LLR by construction
# Config keys a system may not override: they define the shared embeddings or are set by the system entry.
FIXED_KEYS = ("task", "mode", "database", "enr_audio", "output_dir", "embeddings_dir", "splits", "asv", "cm",
              "ablation", "backend", "backend.name", "backend.options", "backend.checkpoint")
THRESHOLD_METHODS = ("eer", "min_dcf", "min_a_dcf", "far")
THRESHOLD_LABELS = {"eer": "EER point", "min_dcf": "min DCF", "min_a_dcf": "min a-DCF", "far": "FAR"}
# evaluate_trials keys, in table order; EERs in percent
METRICS = ("sasv_eer", "sv_eer", "spf_eer", "min_a_dcf", "min_a_dcf_asvspoof5", "t_eer", "min_t_dcf_asvspoof5",
           "min_t_dcf_asvspoof5_formula", "min_t_dcf_asvspoof2019", "asv_eer", "cm_eer")
RATES = ("p_miss", "p_fa_nontarget", "p_fa_spoof", "actual_dcf", "actual_a_dcf")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class System:
    """One entry of the grid, with its resolved SASV config (output_dir = its folder)."""
    name: str
    backend: str
    options: dict
    overrides: dict
    cm_score: str
    seeds: tuple            # (None,) for score-level back-ends
    calibrated: bool
    cfg: dict = field(repr=False)

    @property
    def trained(self) -> bool:
        return not is_score_backend(self.backend)

    @property
    def folder(self) -> Path:
        return Path(self.cfg["output_dir"])

    def run_dir(self, seed: int | None) -> Path:
        return self.folder if seed is None else self.folder / f"seed_{seed}"

    def run_config(self, seed: int | None) -> dict:
        if seed is None:
            return self.cfg
        cfg = copy.deepcopy(self.cfg)
        cfg["train"]["seed"] = int(seed)
        return cfg


def ablation_dir(cfg: Mapping) -> Path:
    return Path(cfg["ablation"]["dir"]) if cfg["ablation"]["dir"] else Path(cfg["output_dir"]) / "ablation"


def parse_systems(cfg: Mapping) -> list[System]:
    """The grid of `cfg['ablation']`, checked before anything runs (names, back-ends, options, overrides)."""
    section = cfg["ablation"]
    entries = section["systems"]
    if not entries:
        raise ConfigError("ablation.systems is empty: list the systems to compare (see docs/ablation.md)")
    if cfg["mode"] != "frozen":
        raise ConfigError(f"ablation runs frozen back-ends on cached embeddings; 'mode' is {cfg['mode']!r}")
    _check_thresholds(section["thresholds"])
    default_seeds = _seeds(section["seeds"], "ablation.seeds")
    root, names, systems = ablation_dir(cfg), set(), []
    for i, entry in enumerate(entries):
        who = f"ablation.systems[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{who}: must be a mapping with keys {', '.join(SYSTEM_KEYS)}, got {entry!r}")
        unknown = sorted(set(entry) - set(SYSTEM_KEYS))
        if unknown:
            raise ConfigError(f"{who}: unknown key {unknown[0]!r}; valid keys: {', '.join(SYSTEM_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{who}: 'name' must be a folder-safe string (letters, digits, _ . + -), got {name!r}")
        if name in names:
            raise ConfigError(f"{who}: system name {name!r} appears twice")
        names.add(name)
        who = f"ablation system {name!r}"
        backend = entry.get("backend")
        if backend not in BACKENDS:
            raise ConfigError(f"{who}: 'backend' is {backend!r}; valid back-ends: {', '.join(BACKENDS)}")
        options = dict(entry.get("options") or {})
        _check_options(backend, options, who)
        overrides = dict(entry.get("overrides") or {})
        for key in overrides:
            if any(key == k or key.startswith(k + ".") for k in FIXED_KEYS if k != "backend") or key == "backend":
                raise ConfigError(f"{who}: override {key!r} is not allowed (the front-ends, corpus and folders are "
                                  f"shared by every system; set the back-end with 'backend' and 'options')")
        cm_score = entry.get("cm_score", "logit")
        if cm_score not in CM_SCORES:
            raise ConfigError(f"{who}: 'cm_score' is {cm_score!r}; choose one of {', '.join(CM_SCORES)}")
        trained = not is_score_backend(backend)
        if "seeds" in entry and not trained:
            raise ConfigError(f"{who}: 'seeds' is for trained back-ends; {backend!r} is fitted deterministically")
        seeds = _seeds(entry["seeds"], f"{who}: 'seeds'") if "seeds" in entry else default_seeds
        calibrated = entry.get("calibrated", backend in CALIBRATED_BACKENDS)
        if not isinstance(calibrated, bool):
            raise ConfigError(f"{who}: 'calibrated' must be true or false, got {calibrated!r}")
        changes = {**overrides, "backend.name": backend, "backend.options": options, "backend.checkpoint": None,
                   "output_dir": str(root / name), "embeddings_dir": str(experiment(cfg).embeddings)}
        sys_cfg = _resolve(cfg, changes, who)
        if trained and "train" not in sys_cfg["splits"]:
            raise ConfigError(f"{who}: a trained back-end needs the train embeddings: include 'train' in 'splits'")
        systems.append(System(name, backend, options, overrides, cm_score, seeds if trained else (None,),
                              calibrated, sys_cfg))
    return systems


def _seeds(value: Any, who: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                    and s >= 0 for s in value):
        raise ConfigError(f"{who} must be a non-empty list of non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{who} lists a seed twice: {value!r}")
    return tuple(int(s) for s in value)


def _check_thresholds(section: Mapping) -> None:
    far = section["far"]
    if not 0.0 < far < 1.0:
        raise ConfigError(f"ablation.thresholds.far must be in (0, 1), got {far!r}")
    if section["negatives"] not in ("nontarget", "spoof", "both"):
        raise ConfigError("ablation.thresholds.negatives must be nontarget, spoof or both, "
                          f"got {section['negatives']!r}")


def _check_options(backend: str, options: Mapping, who: str) -> None:
    valid = [p for p in inspect.signature(BACKENDS[backend].__init__).parameters if p != "self"]
    for key in options:
        if key not in valid:
            raise ConfigError(f"{who}: unknown option {key!r} of back-end {backend!r}; "
                              f"valid options: {', '.join(valid)}")


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return text[:-len("...\n")].strip() if text.endswith("...\n") else text.strip()


def _flatten(node: Mapping, prefix: str = "") -> list[str]:
    items = []
    for key, value in node.items():
        if isinstance(value, Mapping):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append(f"{prefix}{key}={_yaml_value(value)}")
    return items


def _resolve(base: Mapping, changes: Mapping[str, Any], who: str) -> dict:
    """The base config with dotted keys replaced, validated again against the SASV schema (typos and types)."""
    raw = copy.deepcopy({k: v for k, v in base.items() if k != "ablation"})
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split(".")
        for p in parents:
            child = node.get(p)
            if not isinstance(child, dict):
                if child is not None:
                    raise ConfigError(f"{who}: override {dotted!r}: {p!r} is a value, not a section")
                child = node[p] = {}
            node = child
        node[last] = copy.deepcopy(value)
    try:
        return load_config(None, _flatten(raw), SASV_SCHEMA)
    except ConfigError as e:
        raise ConfigError(f"{who}: {str(e).removeprefix('<defaults>: ')}") from None


# ---------------------------------------------------------------------------------------------
# CM score types
# ---------------------------------------------------------------------------------------------
def cm_logits(cfg: Mapping, data: TrialInputs) -> np.ndarray:
    """Both CM logits (N, 2) of each trial's test utterance, from its cached CM embedding through the CM
    model's `logits_from_embedding` (its output layer(s) after the embedding it returns; no dropout at eval)."""
    import torch

    from pipeline.frontends import build_cm

    model = build_cm(cfg["cm"], "cpu")
    head = getattr(model, "logits_from_embedding", None)
    if head is None or getattr(model, "embedding_dim", None) != data.cm.dim:
        raise InputError(f"cm_score log_odds/posterior needs a CM model that maps its {data.cm.dim}-d embedding to "
                         f"its 2 logits (logits_from_embedding); {cfg['cm']['arch']} has none")
    rows = data.cm.embeddings[[data.cm.index[t.utt] for t in data.trials]]
    with torch.no_grad():
        logits = head(torch.from_numpy(rows)).double().numpy()  # build_cm returns the model in eval mode
    tol = 1e-3 * np.maximum(1.0, np.abs(data.cm_scores))
    if not np.all(np.abs(logits[:, 1] - data.cm_scores) <= tol):
        raise InputError(f"{data.cm.source}: the cached CM embeddings do not reproduce the cached CM scores "
                         f"through {cfg['cm']['arch']}'s output layer; recompute them (--force)")
    return logits


def with_cm_score(cfg: Mapping, data: TrialInputs, kind: str) -> TrialInputs:
    """The trial inputs with the CM score of type `kind`:
    logit     the bona fide logit logits[:, 1] (SASV 2022 convention; what the stages cache);
    log_odds  logits[:, 1] - logits[:, 0], the log posterior odds of bona fide;
    posterior softmax(logits)[:, 1] = sigmoid(log_odds), the bona fide posterior in [0, 1]."""
    if kind == "logit":
        return data
    from scipy.special import expit

    logits = cm_logits(cfg, data)
    odds = logits[:, 1] - logits[:, 0]
    return replace(data, cm_scores=odds if kind == "log_odds" else expit(odds))


# ---------------------------------------------------------------------------------------------
# One system
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    seed: int | None
    folder: Path
    scores: dict[str, np.ndarray]     # split -> SASV scores, aligned with the split's trials
    keys: dict[str, list[str]]


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
    return fingerprint(version=VERSION, cfg=system.cfg, cm_score=system.cm_score, seeds=list(system.seeds),
                       calibrated=system.calibrated, thresholds=dict(thresholds), frontends=dict(frontends),
                       pictures=pictures, inputs=dict(inputs))


def _run_fingerprint(system: System, seed: int, frontends: Mapping, inputs: Mapping[str, str]) -> str:
    return fingerprint(version=VERSION, cfg=system.run_config(seed), frontends=dict(frontends), inputs=dict(inputs))


def run_system(system: System, frontends: Mapping, thresholds: Mapping, force: bool = False,
               pictures: bool = True) -> dict:
    """Scores (fits or trains) one system unless its result.json is current; returns that result."""
    result_path = system.folder / "result.json"
    cfg = system.cfg
    asv_stage(cfg)          # embeddings skipped when cached; speaker models of this enrolment form; ASV scores
    cm_stage(cfg)
    inputs_digest = system_inputs(cfg)
    fp = system_fingerprint(system, frontends, thresholds, pictures, inputs_digest)
    if not force:
        done = read_json(result_path)
        if done is not None and done.get("fingerprint") == fp and all(
                (system.folder / p).exists() for p in done.get("files", [])):
            say(f"ablation {system.name}: {result_path} is up to date, skipped")
            return done
    say(f"ablation {system.name}: {system.backend} {system.options or ''} {system.overrides or ''}"
        f" cm_score={system.cm_score}")
    inputs = {s: with_cm_score(cfg, trial_inputs(cfg, s), system.cm_score) for s in EVAL_SPLITS}
    if system.trained:
        runs = [_trained_run(system, seed, inputs, frontends, force, inputs_digest) for seed in system.seeds]
    else:
        backend = fit_score_backend(cfg, inputs)
        write_json(system.folder / "backend_state.json", backend.state_dict())
        runs = [Run(None, system.folder, {s: backend.score(d.asv_scores, d.cm_scores) for s, d in inputs.items()},
                    {s: d.keys for s, d in inputs.items()})]
    run_results = []
    for run in runs:
        for split, data in inputs.items():
            write_sasv_scores(run.folder / "scores" / f"sasv_{split}.txt", sasv_rows(data.trials, run.scores[split]))
        run_results.append(_analyse_run(system, run, inputs, thresholds))
    files = _pictures(system, runs[0], run_results[0], thresholds) if pictures else []
    rows = [r["row"] for r in run_results]
    result = {"system": system.name, "backend": system.backend, "options": system.options,
              "overrides": system.overrides, "cm_score": system.cm_score, "calibrated": system.calibrated,
              "score_norm": cfg["score_norm"]["method"], "enrolment": cfg["enrolment"],
              "seeds": [s for s in system.seeds if s is not None], "fingerprint": fp,
              "runs": [{"seed": r.seed, "folder": str(r.folder.relative_to(system.folder)), **rr["detail"]}
                       for r, rr in zip(runs, run_results)],
              "mean": _mean(rows), "std": _std(rows), "files": files,
              "frontends": frontends_record(cfg),
              "provenance": provenance(cfg, checkpoints={"asv": cfg["asv"]["checkpoint"], "cm": cfg["cm"]["checkpoint"]},
                                       protocols=protocol_digests(cfg),
                                       seeds={"backend": [s for s in system.seeds if s is not None]},
                                       device=cfg["device"])}
    write_json(result_path, result)
    say(f"ablation {system.name}: dev SASV-EER {result['mean']['dev_sasv_eer']:.2f} %, "
         f"eval SASV-EER {result['mean']['eval_sasv_eer']:.2f} % -> {result_path}")
    return result


def _trained_run(system: System, seed: int, inputs: Mapping[str, TrialInputs], frontends: Mapping,
                 force: bool, inputs_digest: Mapping[str, str]) -> Run:
    """Trains the embedding back-end for one seed on the cached train embeddings (or reuses a current run)."""
    from engine import fit, load_model_weights, seed_everything
    from pipeline.sasv import (FrozenBackendTask, build_embedding_backend, frozen_train_data, save_backend,
                               score_embeddings)

    folder, cfg = system.run_dir(seed), system.run_config(seed)
    fp = _run_fingerprint(system, seed, frontends, inputs_digest)
    keys = {s: d.keys for s, d in inputs.items()}
    done = None if force else read_json(folder / "run.json")
    if done is not None and done.get("fingerprint") == fp:
        scores = _read_run_scores(folder, inputs)
        if scores is not None:
            say(f"ablation {system.name} seed {seed}: {folder / 'run.json'} is up to date, skipped")
            return Run(seed, folder, scores, keys)
    seed_everything(seed)   # the back-end's initial weights
    dev = inputs["dev"]
    backend = build_embedding_backend(cfg, dev.asv.dim, dev.cm.dim)
    # this seed's training folder belongs to the ablation: a run in it is obsolete (its fingerprint differs)
    result = fit(backend, FrozenBackendTask(dev, cfg["sampling"]["scheme"]), frozen_train_data(cfg, seed),
                 cfg["train"], folder / "train", replace=True)
    load_model_weights(backend, result.best_checkpoint or result.last_checkpoint)
    save_backend(folder / "backend.pt", backend, system.backend, system.options)
    scores = {s: score_embeddings(backend, d) for s, d in inputs.items()}
    for split, data in inputs.items():
        write_sasv_scores(folder / "scores" / f"sasv_{split}.txt", sasv_rows(data.trials, scores[split]))
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


def _classes(scores: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
    k = np.asarray(keys)
    return {c: scores[k == c] for c in ("target", "nontarget", "spoof")}


def _analyse_run(system: System, run: Run, inputs: Mapping[str, TrialInputs], thresholds: Mapping) -> dict:
    """Metrics per split, dev-chosen thresholds applied to eval, Cllr; as nested detail and one flat row."""
    metrics = {s: evaluate_trials(d.keys, run.scores[s], d.asv_scores, d.cm_scores) for s, d in inputs.items()}
    dev, ev = (_classes(run.scores[s], inputs[s].keys) for s in ("dev", "eval"))
    def negatives(method: str) -> str:   # min_dcf is target vs nontarget; min_a_dcf uses all three classes
        return thresholds["negatives"] if method in ("eer", "far") else "nontarget"

    reports = {m: threshold_report(dev, ev, m, negatives=negatives(m), far=thresholds["far"] if m == "far" else None)
               for m in THRESHOLD_METHODS}
    write_json(run.folder / "thresholds.json", {"far_target": thresholds["far"], "negatives_of_eer_and_far": thresholds["negatives"],
                   "decision": "accept iff score >= threshold", **reports})
    calibration = {}
    for split, c in (("dev", dev), ("eval", ev)):
        negatives = np.concatenate([c["nontarget"], c["spoof"]])
        calibration[split] = {"cllr": cllr(c["target"], negatives), "min_cllr": min_cllr(c["target"], negatives)}
    row: dict[str, float] = {}
    for split in EVAL_SPLITS:
        row.update({f"{split}_{k}": v for k, v in metrics[split].items()})
        row.update({f"{split}_{k}": v for k, v in calibration[split].items()})
    for m, rep in reports.items():
        row[f"{m}_threshold"] = rep["threshold"]
        row.update({f"{m}_eval_{k}": rep["eval"][k] for k in RATES if k in rep["eval"]})
    return {"detail": {"metrics": metrics, "calibration": calibration,
                       "thresholds": {m: r["threshold"] for m, r in reports.items()}}, "row": row}


def _pictures(system: System, run: Run, analysed: Mapping, thresholds: Mapping) -> list[str]:
    """hist.png, det.png and (calibrated systems) reliability.png of one run; returns their names."""
    folder = system.folder
    label = system.name if run.seed is None else f"{system.name} (seed {run.seed})"
    marks = {f"dev {_threshold_label(m, thresholds)}": t for m, t in analysed["detail"]["thresholds"].items()}
    plot_score_histograms({s: (run.scores[s], run.keys[s]) for s in EVAL_SPLITS}, folder / "hist.png",
                          thresholds=marks, title=f"{label}: SASV scores by key, thresholds chosen on dev")
    plot_det({f"{label} {s}": (run.scores[s], run.keys[s]) for s in EVAL_SPLITS}, folder / "det.png",
             title=f"{label}: DET on dev and eval")
    files = ["hist.png", "det.png"]
    if system.calibrated:
        c = _classes(run.scores["eval"], run.keys["eval"])
        plot_reliability(c["target"], np.concatenate([c["nontarget"], c["spoof"]]), folder / "reliability.png",
                         title=f"{label}, eval: target vs nontarget + spoof")
        files.append("reliability.png")
    return files


def _threshold_label(method: str, thresholds: Mapping) -> str:
    return f"FAR {100 * thresholds['far']:g}%" if method == "far" else THRESHOLD_LABELS[method]


def _mean(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _std(rows: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    """Sample standard deviation (ddof=1) over seeds; None for a single run."""
    if len(rows) < 2:
        return None
    return {k: float(np.std([r[k] for r in rows], ddof=1)) for k in rows[0]}



# ---------------------------------------------------------------------------------------------
# The whole grid and its report
# ---------------------------------------------------------------------------------------------
def run_ablation(cfg: Mapping, force: bool = False) -> list[dict]:
    """Runs every system of the grid (skipping finished ones) and writes ablation.csv / .md / _det.png."""
    systems = parse_systems(cfg)      # every entry checked before anything runs
    frontends = {"asv": frontend_identity(cfg["asv"], "asv"), "cm": frontend_identity(cfg["cm"], "cm")}
    thresholds = dict(cfg["ablation"]["thresholds"])
    results = [run_system(s, frontends, thresholds, force, cfg["ablation"]["pictures"]) for s in systems]
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
    say(f"ablation: {len(results)} systems -> {root / 'ablation.md'}, ablation.csv, ablation_det.png")
    return results


INFO_COLUMNS = ("system", "backend", "cm_score", "score_norm", "enrolment", "calibrated", "seeds", "n_runs")


def csv_rows(results: Sequence[Mapping]) -> tuple[list[str], list[dict]]:
    """Header and rows of ablation.csv: one row per system, every metric as its mean over seeds followed by
    its sample standard deviation (`<metric>_std`, empty for single-run systems)."""
    metric_keys: list[str] = []
    for r in results:
        metric_keys += [k for k in r["mean"] if k not in metric_keys]
    header = list(INFO_COLUMNS) + [c for k in metric_keys for c in (k, f"{k}_std")]
    rows = []
    for r in results:
        row = {"system": r["system"], "backend": r["backend"], "cm_score": r["cm_score"],
               "score_norm": r["score_norm"], "enrolment": r["enrolment"], "calibrated": r["calibrated"],
               "seeds": " ".join(map(str, r["seeds"])), "n_runs": len(r["runs"])}
        for k in metric_keys:
            row[k] = _num(r["mean"].get(k))
            row[f"{k}_std"] = _num(r["std"].get(k)) if r["std"] else ""
        rows.append(row)
    return header, rows


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_csv(path: Path, results: Sequence[Mapping]) -> None:
    header, rows = csv_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def _cell(result: Mapping, key: str, scale: float = 1.0, digits: int = 2) -> str:
    mean = result["mean"].get(key)
    if mean is None:
        return "-"
    text = f"{scale * mean:.{digits}f}"
    if result["std"]:
        text += f" ± {scale * result['std'][key]:.{digits}f}"
    return text


def markdown(cfg: Mapping, results: Sequence[Mapping], thresholds: Mapping) -> str:
    """ablation.md: the results table sorted by dev SASV-EER, the deployed-threshold table, picture links."""
    lines = [
        "# Fusion ablation", "",
        f"Experiment `{cfg['output_dir']}`, embeddings `{experiment(cfg).embeddings}`, {len(results)} systems, "
        "sorted by dev SASV-EER. EERs in %; a-DCF with the paper's default costs; Cllr in bits (target vs "
        "nontarget + spoof). Trained back-ends: mean ± sample standard deviation over their seeds. "
        "Score-level back-ends are fitted on `backend.fit_on` (dev by default), so their dev numbers are optimistic. "
        "† marks calibrated systems (LLR output): only their Cllr is meaningful as such; min Cllr compares all.", "",
        "![DET curves of every system on eval](ablation_det.png)", "",
        "## Results", "",
        "| system | back-end | CM score | score norm | enrolment | seeds | dev SASV-EER | eval SASV-EER | eval SV-EER "
        "| eval SPF-EER | eval min a-DCF | eval t-EER | eval Cllr | eval min Cllr | pictures |",
        "|---|---|---|---|---|---|" + "---:|" * 8 + "---|",
    ]
    for r in results:
        name = r["system"] + (" †" if r["calibrated"] else "")
        pictures = " · ".join(f"[{Path(p).stem}]({r['system']}/{p})" for p in r["files"])
        seeds = " ".join(map(str, r["seeds"])) or "-"
        lines.append(f"| {name} | {r['backend']} | {r['cm_score']} | {r['score_norm']} | {r['enrolment']} | {seeds} | "
                     f"{_cell(r, 'dev_sasv_eer')} | {_cell(r, 'eval_sasv_eer')} | {_cell(r, 'eval_sv_eer')} | "
                     f"{_cell(r, 'eval_spf_eer')} | {_cell(r, 'eval_min_a_dcf', digits=4)} | {_cell(r, 'eval_t_eer')} | "
                     f"{_cell(r, 'eval_cllr', digits=3)} | {_cell(r, 'eval_min_cllr', digits=3)} | {pictures} |")
    lines += [
        "", "## Deployed thresholds", "",
        "Each threshold is chosen on the dev SASV scores and applied unchanged to eval (accept iff score >= "
        f"threshold): the EER point (target vs {thresholds['negatives']}), the min-DCF point (target vs nontarget, "
        "p_target 0.05), the min-a-DCF point (all three classes), and the most accepting threshold with a "
        f"false-accept rate of at most {100 * thresholds['far']:g} % (on {thresholds['negatives']}). Rates in %. "
        "Actual minus min a-DCF on eval is the price of fixing the threshold on dev.", "",
        "| system | threshold from dev | threshold | eval miss | eval FA nontarget | eval FA spoof | eval actual DCF "
        "| eval actual a-DCF | eval min a-DCF |",
        "|---|---|" + "---:|" * 7,
    ]
    for r in results:
        for m in THRESHOLD_METHODS:
            lines.append(f"| {r['system']} | {_threshold_label(m, thresholds)} | {_cell(r, f'{m}_threshold', digits=4)} | "
                         f"{_cell(r, f'{m}_eval_p_miss', 100)} | {_cell(r, f'{m}_eval_p_fa_nontarget', 100)} | "
                         f"{_cell(r, f'{m}_eval_p_fa_spoof', 100)} | {_cell(r, f'{m}_eval_actual_dcf', digits=4)} | "
                         f"{_cell(r, f'{m}_eval_actual_a_dcf', digits=4)} | {_cell(r, 'eval_min_a_dcf', digits=4)} |")
    lines += [
        "", "## Files", "",
        "- `ablation.csv`: one row per system, every metric (dev_/eval_ prefixes; threshold columns "
        "`<method>_threshold`, `<method>_eval_<rate>` as fractions) with its `_std` over seeds.",
        "- `<system>/result.json`: every run's metrics, thresholds and Cllr; mean and std.",
        "- `<system>/[seed_<k>/]thresholds.json`: each dev-chosen threshold with its dev and eval rates and costs.",
        "- `<system>/[seed_<k>/]scores/sasv_{dev,eval}.txt`: SASV scores (SASV 2022 format).",
        "- `<system>/hist.png`, `det.png`, `reliability.png`: pictures of the system (first seed).", "",
    ]
    return "\n".join(lines)
