"""SASV 2022 Baseline1: the sum of the ASV cosine score and the CM bona fide logit.

Jung et al., "SASV 2022: The first spoofing-aware speaker verification challenge", Interspeech 2022
(sasv-challenge/SASVC2022_Baseline). The raw sum lets the sub-score with the larger range dominate, so each
sub-score can first be normalised with statistics of the fit set.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from fusion.base import ScoreBackend, check_keys, check_scores
from fusion.normalisation import NORMALISATIONS, fit_shift_scale


class ScoreSum(ScoreBackend):
    """score = (asv - asv_shift) / asv_scale + (cm - cm_shift) / cm_scale.

    normalise: 'none' (Baseline1 as published; fit is optional) | 'zscore' (mean/std of all fit trials)
    | 'minmax' (min/max of all fit trials, mapping each sub-score to [0, 1] on the fit set).
    """

    name = "score_sum"
    state_fields = {"normalise": str, "fitted": bool, "asv_shift": float, "asv_scale": float,
                    "cm_shift": float, "cm_scale": float}

    def __init__(self, normalise: str = "none"):
        if normalise not in NORMALISATIONS:
            raise InputError(f"score_sum: option 'normalise' must be one of {list(NORMALISATIONS)}, got {normalise!r}")
        self.normalise = normalise
        self.fitted = normalise == "none"
        self.asv_shift, self.asv_scale, self.cm_shift, self.cm_scale = 0.0, 1.0, 0.0, 1.0

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "ScoreSum":
        asv, cm = check_scores(asv, cm, self.name)
        check_keys(keys, len(asv), self.name)
        self.asv_shift, self.asv_scale = fit_shift_scale(asv, self.normalise, "ASV scores")
        self.cm_shift, self.cm_scale = fit_shift_scale(cm, self.normalise, "CM scores")
        self.fitted = True
        return self

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError(f"score_sum with normalise={self.normalise!r} must be fitted before scoring")
        asv, cm = check_scores(asv, cm, self.name)
        return (asv - self.asv_shift) / self.asv_scale + (cm - self.cm_shift) / self.cm_scale
