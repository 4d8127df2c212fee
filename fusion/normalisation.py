"""Sub-score normalisation and logistic calibration shared by the score-level back-ends.

Both return a few plain floats, so a fitted back-end's state stays JSON/npz friendly (no sklearn objects).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

NORMALISATIONS = ("none", "zscore", "minmax")


def fit_shift_scale(x: np.ndarray, kind: str, what: str) -> tuple[float, float]:
    """(shift, scale) such that (x - shift) / scale is the `kind` normalisation of x.

    none: (0, 1); zscore: (mean, std); minmax: (min, max - min), mapping the fit set onto [0, 1].
    """
    if kind == "none":
        return 0.0, 1.0
    if kind == "zscore":
        shift, scale = float(np.mean(x)), float(np.std(x))
    elif kind == "minmax":
        shift, scale = float(np.min(x)), float(np.max(x) - np.min(x))
    else:
        raise ValueError(f"unknown normalisation {kind!r}; valid: {list(NORMALISATIONS)}")
    if not scale > 0:
        raise ValueError(f"{what} are constant on the fit set; cannot {kind}-normalise them")
    return shift, scale


def logit(p: float) -> float:
    """log(p / (1 - p)): the log-odds of a prior."""
    return float(np.log(p) - np.log1p(-p))


def log_sigmoid(z: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-z))) without overflow; finite for every finite or clipped z."""
    return -np.logaddexp(0.0, -z)


def fit_logistic(x: np.ndarray, positive: np.ndarray, prior: float, c: float = 1e4) -> tuple[np.ndarray, float]:
    """Prior-weighted linear logistic regression whose output is a log-likelihood ratio.

    Positives are weighted to total `prior`, negatives to `1 - prior` (both scaled by N), so the fitted
    log-odds are those under the effective prior `prior`; subtracting logit(prior) leaves w @ x + b = LLR
    (BOSARIS-style calibration, Brummer). The L2 term with inverse strength `c` = 1e4 is negligible on
    overlapping classes and keeps the weights finite on separable ones. Features are standardised
    internally and the weights folded back.
    Returns (w (D,), b).
    """
    x = np.asarray(x, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"logistic calibration needs both classes, got {n_pos} positive and {n_neg} negative trials")
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = (x - mean) / std
    n = len(x)
    weights = np.where(positive, prior * n / n_pos, (1.0 - prior) * n / n_neg)
    model = LogisticRegression(C=c, max_iter=1000, tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z, positive.astype(int), sample_weight=weights)
    coef = model.coef_[0] / std
    bias = float(model.intercept_[0] - np.sum(coef * mean)) - logit(prior)
    return coef, bias
