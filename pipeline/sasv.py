"""SASV back-ends over the stage outputs: scoring trial lists, frozen training, and results.

Score-level back-ends (fusion.ScoreBackend) are fitted on `backend.fit_on` (dev by default) from the
per-trial ASV and CM scores. Embedding-level back-ends (fusion.EmbeddingBackend) are trained by
`main.py` on cached embeddings (frozen) or end to end (see pipeline/joint.py) and score from a checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from common.errors import InputError
from common.io import atomic_write, load_weights
from data.asvspoof import SASVTrial
from data.datasets import (TRIAL_SCHEMES, EmbeddingTable, SASVEmbeddingTrialDataset, SASVTrialSampler,
                           baseline2_train_dataset)
from data.score_files import write_sasv_scores
from engine import TrainData
from engine.checkpoint import load_model_state
from fusion import EmbeddingBackend, ScoreBackend, build_backend, is_score_backend
from metrics.det import plot_det
from metrics.report import evaluate_trials, format_table, json_ready
from metrics.sasv import sasv_eers
from pipeline.stages import _sasv_rows, _say, asv_trial_scores, database, experiment

EVAL_SPLITS = ("dev", "eval")


@dataclass
class TrialInputs:
    """Everything a back-end may need for one split's SASV trial list, aligned with `trials`."""
    split: str
    trials: list[SASVTrial]
    asv_scores: np.ndarray        # cosine (normalised as configured)
    cm_scores: np.ndarray         # CM bona fide logit of the test utterance
    models: EmbeddingTable        # speaker models
    asv: EmbeddingTable           # test ASV embeddings
    cm: EmbeddingTable            # test CM embeddings

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.trials]

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(speaker model, test ASV, test CM) embedding tensors, one row per trial."""
        enr = self.models.embeddings[[self.models.index[t.speaker] for t in self.trials]]
        tst = self.asv.embeddings[[self.asv.index[t.utt] for t in self.trials]]
        cmv = self.cm.embeddings[[self.cm.index[t.utt] for t in self.trials]]
        return torch.from_numpy(enr), torch.from_numpy(tst), torch.from_numpy(cmv)


def _cached_table(path: Path, what: str, stage: str) -> EmbeddingTable:
    if not path.exists():
        raise InputError(f"{path}: missing {what}; run {stage} with the same config first")
    return EmbeddingTable.load(path)


def trial_inputs(cfg: Mapping, split: str) -> TrialInputs:
    """Loads the stage outputs of a split and aligns them with its SASV trial list."""
    exp = experiment(cfg)
    models = _cached_table(exp.asv_models(split, cfg["enrolment"]), "speaker models", "save_asv_embeddings.py")
    asv = _cached_table(exp.asv_embeddings(split), "ASV embeddings", "save_asv_embeddings.py")
    cm_path = exp.cm_embeddings(split)
    cm = _cached_table(cm_path, "CM embeddings", "save_cm_score.py")
    with np.load(cm_path, allow_pickle=False) as z:
        cm_score = dict(zip(z["ids"].tolist(), z["scores"]))
    trials = [t for t in database(cfg).sasv_trials(split) if t.utt in cm_score and t.utt in asv]
    dropped = len(database(cfg).sasv_trials(split)) - len(trials)
    if dropped:
        _say(f"sasv {split}: {dropped} trials skipped (test audio was unreadable and skipped earlier)")
    return TrialInputs(split, trials, asv_trial_scores(cfg, split, trials, models, asv),
                       np.array([cm_score[t.utt] for t in trials], dtype=np.float64), models, asv, cm)


# ---------------------------------------------------------------------------------------------
# Score-level back-ends
# ---------------------------------------------------------------------------------------------
def fit_score_backend(cfg: Mapping, inputs: Mapping[str, TrialInputs]) -> ScoreBackend:
    name, fit_on = cfg["backend"]["name"], cfg["backend"]["fit_on"]
    if fit_on not in inputs:
        raise InputError(f"backend.fit_on is {fit_on!r}; choose one of the scored splits {sorted(inputs)}")
    backend = build_backend(name, **cfg["backend"]["options"])
    data = inputs[fit_on]
    return backend.fit(data.asv_scores, data.cm_scores, data.keys)


# ---------------------------------------------------------------------------------------------
# Embedding-level back-ends
# ---------------------------------------------------------------------------------------------
def build_embedding_backend(cfg: Mapping, asv_dim: int, cm_dim: int) -> EmbeddingBackend:
    options = dict(cfg["backend"]["options"])
    options.setdefault("asv_dim", asv_dim)
    options.setdefault("cm_dim", cm_dim)
    return build_backend(cfg["backend"]["name"], **options)


@torch.no_grad()
def score_embeddings(backend: nn.Module, inputs: TrialInputs, batch_size: int = 4096) -> np.ndarray:
    backend.eval()
    enr, tst, cmv = inputs.embeddings()
    device = next(backend.parameters()).device
    out = [backend(enr[i:i + batch_size].to(device), tst[i:i + batch_size].to(device),
                   cmv[i:i + batch_size].to(device))[0].float().cpu()
           for i in range(0, len(inputs.trials), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def save_backend(path: Path, backend: nn.Module, name: str, options: Mapping) -> None:
    with atomic_write(path, "wb") as f:
        torch.save({"backend": name, "options": json.dumps(dict(options)), "state": backend.state_dict()}, f)


def load_backend(cfg: Mapping, asv_dim: int, cm_dim: int) -> EmbeddingBackend:
    path = cfg["backend"]["checkpoint"]
    name = cfg["backend"]["name"]
    if not path:
        raise InputError(f"backend '{name}' is trained, not fitted: set backend.checkpoint to a trained back-end "
                         f"(python main.py --config ... writes backend.pt), or choose a score-level back-end")
    ckpt = load_weights(path)
    if ckpt.get("backend") != name:
        raise InputError(f"{path}: not a '{name}' back-end checkpoint (holds {ckpt.get('backend')!r})")
    backend = build_embedding_backend({"backend": {"name": name, "options": json.loads(ckpt["options"])}}, asv_dim, cm_dim)
    try:
        load_model_state(backend, ckpt["state"], str(path))
    except ValueError as e:
        raise InputError(str(e)) from None
    return backend.eval()


class FrozenBackendTask:
    """Engine task: train an embedding back-end on cached embeddings, select by dev SASV-EER."""

    def __init__(self, dev: TrialInputs, scheme: str):
        self.dev, self.scheme = dev, scheme

    def training_step(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        enr, tst, cmv, label = batch
        label = to_binary(label, self.scheme)
        return model.loss(model(enr, tst, cmv), label), {}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        scores = score_embeddings(model, self.dev)
        return {f"dev_{k}": 100 * v for k, v in sasv_eers(scores, self.dev.keys).items()}


def to_binary(label: torch.Tensor, scheme: str) -> torch.Tensor:
    """Binary SASV labels (1 = target): 4-class samplers label targets 0 (see data.datasets.TRIAL_SCHEMES)."""
    return (label == 0).long() if scheme == "4class" else label.long()


def frozen_train_data(cfg: Mapping, seed: int) -> TrainData:
    """Training trials on cached train embeddings with the configured sampling scheme."""
    exp, db = experiment(cfg), database(cfg)
    asv = _cached_table(exp.asv_embeddings("train"), "train ASV embeddings", "save_asv_embeddings.py")
    cm = _cached_table(exp.cm_embeddings("train"), "train CM embeddings", "save_cm_score.py")
    entries = [e for e in db.cm_entries("train") if e.utt in asv and e.utt in cm]
    scheme = cfg["sampling"]["scheme"]
    if scheme == "baseline2":
        dataset = baseline2_train_dataset(entries, asv, cm, seed=seed, epoch_length=cfg["sampling"]["trials_per_epoch"])
    elif scheme in TRIAL_SCHEMES:
        length = cfg["sampling"]["trials_per_epoch"] or len(entries)
        dataset = SASVEmbeddingTrialDataset(SASVTrialSampler.from_cm_entries(entries, scheme), asv, cm,
                                            epoch_length=length, seed=seed)
    else:
        raise InputError(f"sampling.scheme is {scheme!r}; choose 2class, 4class or baseline2")
    return TrainData(dataset)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
def score_splits(cfg: Mapping, splits: Sequence[str] = EVAL_SPLITS) -> dict[str, dict]:
    """Scores the SASV trial lists with the configured back-end; writes score files, results.json, DET plots."""
    inputs = {s: trial_inputs(cfg, s) for s in splits}
    name = cfg["backend"]["name"]
    if is_score_backend(name):
        backend = fit_score_backend(cfg, inputs)
        scores = {s: backend.score(d.asv_scores, d.cm_scores) for s, d in inputs.items()}
        with atomic_write(experiment(cfg).root / "backend_state.json") as f:
            json.dump(backend.state_dict(), f, indent=1)
    else:
        first = next(iter(inputs.values()))
        backend = load_backend(cfg, first.asv.dim, first.cm.dim)
        scores = {s: score_embeddings(backend, d) for s, d in inputs.items()}
    return write_results(cfg, inputs, scores)


def write_results(cfg: Mapping, inputs: Mapping[str, TrialInputs], scores: Mapping[str, np.ndarray],
                  extra: Mapping | None = None) -> dict[str, dict]:
    exp = experiment(cfg)
    results: dict[str, dict] = {}
    for split, data in inputs.items():
        write_sasv_scores(exp.scores("sasv", split), _sasv_rows(data.trials, scores[split]))
        results[split] = evaluate_trials(data.keys, scores[split], data.asv_scores, data.cm_scores)
        if cfg["det"]:
            plot_det({cfg["backend"]["name"]: (scores[split], data.keys)}, exp.root / f"det_{split}.png",
                     title=f"{cfg['backend']['name']} on {split}")
    payload = {"backend": cfg["backend"]["name"], **json_ready(results), **(extra or {})}
    with atomic_write(exp.results) as f:
        json.dump(payload, f, indent=1)
    print(format_table({f"{cfg['backend']['name']} ({s})": r for s, r in results.items()}))
    _say(f"results -> {exp.results}")
    return results
