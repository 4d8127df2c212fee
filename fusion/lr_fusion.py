"""Linear logistic-regression fusion of [ASV score, CM score] into a calibrated SASV log-likelihood ratio.

The classic score-fusion recipe (Brummer et al., "Fusion of heterogeneous speaker recognition systems in
the STBU submission for the NIST SRE 2006", IEEE TASLP 2007; BOSARIS toolkit), applied to SASV with
target as the positive class and nontarget + spoof as the negative class.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from fusion.base import ScoreBackend, check_keys, check_scores
from fusion.calibration import fit_logistic


class LRFusion(ScoreBackend):
    """score = w_asv * asv + w_cm * cm + bias, a log-likelihood ratio target vs (nontarget + spoof).

    prior: effective target prior of the training objective (default 0.5: classes weighted equally,
        whatever their counts in the fit set). The fitted log-odds at that prior minus logit(prior) is the
        LLR, so the output is an LLR for every prior; the prior only decides which operating region the
        fit favours. The negative class is the fit set's own mixture of nontargets and spoofs.
    """

    name = "lr_fusion"
    outputs_llr = True
    state_fields = {"prior": float, "fitted": bool, "w_asv": float, "w_cm": float, "bias": float}

    def __init__(self, prior: float = 0.5):
        if not 0.0 < prior < 1.0:
            raise InputError(f"lr_fusion: option 'prior' must be in (0, 1), got {prior!r}")
        self.prior = float(prior)
        self.fitted = False
        self.w_asv, self.w_cm, self.bias = 0.0, 0.0, 0.0

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "LRFusion":
        asv, cm = check_scores(asv, cm, self.name)
        keys = check_keys(keys, len(asv), self.name)
        try:
            w, self.bias = fit_logistic(np.stack([asv, cm], axis=1), keys == "target", self.prior)
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from None
        self.w_asv, self.w_cm = float(w[0]), float(w[1])
        self.fitted = True
        return self

    def needs_classes(self) -> tuple[str, ...]:
        """Target vs the rest: targets and at least one kind of negative."""
        return ("target", "nontarget|spoof")

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("lr_fusion must be fitted before scoring")
        asv, cm = check_scores(asv, cm, self.name)
        return self.w_asv * asv + self.w_cm * cm + self.bias
