"""A stand-alone countermeasure's metrics as the ASVspoof 5 evaluation package computes them (Track 1).

ASVspoof 5 ranks countermeasures by minDCF and reports actDCF, Cllr and EER beside it
(asvspoof-challenge/asvspoof5, evaluation-package/calculate_metrics.py, `calculate_minDCF_EER_CLLR_actDCF`):

* min_dcf: the normalised minimum DCF with the Track 1 costs (`metrics.dcf.ASVSPOOF5_CM`: spoof prior 0.05,
  Cmiss 1, Cfa 10; `metrics.dcf.min_dcf`, whose minimum is that of the package's DET points), normalised by
  min(Cmiss * 0.95, Cfa * 0.05) = 0.5, the cost of the better system that decides without looking;
* act_dcf: the same DCF, normalised the same way, at the Bayes threshold of scores read as natural-log LLRs
  (`metrics.dcf.bayes_threshold`: -log(1.9)); bona fide below it is a miss, a spoof at or above it a false alarm;
* cllr: Cllr in bits of the scores read as natural-log LLRs of bona fide vs spoof (`metrics.calibration.cllr`);
* eer: the ASVspoof DET-convention EER (`metrics.eer.det_eer`), in percent.

actDCF and Cllr judge calibration as well as ranking: a score that is not an LLR (AASIST's bona fide logit, a
cosine) has a poor actDCF / Cllr even when its minDCF and EER are good. The package gives no min Cllr; the
calibration loss is `metrics.calibration.min_cllr`'s business.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from metrics.calibration import cllr
from metrics.dcf import ASVSPOOF5_CM, DCFCost, bayes_threshold, min_dcf
from metrics.eer import det_eer
from metrics.thresholds import actual_dcf
from metrics.trials import split_cm_trials

# Metric -> table header, in the order the package prints them (percent metrics carry (%)).
CM_COLUMNS = {"min_dcf": "minDCF", "eer": "EER(%)", "cllr": "Cllr(bits)", "act_dcf": "actDCF"}


def evaluate_cm(bonafide: np.ndarray, spoof: np.ndarray, cost: DCFCost = ASVSPOOF5_CM) -> dict[str, float]:
    """{'min_dcf', 'eer' (percent), 'cllr' (bits), 'act_dcf'} of bona fide vs spoof scores (higher = bona fide)."""
    return {
        "min_dcf": min_dcf(bonafide, spoof, cost).value,
        "eer": 100.0 * det_eer(bonafide, spoof).eer,
        "cllr": cllr(bonafide, spoof),
        "act_dcf": actual_dcf(bonafide, spoof, bayes_threshold(cost), cost),
    }


def evaluate_cm_keys(keys: Sequence[str], scores: np.ndarray, cost: DCFCost = ASVSPOOF5_CM) -> dict[str, float]:
    """`evaluate_cm` of scores aligned with CM keys ('bonafide' | 'spoof')."""
    return evaluate_cm(*split_cm_trials(scores, keys, "CM scores"), cost)
