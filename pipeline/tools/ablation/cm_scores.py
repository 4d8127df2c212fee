"""The CM score a system fuses: the cached bona fide logit, or the log odds / posterior from both logits."""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np

from common.errors import InputError
from pipeline.stages.sasv import TrialInputs

CM_SCORES = ("logit", "log_odds", "posterior")


def cm_logits(cfg: Mapping, data: TrialInputs) -> np.ndarray:
    """Both CM logits (N, 2) of each trial's test utterance, from its cached CM embedding through the CM
    model's `logits_from_embedding` (its output layer(s) after the embedding it returns; no dropout at eval), which
    every CM model has (common.model_contract.Countermeasure)."""
    import torch

    from pipeline.stages.frontends import build_cm

    model = build_cm(cfg["cm"], "cpu")
    if model.embedding_dim != data.cm.dim:
        raise InputError(f"{data.cm.source}: the cached CM embeddings are {data.cm.dim}-d, {cfg['cm']['arch']}'s "
                         f"are {model.embedding_dim}-d, so its output layer cannot give their logits; recompute them "
                         "(--force)")
    rows = data.cm.embeddings[[data.cm.index[t.utt] for t in data.trials]]
    with torch.no_grad():
        logits = model.logits_from_embedding(torch.from_numpy(rows)).double().numpy()  # build_cm: in eval mode
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
