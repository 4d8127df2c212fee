"""Calibration of LLR-like scores: Cllr, min Cllr and a reliability plot.

Why: EER and min DCF only judge how well scores are ranked. A deployed system also needs the scores to mean
what they say (log-likelihood ratios), so that a Bayes threshold -log(prior odds) works without tuning. Cllr
(Brümmer & du Preez, 2006) is the cost of using the scores as LLRs, averaged over all operating points, in
bits:
    Cllr = 1/2 [ mean_target log2(1 + e^-s) + mean_nontarget log2(1 + e^s) ]
Cllr = 1 is a system that always says LLR = 0 (no information); 0 is perfect. min Cllr is the Cllr after the
best monotonic re-mapping of the scores, found by PAV (isotonic regression of the labels on the scores, ties
pooled) and converted back to LLRs by removing the empirical prior log-odds. Cllr - min Cllr is the
calibration loss.
"""
from __future__ import annotations

import os

import numpy as np

from common.errors import InputError

_LOG2 = np.log(2.0)


def _check(tar: np.ndarray, non: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tar = np.asarray(tar, dtype=np.float64).ravel()
    non = np.asarray(non, dtype=np.float64).ravel()
    if len(tar) == 0 or len(non) == 0:
        raise InputError(f"calibration needs target and non-target scores, got {len(tar)} and {len(non)}")
    if np.isnan(tar).any() or np.isnan(non).any():
        raise InputError("calibration: scores contain NaN")
    return tar, non


def cllr(target_llrs: np.ndarray, nontarget_llrs: np.ndarray) -> float:
    """Cllr in bits of scores read as natural-log likelihood ratios (infinite LLRs allowed when right)."""
    tar, non = _check(target_llrs, nontarget_llrs)
    with np.errstate(over="ignore"):
        c_tar = np.mean(np.logaddexp(0.0, -tar)) / _LOG2
        c_non = np.mean(np.logaddexp(0.0, non)) / _LOG2
    return float(0.5 * (c_tar + c_non))


def pav_llrs(target_scores: np.ndarray, nontarget_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimally re-mapped LLRs of the same trials (PAV): monotonic in the scores, possibly +/- inf."""
    from sklearn.isotonic import IsotonicRegression

    tar, non = _check(target_scores, nontarget_scores)
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(len(tar)), np.zeros(len(non))])
    posterior = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(scores, labels)
    posterior = np.clip(posterior, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)
    llr = log_odds - np.log(len(tar) / len(non))
    return llr[: len(tar)], llr[len(tar):]


def min_cllr(target_scores: np.ndarray, nontarget_scores: np.ndarray) -> float:
    """Cllr after the best monotonic calibration (PAV): the discrimination part of Cllr."""
    return cllr(*pav_llrs(target_scores, nontarget_scores))


def reliability_curve(target_llrs: np.ndarray, nontarget_llrs: np.ndarray, n_bins: int = 10
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of predicted target posterior (at prior 0.5, i.e. sigmoid(LLR)): (mean predicted posterior,
    observed target fraction with the two classes weighted equally, trial count). Empty bins are dropped.
    Calibrated LLRs lie on the diagonal whatever the class proportions of the test set."""
    tar, non = _check(target_llrs, nontarget_llrs)
    llr = np.concatenate([tar, non])
    is_tar = np.concatenate([np.ones(len(tar)), np.zeros(len(non))])
    weight = np.where(is_tar == 1, 0.5 / len(tar), 0.5 / len(non))
    with np.errstate(over="ignore"):
        predicted = 1.0 / (1.0 + np.exp(-llr))
    bins = np.minimum((predicted * n_bins).astype(int), n_bins - 1)
    w_sum = np.bincount(bins, weight, minlength=n_bins)
    pred = np.bincount(bins, weight * predicted, minlength=n_bins)
    obs = np.bincount(bins, weight * is_tar, minlength=n_bins)
    count = np.bincount(bins, minlength=n_bins)
    keep = count > 0
    return pred[keep] / w_sum[keep], obs[keep] / w_sum[keep], count[keep]


def plot_reliability(target_llrs: np.ndarray, nontarget_llrs: np.ndarray, path: str | os.PathLike,
                     n_bins: int = 10, title: str = "Reliability") -> None:
    """Saves a reliability diagram (observed vs predicted target posterior) with Cllr / min Cllr to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.io import atomic_write

    pred, obs, count = reliability_curve(target_llrs, nontarget_llrs, n_bins)
    actual, minimum = cllr(target_llrs, nontarget_llrs), min_cllr(target_llrs, nontarget_llrs)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(pred, obs, "o-", label="system")
    for p, o, c in zip(pred, obs, count, strict=True):
        ax.annotate(str(int(c)), (p, o), textcoords="offset points", xytext=(3, -10), fontsize=6)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(target) = sigmoid(LLR)",
           ylabel="observed target fraction (equal class weights)",
           title=f"{title}\nCllr {actual:.3f}, min Cllr {minimum:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
