"""Deployed thresholds: choose one on dev, report what it actually does on eval.

Why: EER and min DCF pick the best threshold on the very scores they judge, which no deployed system can
do. Here a threshold is fixed on dev (at the EER point, the min-DCF / min-a-DCF point, or a target
false-accept rate) and then applied unchanged to eval, giving the actual miss and false-accept rates and the
actual (not minimum) DCF / a-DCF. The gap between actual and minimum cost on eval is the price of the
dev-chosen threshold.

Decision rule everywhere in this module: accept iff score >= threshold. Thresholds chosen by sweeping are
midpoints between adjacent distinct dev scores (or 1 below / above all of them), so that no dev trial sits
exactly on the threshold and the rule for ties cannot matter on dev. The EER threshold is the SASV 2022
ROC-interpolated one (`metrics.eer.roc_eer`), which can coincide with a dev score.

Score sets are mappings with keys 'target', 'nontarget' and (optionally) 'spoof' -> 1-D score arrays, or a
`metrics.trials.TrialClasses`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from common.config import Rule
from common.errors import InputError
from metrics.dcf import DCF_P005, PAPER_DEFAULT, ADCFCost, DCFCost, a_dcf_value
from metrics.eer import roc_eer
from metrics.trials import SASV_KEYS, TrialClasses, as_scores

METHODS = ("eer", "min_dcf", "min_a_dcf", "far")
NEGATIVES = {"nontarget": ("nontarget",), "spoof": ("spoof",), "both": ("nontarget", "spoof")}
# The target false-accept rate of method 'far' as configs and flags take it (ablation.thresholds.far, verify.py
# --far): 0 and 1 are no operating points to deploy.
FAR = Rule(0.01, above=0.0, below=1.0)


def _classes(scores: Mapping | TrialClasses, name: str) -> dict[str, np.ndarray]:
    if isinstance(scores, TrialClasses):
        scores = scores._asdict()
    unknown = sorted(set(scores) - set(SASV_KEYS))
    if unknown:
        raise InputError(f"{name}: unknown key {unknown[0]!r}; valid keys: {', '.join(SASV_KEYS)}")
    out = {k: as_scores(v, f"{name} '{k}' scores") for k, v in scores.items() if v is not None}
    return {k: v for k, v in out.items() if v.size > 0}


def _need(classes: dict[str, np.ndarray], keys: tuple[str, ...], name: str, what: str) -> None:
    for key in keys:
        if key not in classes:
            raise InputError(f"{name}: no '{key}' trials; {what} needs {', '.join(keys)} trials")


def _accept_rate(scores: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Fraction of `scores` >= each threshold (vectorised over thresholds)."""
    s = np.sort(scores)
    return 1.0 - np.searchsorted(s, np.asarray(thresholds, dtype=np.float64), side="left") / s.size


def candidate_thresholds(*score_sets: np.ndarray) -> np.ndarray:
    """Midpoints between adjacent distinct scores, plus one threshold below and one above all scores."""
    u = np.unique(np.concatenate(score_sets))
    return np.r_[u[0] - 1.0, (u[:-1] + u[1:]) / 2.0, u[-1] + 1.0]


def error_rates(scores: Mapping | TrialClasses, threshold: float, name: str = "scores") -> dict[str, float]:
    """Actual error rates at `threshold`: p_miss (targets rejected), p_fa_nontarget and, where spoof trials
    are given, p_fa_spoof (accepted fractions)."""
    c = _classes(scores, name)
    _need(c, ("target",), name, "a miss rate")
    out = {"p_miss": float(1.0 - _accept_rate(c["target"], threshold))}
    for key in ("nontarget", "spoof"):
        if key in c:
            out[f"p_fa_{key}"] = float(_accept_rate(c[key], threshold))
    return out


def _dcf(p_miss, p_fa, cost: DCFCost):
    norm = min(cost.c_miss * cost.p_target, cost.c_fa * (1.0 - cost.p_target))
    return (cost.c_miss * cost.p_target * p_miss + cost.c_fa * (1.0 - cost.p_target) * p_fa) / norm


def actual_dcf(target: np.ndarray, nontarget: np.ndarray, threshold: float, cost: DCFCost = DCF_P005) -> float:
    """Normalised DCF of target-vs-nontarget decisions at a fixed threshold (same normalisation as min DCF)."""
    r = error_rates({"target": target, "nontarget": nontarget}, threshold)
    return float(_dcf(r["p_miss"], r["p_fa_nontarget"], cost))


def actual_a_dcf(scores: Mapping | TrialClasses, threshold: float, cost: ADCFCost = PAPER_DEFAULT) -> float:
    """Normalised a-DCF (Shim et al. 2024) of SASV decisions at a fixed threshold."""
    c = _classes(scores, "a-DCF scores")
    _need(c, SASV_KEYS, "a-DCF scores", "a-DCF")
    r = error_rates(c, threshold)
    return float(a_dcf_value(r["p_miss"], r["p_fa_nontarget"], r["p_fa_spoof"], cost))


def choose_threshold(dev: Mapping | TrialClasses, method: str, *, negatives: str = "nontarget",
                     dcf_cost: DCFCost = DCF_P005, a_dcf_cost: ADCFCost = PAPER_DEFAULT,
                     far: float | None = None) -> float:
    """A threshold fixed on dev scores.

    method: 'eer' (equal error rate of target vs `negatives`: 'nontarget' | 'spoof' | 'both'; the SASV 2022
    ROC-interpolated EER point of `metrics.eer.roc_eer`), 'min_dcf' (target vs nontarget, `dcf_cost`),
    'min_a_dcf' (all three classes, `a_dcf_cost`), 'far' (the most accepting threshold whose false-accept
    rate on `negatives` is <= `far`). Ties between equally good thresholds go to the lowest one.
    """
    if method not in METHODS:
        raise InputError(f"unknown threshold method {method!r}; choose from {', '.join(METHODS)}")
    if negatives not in NEGATIVES:
        raise InputError(f"unknown negatives {negatives!r}; choose from {', '.join(NEGATIVES)}")
    c = _classes(dev, "dev scores")
    neg_keys = NEGATIVES[negatives]

    if method == "eer":
        _need(c, ("target",) + neg_keys, "dev scores", "the EER threshold")
        return float(roc_eer(c["target"], np.concatenate([c[k] for k in neg_keys])).threshold)
    if method == "far":
        if far is None or not 0.0 <= far <= 1.0:
            raise InputError(f"threshold method 'far' needs far in [0, 1], got {far!r}")
        _need(c, neg_keys, "dev scores", "a false-accept-rate threshold")
        neg = np.concatenate([c[k] for k in neg_keys])
        cands = candidate_thresholds(neg)
        ok = _accept_rate(neg, cands) <= far + 1e-12
        return float(cands[int(np.argmax(ok))])  # FA rate falls with the threshold: first valid = lowest
    if method == "min_dcf":
        _need(c, ("target", "nontarget"), "dev scores", "the min-DCF threshold")
        cands = candidate_thresholds(c["target"], c["nontarget"])
        cost = _dcf(1.0 - _accept_rate(c["target"], cands), _accept_rate(c["nontarget"], cands), dcf_cost)
        return float(cands[int(np.argmin(cost))])
    _need(c, SASV_KEYS, "dev scores", "the min-a-DCF threshold")
    cands = candidate_thresholds(*c.values())
    cost = a_dcf_value(1.0 - _accept_rate(c["target"], cands), _accept_rate(c["nontarget"], cands),
                       _accept_rate(c["spoof"], cands), a_dcf_cost)
    return float(cands[int(np.argmin(cost))])


def evaluate_threshold(scores: Mapping | TrialClasses, threshold: float, dcf_cost: DCFCost = DCF_P005,
                       a_dcf_cost: ADCFCost = PAPER_DEFAULT, name: str = "scores") -> dict[str, float]:
    """Error rates at `threshold`, plus actual DCF (if nontarget trials) and actual a-DCF (if spoof trials too)."""
    c = _classes(scores, name)
    out = {"threshold": float(threshold), **error_rates(c, threshold, name)}
    if "p_fa_nontarget" in out:
        out["actual_dcf"] = float(_dcf(out["p_miss"], out["p_fa_nontarget"], dcf_cost))
        if "p_fa_spoof" in out:
            out["actual_a_dcf"] = float(a_dcf_value(out["p_miss"], out["p_fa_nontarget"], out["p_fa_spoof"],
                                                    a_dcf_cost))
    return out


def threshold_report(dev: Mapping | TrialClasses, eval_: Mapping | TrialClasses, method: str, *,
                     negatives: str = "nontarget", dcf_cost: DCFCost = DCF_P005,
                     a_dcf_cost: ADCFCost = PAPER_DEFAULT, far: float | None = None) -> dict:
    """{'method', 'threshold', 'dev': rates/costs on dev, 'eval': rates/costs on eval} for a dev-chosen threshold."""
    t = choose_threshold(dev, method, negatives=negatives, dcf_cost=dcf_cost, a_dcf_cost=a_dcf_cost, far=far)
    return {"method": method, "threshold": t,
            "dev": evaluate_threshold(dev, t, dcf_cost, a_dcf_cost, "dev scores"),
            "eval": evaluate_threshold(eval_, t, dcf_cost, a_dcf_cost, "eval scores")}
