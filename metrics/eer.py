"""Equal error rates in the two community conventions.

* `roc_eer`: the SASV 2022 challenge convention: the ROC curve over all distinct thresholds, linearly
  interpolated, and the EER where FPR = 1 - TPR. Here the crossing is solved in closed form on the
  piecewise-linear curve instead of with a numerical root finder, which gives the same value.
* `det_eer`: the ASVspoof convention: one DET point per sorted score (ties broken stably, positives
  first) and the point where |FRR - FAR| is smallest, reported as the mean of the two rates.

Both accept when score > threshold; rates are fractions in [0, 1].
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from common.errors import InputError
from metrics.trials import RankedTrials, as_scores


class EER(NamedTuple):
    eer: float
    threshold: float


def _check_pair(positive: np.ndarray, negative: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    positive, negative = as_scores(positive, f"{what} positives"), as_scores(negative, f"{what} negatives")
    if positive.size == 0 or negative.size == 0:
        raise InputError(f"{what}: needs at least one positive and one negative trial "
                         f"(got {positive.size} and {negative.size})")
    return positive, negative


def roc_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, from (0, 0) at threshold +inf up to (1, 1)."""
    positive, negative = _check_pair(positive, negative, "ROC")
    scores = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    order = np.argsort(-scores, kind="stable")
    return _roc_of_sorted(scores[order], labels[order], positive.size, negative.size)


def ranked_roc_curve(ranked: RankedTrials, negatives: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`roc_curve(target, the classes numbered in negatives)` read off scores sorted once (metrics.trials.rank_trials):
    the same fpr and tpr, since a run of tied scores is one point whatever the order inside it (a threshold can
    differ only in the sign of a zero score)."""
    n_pos, n_neg = ranked.counts[0], sum(ranked.counts[c] for c in negatives)
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"ROC: needs at least one positive and one negative trial (got {n_pos} and {n_neg})")
    keep = ranked.labels == 0
    for c in negatives:
        keep |= ranked.labels == c
    labels = ranked.labels[keep][::-1]
    return _roc_of_sorted(ranked.scores[keep][::-1], (labels == 0).astype(np.float64), n_pos, n_neg)


def _roc_of_sorted(scores: np.ndarray, labels: np.ndarray, n_pos: int, n_neg: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC points of scores sorted in descending order with their labels (1.0 positive, 0.0 negative)."""
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[last_of_run]
    fps = last_of_run + 1 - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, scores[last_of_run]]
    return fpr, tpr, thresholds


def roc_eer(positive: np.ndarray, negative: np.ndarray) -> EER:
    """SASV 2022 EER: where the interpolated ROC curve crosses FPR = 1 - TPR."""
    return roc_curve_eer(*roc_curve(positive, negative))


def roc_curve_eer(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> EER:
    """`roc_eer` of a curve `roc_curve` gave, for a caller that also needs the curve (a DET plot) and so sorts the
    scores once."""
    gap = 1.0 - tpr - fpr  # FNR - FPR: 1 at the first point, -1 at the last, non-increasing
    j = int(np.argmax(gap <= 0.0))
    i = j - 1
    t = gap[i] / (gap[i] - gap[j])
    eer = fpr[i] + t * (fpr[j] - fpr[i])
    lo = thresholds[i] if np.isfinite(thresholds[i]) else thresholds[j]
    return EER(float(eer), float(lo + t * (thresholds[j] - lo)))


def det_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASVspoof DET points (frr, far, thresholds): one per sorted score plus 'accept all' at the start.

    Point k rejects the k lowest scores; with tied scores the positives count as rejected first.
    """
    positive, negative = _check_pair(positive, negative, "DET")
    scores = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    order = np.argsort(scores, kind="stable")
    labels = labels[order]
    positives_below = np.cumsum(labels)
    negatives_above = negative.size - (np.arange(1, scores.size + 1) - positives_below)
    frr = np.r_[0.0, positives_below / positive.size]
    far = np.r_[1.0, negatives_above / negative.size]
    thresholds = np.r_[scores[order[0]] - 0.001, scores[order]]
    return frr, far, thresholds


def det_eer(positive: np.ndarray, negative: np.ndarray) -> EER:
    """ASVspoof EER: mean of FRR and FAR at the DET point where they are closest (first such point)."""
    frr, far, thresholds = det_curve(positive, negative)
    k = int(np.argmin(np.abs(frr - far)))
    return EER(float((frr[k] + far[k]) / 2.0), float(thresholds[k]))
