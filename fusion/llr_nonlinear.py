"""The ASVspoof 5 organisers' non-linear fusion: the SASV log-likelihood ratio of two calibrated LLRs.

Wang et al., Interspeech 2024 (fusion/calibrated_llrs.py has the reference and the two steps before it). A SASV
negative is a nontarget with probability 1 - rho and a spoof with probability rho, so the likelihood ratio of a
target against that mixture is 1 / ((1 - rho) / LR_asv + rho / LR_cm), with LR_asv = p(x|tar) / p(x|non) and
LR_cm = p(x|tar) / p(x|spf):

    score = -log((1 - rho) exp(-LLR_asv) + rho exp(-LLR_cm))      (computed as a logsumexp: no overflow)

rho is searched on the fit set as the tool searches it (`search_rho`), or fixed by the user: the a-DCF's Bayes
decision weighs the negatives by cost x prior, so rho = C_fa_cm p_spoof / (C_fa_asv p_nontarget + C_fa_cm p_spoof)
makes the score the LLR that metrics.dcf.a_dcf_bayes_threshold assumes (docs/backends.md, "Threshold policy").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from fusion.base import check_scores, require_keys
from fusion.calibrated_llrs import CalibratedLLRs
from metrics.eer import det_eer

# The tool's grid: 5 rounds of 10 points, each round narrowed to the half of the interval beside the best point.
GRID_ROUNDS, GRID_POINTS = 5, 10


def fuse_nonlinear(llr_asv: np.ndarray, llr_cm: np.ndarray, rho: float) -> np.ndarray:
    """-log((1 - rho) exp(-llr_asv) + rho exp(-llr_cm)) for rho in [0, 1]; rho 0 gives llr_asv, 1 gives llr_cm."""
    with np.errstate(divide="ignore"):
        return -np.logaddexp(np.log1p(-rho) - llr_asv, np.log(rho) - llr_cm)


def search_rho(llr_asv: np.ndarray, llr_cm: np.ndarray, is_target: np.ndarray) -> float:
    """The tool's coarse-to-fine search (score-fusion.py, grid_search_rho): the rho of the lowest SASV-EER
    (target vs nontarget + spoof; the ASVspoof DET convention, metrics.eer.det_eer, as its util_metric) on
    np.linspace grids over [0, 1], a later point winning ties; after each round the interval keeps the half
    beside the best point, stopping early when the best point is the interval's end."""
    best_eer, best = 1.0, 0.0
    lo, hi = 0.0, 1.0
    for _ in range(GRID_ROUNDS):
        for rho in np.linspace(lo, hi, GRID_POINTS):
            fused = fuse_nonlinear(llr_asv, llr_cm, float(rho))
            eer = det_eer(fused[is_target], fused[~is_target]).eer
            if eer <= best_eer:
                best_eer, best = eer, float(rho)
        if hi - best < best - lo:
            lo = best
            if hi == best:
                break
        else:
            hi = best
            if lo == best:
                break
    return best


class LLRNonlinear(CalibratedLLRs):
    """score = -log((1 - rho) exp(-LLR_asv) + rho exp(-LLR_cm)): an LLR of target vs the negatives' mixture.

    rho: None (default): searched on the fit set's SASV-EER, as the tool does (needs spoof trials in the fit set);
        a number in [0, 1]: fixed (the cost model's spoof share of the negatives, for a Bayes decision).
    The other options: fusion/calibrated_llrs.py.
    """

    name = "llr_nonlinear"
    outputs_llr = True
    state_fields = {**CalibratedLLRs.base_fields, "search_rho": bool, "rho": float}

    def __init__(self, llrs: str = "gaussian", weighting: str = "tool", solver: str = "lbfgs",
                 rho: float | None = None):
        super().__init__(llrs=llrs, weighting=weighting, solver=solver)
        if rho is not None and (isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= rho <= 1.0):
            raise InputError(f"{self.name}: option 'rho' must be a number in [0, 1] or null (search it on the fit "
                             f"set), got {rho!r}")
        self.search_rho = rho is None
        self.rho = 0.0 if rho is None else float(rho)

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "LLRNonlinear":
        asv, cm = check_scores(asv, cm, self.name)
        keys = np.asarray(keys).astype(str)
        if self.search_rho:
            require_keys(keys, ("spoof",), self.name, "the search of rho")
        llr_asv, llr_cm = self.fit_llrs(asv, cm, keys)
        if self.search_rho:
            self.rho = search_rho(llr_asv, llr_cm, keys == "target")
        return self

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        llr_asv, llr_cm = self.calibrated_llrs(asv, cm)
        return fuse_nonlinear(llr_asv, llr_cm, self.rho)
