"""The ASVspoof 5 organisers' linear fusion: the sum of the calibrated ASV and CM log-likelihood ratios.

Wang et al., Interspeech 2024 (fusion/calibrated_llrs.py has the reference and the two steps before the sum);
the tool's `--use_linear_fusion`. With llrs='affine' it is the score sum on calibrated sub-scores: each sub-score
mapped to its LLR by logistic calibration, then added.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fusion.base import check_scores
from fusion.calibrated_llrs import CalibratedLLRs


class LLRLinear(CalibratedLLRs):
    """score = LLR_asv + LLR_cm (both calibrated).

    Not an LLR itself (outputs_llr is False): it is the log of the product of the two likelihood ratios,
    p(x|tar)^2 / (p(x|non) p(x|spf)) for the Gaussian LLRs, a ratio of no pair of hypotheses a SASV decision
    weighs; its Bayes threshold is unknown, so pick its threshold on dev (metrics.thresholds). llr_nonlinear is
    the SASV LLR of the same two calibrated LLRs.
    """

    name = "llr_linear"
    state_fields = dict(CalibratedLLRs.base_fields)

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "LLRLinear":
        asv, cm = check_scores(asv, cm, self.name)
        self.fit_llrs(asv, cm, keys)
        return self

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        llr_asv, llr_cm = self.calibrated_llrs(asv, cm)
        return llr_asv + llr_cm
