"""Training an embedding-level SASV back-end on cached front-end embeddings (mode: frozen)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from common.errors import InputError
from data.trial_sampling import (
    TRIAL_SCHEMES,
    SASVEmbeddingTrialDataset,
    SASVTrialSampler,
    baseline2_train_dataset,
    target_label,
)
from engine import FitResult, TrainData, fit, load_model_weights, seed_everything
from metrics.sasv import sasv_eers
from pipeline.stages.backend import backend_options, ready_backend, save_backend
from pipeline.stages.experiment import database
from pipeline.stages.outputs import asv_embeddings_spec, cm_embeddings_spec, current_output, table_of
from pipeline.stages.sasv import TrialInputs, score_embeddings


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


def train_frozen_backend(cfg: Mapping, dev: TrialInputs, folder: Path, saved: Path, *, resume: bool = False,
                         replace: bool = False) -> tuple[nn.Module, FitResult]:
    """Trains the configured embedding back-end on the cached train embeddings (main.py's frozen mode and each seed of
    an ablation system): seeded by `train.seed`, started by `ready_backend` (backend.checkpoint's, else new), trained
    in `folder` (engine.fit's `resume` / `replace`), selected by dev SASV-EER on `dev`, saved as `saved` (backend.pt,
    with the options it was built with). Returns the selected back-end, in eval mode, and the training's result."""
    seed = cfg["train"]["seed"]
    seed_everything(seed)   # the back-end's initial weights (fit seeds what follows)
    backend = ready_backend(cfg, dims=(dev.asv.dim, dev.cm.dim), for_training=True)
    result = fit(backend, FrozenBackendTask(dev, cfg["sampling"]["scheme"]), frozen_train_data(cfg, seed),
                 cfg["train"], folder, resume=resume, replace=replace)
    load_model_weights(backend, result.best_checkpoint or result.last_checkpoint)
    save_backend(saved, backend, cfg["backend"]["name"], backend_options(cfg))
    return backend.eval(), result


def to_binary(label: torch.Tensor, scheme: str) -> torch.Tensor:
    """Binary SASV labels (1 = target) from a scheme's labels (data.trial_sampling.TRIAL_SCHEMES: 4class labels
    targets 0; baseline2 draws 2class trials)."""
    return (label == target_label("2class" if scheme == "baseline2" else scheme)).long()


def frozen_train_data(cfg: Mapping, seed: int) -> TrainData:
    """Training trials on cached train embeddings with the configured sampling scheme."""
    db = database(cfg)
    asv_spec, cm_spec = asv_embeddings_spec(cfg, "train", db), cm_embeddings_spec(cfg, "train", db)
    asv = table_of(current_output(asv_spec, cfg), asv_spec.path)
    cm = table_of(current_output(cm_spec, cfg), cm_spec.path)
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
