"""Logistic-regression calibration: the one home of every score-to-LLR map the score-level back-ends fit.

Why one solver of our own: a fitted calibration must be a few plain floats (states are saved without pickle), the
toolkit must not need scikit-learn, and a paper's numbers must be reproducible exactly. Every calibration here
minimises the same objective as scikit-learn's `LogisticRegression(penalty="l2", C=c)`:

    sum_i s_i * log(1 + exp(-y_i * (w @ x_i + b)))  +  ||w||^2 / (2 c)      (y_i = +-1, intercept b unpenalised)

with sample weights s_i, by one of two solvers:
* 'newton': Newton's method with a backtracking line search (IRLS), run to the exact optimum (the gradient at
  rounding level, typically 10-15 iterations);
* 'lbfgs': scipy's L-BFGS-B on scikit-learn's scaling of that objective (divided by sum(s)) with its defaults
  (gtol = tol = 1e-4 on the scaled gradient, maxiter 100, maxls 50, ftol = 64 eps), starting from zero. It stops
  where scikit-learn's default solver stops, which on well-separated classes is not the optimum: on the shared
  reference vectors (metrics/fusion/) the organisers' ASV calibration stops at scale 0.939063 where the optimum is
  0.928454, moving fused scores by up to 0.47 (docs/backends.md, "Calibrated LLR fusion"). It exists to reproduce
  published tools exactly; 'newton' is the calibration itself.

Two weightings of the classes (`affine_calibration`):
* 'tool': the ASVspoof 5 organisers' score-fusion tool (asvspoof-challenge/asvspoof5, Tool-score-fusion): with
  pi the positive class's share of the fit set, positives weigh pi, negatives 1 - pi, C = 1, and logit(pi) is
  subtracted from the bias. Since the class totals are then pi^2 N and (1 - pi)^2 N, the fitted log-odds are
  LLR + 2 logit(pi), so the output is LLR + logit(pi): an LLR shifted by the fit set's class log-odds.
* 'balanced': each class weighs half the fit set whatever its count (BOSARIS' prior weighting at prior 0.5), C = 1,
  nothing subtracted: the output is an LLR whatever the class proportions of the fit set.
"""
from __future__ import annotations

import numpy as np

SOLVERS = ("newton", "lbfgs")
WEIGHTINGS = ("tool", "balanced")


def logit(p: float) -> float:
    """log(p / (1 - p)): the log-odds of a prior."""
    return float(np.log(p) - np.log1p(-p))


def log_sigmoid(z: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-z))) without overflow; finite for every finite or clipped z."""
    return -np.logaddexp(0.0, -z)


def _check_classes(positive: np.ndarray) -> None:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"logistic calibration needs both classes, got {n_pos} positive and {n_neg} negative trials")


def _newton(x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float) -> np.ndarray:
    """Exact minimiser (w..., b) of the weighted, L2-penalised logistic loss (y in {0, 1})."""
    design = np.c_[x, np.ones(len(x))]
    penalty = np.r_[np.full(x.shape[1], 1.0 / c), 0.0]
    sign = 2.0 * y - 1.0

    def objective(theta: np.ndarray) -> float:
        return float(np.sum(weight * np.logaddexp(0.0, -sign * (design @ theta))) + 0.5 * np.sum(penalty * theta ** 2))

    theta = np.zeros(design.shape[1])
    value = objective(theta)
    for _ in range(100):
        z = design @ theta
        p = np.exp(log_sigmoid(z))
        gradient = design.T @ (weight * (p - y)) + penalty * theta
        curvature = weight * p * np.exp(log_sigmoid(-z))
        hessian = (design * curvature[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        decrease = float(gradient @ step)
        if decrease <= 1e-28 * max(1.0, abs(value)):     # Newton decrement at rounding level: the optimum
            break
        t = 1.0
        while True:
            candidate = theta - t * step
            new = objective(candidate)
            if new <= value - 1e-4 * t * decrease or t < 1e-12:
                break
            t *= 0.5
        if new >= value:                                 # no further decrease representable
            break
        theta, value = candidate, new
    return theta


def _lbfgs(x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float) -> np.ndarray:
    """Where scikit-learn's default solver stops on the same objective (its scaling and stopping rule)."""
    # imported here: scipy.optimize is half a second of the start of every command that imports fusion/
    from scipy import optimize

    total = float(np.sum(weight))
    l2 = 1.0 / (c * total)

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        loss = np.logaddexp(0.0, z) - y * z
        residual = (np.exp(log_sigmoid(z)) - y) * weight / total
        value = float(np.sum(weight * loss) / total + 0.5 * l2 * (w @ w))
        return value, np.r_[x.T @ residual + l2 * w, residual.sum()]

    result = optimize.minimize(value_and_gradient, np.zeros(x.shape[1] + 1), method="L-BFGS-B", jac=True,
                               options={"maxiter": 100, "maxls": 50, "gtol": 1e-4,
                                        "ftol": 64 * np.finfo(float).eps})
    return result.x


def logistic_regression(x: np.ndarray, positive: np.ndarray, weight: np.ndarray, c: float,
                        solver: str = "newton") -> tuple[np.ndarray, float]:
    """(w (D,), b) minimising the module's objective for features x (N, D), boolean labels and sample weights."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown logistic-regression solver {solver!r}; valid: {list(SOLVERS)}")
    x = np.asarray(x, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    _check_classes(positive)
    fit = _newton if solver == "newton" else _lbfgs
    theta = fit(x, positive.astype(np.float64), np.asarray(weight, dtype=np.float64), float(c))
    return theta[:-1].copy(), float(theta[-1])


def affine_calibration(scores: np.ndarray, positive: np.ndarray, weighting: str = "tool",
                       solver: str = "newton") -> tuple[float, float]:
    """(scale, offset) of the calibrated score scale * s + offset of 1-D scores, by `weighting` (module docstring).
    C = 1 as in scikit-learn's defaults, which the organisers' tool uses."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown calibration weighting {weighting!r}; valid: {list(WEIGHTINGS)}")
    positive = np.asarray(positive, dtype=bool)
    _check_classes(positive)
    n, n_pos = positive.size, int(positive.sum())
    if weighting == "tool":
        share = n_pos / n
        weight, shift = np.where(positive, share, 1.0 - share), logit(share)
    else:
        weight, shift = np.where(positive, 0.5 * n / n_pos, 0.5 * n / (n - n_pos)), 0.0
    w, b = logistic_regression(np.asarray(scores, dtype=np.float64)[:, None], positive, weight, 1.0, solver)
    return float(w[0]), b - shift


def fit_logistic(x: np.ndarray, positive: np.ndarray, prior: float, c: float = 1e4) -> tuple[np.ndarray, float]:
    """Prior-weighted linear logistic regression whose output is a log-likelihood ratio (lr_fusion, product_rule).

    Positives are weighted to total `prior`, negatives to `1 - prior` (both scaled by N), so the fitted
    log-odds are those under the effective prior `prior`; subtracting logit(prior) leaves w @ x + b = LLR
    (BOSARIS-style calibration, Brummer). The L2 term with inverse strength `c` = 1e4 is negligible on
    overlapping classes and keeps the weights finite on separable ones. Features are standardised
    internally and the weights folded back. Exact optimum ('newton').
    Returns (w (D,), b).
    """
    x = np.asarray(x, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    _check_classes(positive)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    n = len(x)
    weights = np.where(positive, prior * n / n_pos, (1.0 - prior) * n / n_neg)
    w, b = logistic_regression((x - mean) / std, positive, weights, c, "newton")
    coef = w / std
    return coef, float(b - np.sum(coef * mean)) - logit(prior)
