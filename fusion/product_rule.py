"""Probabilistic (product-rule) fusion: P(target, bona fide) = P(target) x P(bona fide).

Zhang, Zhu and Duan, "A probabilistic fusion framework for spoofing aware speaker verification",
Odyssey 2022 (yzyouzhang/SASV_PR). Each sub-score is first turned into a posterior: the ASV score into
P(target | bona fide trial), the CM score into P(bona fide); the SASV score is their product, returned in
log space (log P_asv + log P_cm <= 0) so extreme sub-scores neither overflow nor underflow to -inf.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from fusion.base import ScoreBackend, check_keys, check_scores
from fusion.calibration import fit_logistic, log_sigmoid, logit

CALIBRATIONS = ("logistic", "sigmoid")
_LIMIT = 1e300  # clip the log-odds so that a * s never reaches inf for huge finite scores


class ProductRule(ScoreBackend):
    """score = log sigmoid(a_asv * asv + b_asv) + log sigmoid(a_cm * cm + b_cm).

    calibration: 'logistic' (default): (a, b) by 1-D prior-weighted logistic regression on the fit set,
        ASV on target vs nontarget (spoofs left out), CM on bona fide (target + nontarget) vs spoof;
        'sigmoid': a = 1, b = 0, i.e. sigmoid of the raw scores (the paper's uncalibrated variant; no fit).
    prior: the prior at which both posteriors are expressed (0.5: each posterior is sigmoid(LLR));
        used by 'logistic' only.
    """

    name = "product_rule"
    state_fields = {"calibration": str, "prior": float, "fitted": bool,
                    "a_asv": float, "b_asv": float, "a_cm": float, "b_cm": float}

    def __init__(self, calibration: str = "logistic", prior: float = 0.5):
        if calibration not in CALIBRATIONS:
            raise InputError(f"product_rule: option 'calibration' must be one of {list(CALIBRATIONS)}, "
                             f"got {calibration!r}")
        if not 0.0 < prior < 1.0:
            raise InputError(f"product_rule: option 'prior' must be in (0, 1), got {prior!r}")
        self.calibration, self.prior = calibration, float(prior)
        self.fitted = calibration == "sigmoid"
        self.a_asv, self.b_asv, self.a_cm, self.b_cm = 1.0, 0.0, 1.0, 0.0

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "ProductRule":
        asv, cm = check_scores(asv, cm, self.name)
        keys = check_keys(keys, len(asv), self.name)
        if self.calibration == "sigmoid":
            return self
        bona = keys != "spoof"
        try:
            w, b = fit_logistic(asv[bona, None], keys[bona] == "target", self.prior)
            self.a_asv, self.b_asv = float(w[0]), b + logit(self.prior)
            w, b = fit_logistic(cm[:, None], bona, self.prior)
            self.a_cm, self.b_cm = float(w[0]), b + logit(self.prior)
        except ValueError as e:
            raise ValueError(f"{self.name}: {e} (needs target, nontarget and spoof trials)") from None
        self.fitted = True
        return self

    def needs_classes(self) -> tuple[str, ...]:
        """ASV calibration: target vs nontarget; CM calibration: bona fide vs spoof ('sigmoid' fits nothing)."""
        return ("target", "nontarget", "spoof") if self.calibration == "logistic" else ()

    def log_posteriors(self, asv: np.ndarray, cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log P(target), log P(bona fide)) per trial."""
        if not self.fitted:
            raise RuntimeError("product_rule with calibration='logistic' must be fitted before scoring")
        asv, cm = check_scores(asv, cm, self.name)
        with np.errstate(over="ignore"):
            z_asv = np.clip(self.a_asv * asv + self.b_asv, -_LIMIT, _LIMIT)
            z_cm = np.clip(self.a_cm * cm + self.b_cm, -_LIMIT, _LIMIT)
        return log_sigmoid(z_asv), log_sigmoid(z_cm)

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        log_p_asv, log_p_cm = self.log_posteriors(asv, cm)
        return log_p_asv + log_p_cm
