"""Minimum tandem detection cost (t-DCF) of a spoofing countermeasure in front of a fixed ASV system.

Two published forms, both normalised and minimised over the CM threshold (ASVspoof DET points):
* `min_t_dcf_legacy`: ASVspoof 2019 (C1/C2 terms, normalised by the better CM-free trivial system);
* `min_t_dcf`: ASVspoof 2021 / ASVspoof 5 (C0/C1/C2 terms, normalised by C0 + min(C1, C2)).
The ASV system enters only through its error rates at one threshold (`asv_operating_point`), by default
its EER threshold on target vs nontarget trials, as in the challenges; or the ASVspoof 5 organisers' ASV
(`ASVSPOOF5_ORGANISERS_ASV`), whose error rates the ASVspoof 5 package uses when given no ASV scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from common.errors import InputError
from metrics.dcf import MinCost, check_priors
from metrics.eer import det_curve, det_eer
from metrics.trials import TrialClasses, as_scores, require


class ASVOperatingPoint(NamedTuple):
    """ASV error rates at one threshold (accept when score >= threshold)."""
    threshold: float
    p_miss: float        # targets rejected
    p_fa: float          # nontargets accepted
    p_miss_spoof: float  # spoofs rejected
    p_fa_spoof: float    # spoofs accepted


def asv_operating_point(asv: TrialClasses, threshold: float | None = None) -> ASVOperatingPoint:
    """The ASV error rates at `threshold`, by default the ASVspoof-convention EER threshold (target vs nontarget)."""
    require(asv, ("target", "nontarget", "spoof"), "ASV operating point")
    tar, non, spf = (as_scores(a, "ASV scores") for a in asv)
    if threshold is None:
        threshold = det_eer(tar, non).threshold
    return ASVOperatingPoint(
        threshold=float(threshold),
        p_miss=float(np.count_nonzero(tar < threshold) / tar.size),
        p_fa=float(np.count_nonzero(non >= threshold) / non.size),
        p_miss_spoof=float(np.count_nonzero(spf < threshold) / spf.size),
        p_fa_spoof=float(np.count_nonzero(spf >= threshold) / spf.size),
    )


def asvspoof5_package_operating_point(asv: TrialClasses) -> ASVOperatingPoint:
    """The ASV operating point as the ASVspoof 5 evaluation package builds it from ASV scores.

    That package (calculate_metrics.py, when given the ASV scores) passes the ASV's spoof *rejection*
    rate where the t-DCF formula takes its spoof *acceptance* rate (it reads item 2 instead of 3 of
    `obtain_asv_error_rates`). Published ASVspoof 5 t-DCFs are that package's numbers, so the report's
    `min_t_dcf_asvspoof5` uses this point, and `min_t_dcf_asvspoof5_formula` the definition
    (`asv_operating_point`).
    """
    point = asv_operating_point(asv)
    return point._replace(p_fa_spoof=point.p_miss_spoof)


# The ASV operating point the ASVspoof 5 evaluation package uses when it is given no ASV scores, i.e. the min t-DCF
# that `evaluation.py --m t2_tandem` prints for a Track 2 submission: the organisers' ASV pooled over all conditions,
# hard-coded in calculate_metrics.py (`Pfa_non_ASV_org`, `Pmiss_ASV_org`, `Pfa_spf_ASV_org`). The package passes the
# third as the formula's spoof acceptance rate; the threshold is not published.
ASVSPOOF5_ORGANISERS_ASV = ASVOperatingPoint(threshold=float("nan"), p_miss=0.01880141010575793,
                                             p_fa=0.01881016557566423, p_miss_spoof=1 - 0.4607082907604729,
                                             p_fa_spoof=0.4607082907604729)


@dataclass(frozen=True)
class LegacyTDCFCost:
    """ASVspoof 2019 t-DCF costs: separate miss / false-alarm costs for the ASV and for the CM."""
    p_target: float
    p_nontarget: float
    p_spoof: float
    c_miss_asv: float
    c_fa_asv: float
    c_miss_cm: float
    c_fa_cm: float

    def __post_init__(self) -> None:
        check_priors("LegacyTDCFCost", {"p_target": self.p_target, "p_nontarget": self.p_nontarget,
                                         "p_spoof": self.p_spoof},
                      {"c_miss_asv": self.c_miss_asv, "c_fa_asv": self.c_fa_asv,
                       "c_miss_cm": self.c_miss_cm, "c_fa_cm": self.c_fa_cm})


@dataclass(frozen=True)
class TDCFCost:
    """ASVspoof 2021 / 5 t-DCF costs: the tandem system's costs for a miss, a nontarget and a spoof accepted."""
    p_target: float
    p_nontarget: float
    p_spoof: float
    c_miss: float
    c_fa: float
    c_fa_spoof: float

    def __post_init__(self) -> None:
        check_priors("TDCFCost", {"p_target": self.p_target, "p_nontarget": self.p_nontarget,
                                   "p_spoof": self.p_spoof},
                      {"c_miss": self.c_miss, "c_fa": self.c_fa, "c_fa_spoof": self.c_fa_spoof})


_P_SPOOF = 0.05
ASVSPOOF2019_LEGACY = LegacyTDCFCost(p_target=(1 - _P_SPOOF) * 0.99, p_nontarget=(1 - _P_SPOOF) * 0.01,
                                     p_spoof=_P_SPOOF, c_miss_asv=1, c_fa_asv=10, c_miss_cm=1, c_fa_cm=10)
ASVSPOOF5_TDCF = TDCFCost(p_target=(1 - _P_SPOOF) * 0.99, p_nontarget=(1 - _P_SPOOF) * 0.01,
                          p_spoof=_P_SPOOF, c_miss=1, c_fa=10, c_fa_spoof=10)


def _negative_weights(form: str, **weights: float) -> None:
    bad = {k: v for k, v in weights.items() if v < 0}
    if bad:
        detail = ", ".join(f"{k}={v:.4g}" for k, v in bad.items())
        raise InputError(f"{form} t-DCF undefined: negative weight {detail}; the ASV operating point is worse "
                         f"than chance (are the ASV scores inverted?)")


def _minimum(curve: np.ndarray, thresholds: np.ndarray) -> MinCost:
    k = int(np.argmin(curve))
    return MinCost(float(curve[k]), float(thresholds[k]))


def min_t_dcf_legacy(bonafide_cm: np.ndarray, spoof_cm: np.ndarray, asv: ASVOperatingPoint,
                     cost: LegacyTDCFCost = ASVSPOOF2019_LEGACY) -> MinCost:
    """ASVspoof 2019 normalised min t-DCF: (C1*Pmiss_cm + C2*Pfa_cm) / min(C1, C2)."""
    p_miss_cm, p_fa_cm, thresholds = det_curve(bonafide_cm, spoof_cm)
    c1 = cost.p_target * (cost.c_miss_cm - cost.c_miss_asv * asv.p_miss) - cost.p_nontarget * cost.c_fa_asv * asv.p_fa
    c2 = cost.c_fa_cm * cost.p_spoof * (1 - asv.p_miss_spoof)
    _negative_weights("ASVspoof 2019", C1=c1, C2=c2)
    if min(c1, c2) == 0:  # e.g. the ASV rejects every spoof (C2 = 0): the normalised form is undefined (0/0)
        return MinCost(float("nan"), float("nan"))
    return _minimum((c1 * p_miss_cm + c2 * p_fa_cm) / min(c1, c2), thresholds)


def min_t_dcf(bonafide_cm: np.ndarray, spoof_cm: np.ndarray, asv: ASVOperatingPoint,
              cost: TDCFCost = ASVSPOOF5_TDCF) -> MinCost:
    """ASVspoof 2021 / 5 normalised min t-DCF: (C0 + C1*Pmiss_cm + C2*Pfa_cm) / (C0 + min(C1, C2))."""
    p_miss_cm, p_fa_cm, thresholds = det_curve(bonafide_cm, spoof_cm)
    asv_cost = cost.p_target * cost.c_miss * asv.p_miss + cost.p_nontarget * cost.c_fa * asv.p_fa
    c0 = asv_cost
    c1 = cost.p_target * cost.c_miss - asv_cost
    c2 = cost.p_spoof * cost.c_fa_spoof * asv.p_fa_spoof
    _negative_weights("ASVspoof 5", C0=c0, C1=c1, C2=c2)
    return _minimum((c0 + c1 * p_miss_cm + c2 * p_fa_cm) / (c0 + min(c1, c2)), thresholds)
