"""Detection cost functions: the two-class minDCF (ASV, or a countermeasure) and the SASV a-DCF.

* `min_dcf`: the normalised minimum DCF of a two-class detector (positive = ASV target or CM bona fide), with a
  configurable positive prior, over every distinct threshold (accept when score >= threshold): the NIST / VoxSRC
  minDCF, and the ASVspoof 5 Track 1 minDCF with `ASVSPOOF5_CM`. The ASVspoof 5 package minimises over its DET
  points instead, one per sorted score (`metrics.eer.det_curve`), which inside a run of tied scores rejects the
  positives first: the cost rises, then falls along the run, so no point inside it is cheaper than its ends, which
  are thresholds. Same minimum (tests/test_metrics.py checks it against the package's loop).
* `bayes_threshold`: the threshold a cost model implies for scores that are log-likelihood ratios; the ASVspoof 5
  actDCF is the DCF there (`metrics.thresholds.actual_dcf`).
* `min_a_dcf`: the architecture-agnostic DCF of Shim et al. (Odyssey 2024) for one SASV score: three
  classes, one threshold. It follows the reference package: one point per sorted score (ties broken
  stably in the order target, nontarget, spoof) plus 'accept all' just below the lowest score, and a cost
  normalised by the better of the two trivial systems (accept all, reject all).
* `a_dcf_bayes_threshold` / `act_a_dcf`: the threshold the a-DCF's cost model implies for a SASV score that is a
  log-likelihood ratio of target vs the negatives, and the a-DCF actually paid there (docstrings below).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from common.errors import InputError
from metrics.eer import roc_curve
from metrics.trials import RankedTrials, TrialClasses, as_scores, rank_trials, require


class MinCost(NamedTuple):
    """A minimum normalised cost and the threshold where it is reached (see each function for >= or >)."""
    value: float
    threshold: float


def check_priors(name: str, priors: dict[str, float], costs: dict[str, float]) -> None:
    for key, v in {**priors, **costs}.items():
        if not np.isfinite(v) or v < 0:
            raise InputError(f"{name}: {key}={v} must be a finite non-negative number")
    if abs(sum(priors.values()) - 1.0) > 1e-9:
        raise InputError(f"{name}: priors {priors} must sum to 1")


@dataclass(frozen=True)
class DCFCost:
    """Two-class detection cost: the prior of the positive class (ASV target, CM bona fide) and the costs of a miss
    (a positive rejected) and of a false alarm (a negative accepted)."""
    p_target: float
    c_miss: float = 1.0
    c_fa: float = 1.0

    def __post_init__(self) -> None:
        check_priors("DCFCost", {"p_target": self.p_target, "p_nontarget": 1.0 - self.p_target},
                      {"c_miss": self.c_miss, "c_fa": self.c_fa})


# The two operating points used in speaker-verification papers (NIST SRE / VoxCeleb, VoxSRC).
DCF_P001 = DCFCost(p_target=0.01)
DCF_P005 = DCFCost(p_target=0.05)
# ASVspoof 5 Track 1 (evaluation plan; evaluation package calculate_metrics.py): spoof prior 0.05, so the bona fide
# (positive) prior is 1 - 0.05; Cmiss 1 (a bona fide utterance rejected), Cfa 10 (a spoof accepted).
ASVSPOOF5_CM = DCFCost(p_target=1 - 0.05, c_miss=1, c_fa=10)


def min_dcf(target: np.ndarray, nontarget: np.ndarray, cost: DCFCost = DCF_P001) -> MinCost:
    """Normalised minimum DCF: min over thresholds of Cmiss*P*Pmiss + Cfa*(1-P)*Pfa, over min(Cmiss*P, Cfa*(1-P)).

    `target` holds the positive class's scores (ASV targets, CM bona fide); accept when score >= the threshold."""
    fpr, tpr, thresholds = roc_curve(target, nontarget)
    dcf = cost.c_miss * cost.p_target * (1.0 - tpr) + cost.c_fa * (1.0 - cost.p_target) * fpr
    k = int(np.argmin(dcf))
    norm = min(cost.c_miss * cost.p_target, cost.c_fa * (1.0 - cost.p_target))
    return MinCost(float(dcf[k] / norm), float(thresholds[k]))


def bayes_threshold(cost: DCFCost) -> float:
    """The Bayes decision threshold for scores read as natural-log likelihood ratios: -log(beta), with
    beta = Cmiss*P / (Cfa*(1-P)) (ASVspoof 5 evaluation plan eq. 3). ASVSPOOF5_CM: -log(1.9) = -0.642."""
    return float(-np.log(cost.c_miss * cost.p_target / (cost.c_fa * (1.0 - cost.p_target))))


@dataclass(frozen=True)
class ADCFCost:
    """a-DCF cost model: class priors and the costs of missing a target and of accepting a nontarget / a spoof."""
    p_target: float
    p_nontarget: float
    p_spoof: float
    c_miss: float
    c_fa_asv: float
    c_fa_cm: float

    def __post_init__(self) -> None:
        check_priors("ADCFCost", {"p_target": self.p_target, "p_nontarget": self.p_nontarget,
                                   "p_spoof": self.p_spoof},
                      {"c_miss": self.c_miss, "c_fa_asv": self.c_fa_asv, "c_fa_cm": self.c_fa_cm})


# Shim et al., Odyssey 2024 (the a-DCF paper's default), and the ASVspoof 5 challenge's cost model.
PAPER_DEFAULT = ADCFCost(p_target=0.9, p_nontarget=0.05, p_spoof=0.05, c_miss=1, c_fa_asv=10, c_fa_cm=20)
ASVSPOOF5 = ADCFCost(p_target=0.9405, p_nontarget=0.0095, p_spoof=0.05, c_miss=1, c_fa_asv=10, c_fa_cm=10)


def a_dcf_value(p_miss, p_fa_nontarget, p_fa_spoof, cost: ADCFCost):
    """Normalised a-DCF of given error rates (scalars or arrays), Shim et al. 2024:
    (Cmiss pi_tar Pmiss + Cfa_asv pi_non Pfa_non + Cfa_cm pi_spf Pfa_spf) / min(Cmiss pi_tar, Cfa_asv pi_non +
    Cfa_cm pi_spf), the denominator being the cost of the better trivial system (reject all, accept all)."""
    norm = min(cost.c_fa_asv * cost.p_nontarget + cost.c_fa_cm * cost.p_spoof, cost.c_miss * cost.p_target)
    return (cost.c_miss * cost.p_target * p_miss + cost.c_fa_asv * cost.p_nontarget * p_fa_nontarget
            + cost.c_fa_cm * cost.p_spoof * p_fa_spoof) / norm


def a_dcf_bayes_threshold(cost: ADCFCost) -> float:
    """The Bayes threshold of the a-DCF for SASV scores that are natural-log likelihood ratios:
    log((Cfa_asv pi_non + Cfa_cm pi_spf) / (Cmiss pi_tar)); accept a trial when its score is at or above it.

    Why: accepting a trial costs Cfa_asv pi_non p(x|non) + Cfa_cm pi_spf p(x|spf) in expectation, rejecting it
    Cmiss pi_tar p(x|tar); the first is smaller exactly when LR(x) = p(x|tar) / p(x|neg) is at least that ratio,
    where p(x|neg) is the negatives' mixture with spoof share rho = Cfa_cm pi_spf / (Cfa_asv pi_non + Cfa_cm pi_spf).
    This is the Bayes decision of the ASVspoof 5 evaluation plan's actDCF (threshold -log(beta), eq. 3, for two
    classes; `bayes_threshold`) applied to the a-DCF's three-class cost (Shim et al., "a-DCF: an
    architecture agnostic metric with application to spoofing-robust speaker verification", Odyssey 2024, eq. 1).
    It is the Bayes threshold of an LLR against that rho-mixture (fusion llr_nonlinear with rho set so is built
    to be one); other scores pay for the mismatch in act_a_dcf.
    PAPER_DEFAULT: log(1.5 / 0.9) = 0.511 (rho 2/3); ASVSPOOF5: log(0.595 / 0.9405) = -0.458 (rho 0.840)."""
    negatives = cost.c_fa_asv * cost.p_nontarget + cost.c_fa_cm * cost.p_spoof
    return float(np.log(negatives / (cost.c_miss * cost.p_target)))


def act_a_dcf(classes: TrialClasses, cost: ADCFCost = PAPER_DEFAULT) -> MinCost:
    """The actual normalised a-DCF at `a_dcf_bayes_threshold(cost)` and that threshold: a target scoring below it is
    a miss, a nontarget or spoof at or above it a false alarm (the ASVspoof 5 actDCF's convention). Beside
    `min_a_dcf` (same inputs) it shows what the scores' calibration costs; only meaningful for LLR scores."""
    require(classes, ("target", "nontarget", "spoof"), "a-DCF")
    tar, non, spf = (as_scores(a, "a-DCF scores") for a in classes)
    threshold = a_dcf_bayes_threshold(cost)
    value = a_dcf_value(np.mean(tar < threshold), np.mean(non >= threshold), np.mean(spf >= threshold), cost)
    return MinCost(float(value), threshold)


def a_dcf_curve(classes: TrialClasses | RankedTrials, cost: ADCFCost = PAPER_DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """(normalised a-DCF, threshold) at every point of the reference package's curve. `classes` may come sorted
    already (metrics.trials.rank_trials: the reference's order), as when several metrics read one score."""
    require(classes, ("target", "nontarget", "spoof"), "a-DCF")
    ranked = classes if isinstance(classes, RankedTrials) else rank_trials(classes, "a-DCF scores")
    labels, (n_tar, n_non, n_spf) = ranked.labels, ranked.counts
    p_miss = np.r_[0, np.cumsum(labels == 0)] / n_tar
    p_fa_non = (n_non - np.r_[0, np.cumsum(labels == 1)]) / n_non
    p_fa_spf = (n_spf - np.r_[0, np.cumsum(labels == 2)]) / n_spf
    thresholds = np.r_[ranked.scores[0] - 1e-8, ranked.scores]
    return a_dcf_value(p_miss, p_fa_non, p_fa_spf, cost), thresholds


def min_a_dcf(classes: TrialClasses | RankedTrials, cost: ADCFCost = PAPER_DEFAULT) -> MinCost:
    """Normalised minimum a-DCF of one SASV score and the threshold reaching it (first one on ties).

    The threshold follows the reference package: accept when score > threshold.
    """
    curve, thresholds = a_dcf_curve(classes, cost)
    k = int(np.argmin(curve))
    return MinCost(float(curve[k]), float(thresholds[k]))
