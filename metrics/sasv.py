"""The three SASV 2022 challenge EERs of one score vector.

The positive class is always 'target'; the negatives differ:
SASV-EER: nontarget + spoof, SV-EER: nontarget only, SPF-EER: spoof only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from metrics.eer import det_eer, ranked_roc_curve, roc_curve_eer
from metrics.trials import RankedTrials, rank_trials, split_trials

CONVENTIONS = ("roc", "det")
# The negative classes of each EER, numbered as metrics.trials.rank_trials numbers them.
NEGATIVES = {"sasv_eer": (1, 2), "sv_eer": (1,), "spf_eer": (2,)}


def sasv_eers(scores: np.ndarray, keys: Sequence[str], convention: str = "roc",
              available_only: bool = False) -> dict[str, float]:
    """{'sasv_eer', 'sv_eer', 'spf_eer'} as fractions; 'roc' is the SASV 2022 convention, 'det' the ASVspoof one.
    `available_only`: leave out an EER whose negatives are absent (e.g. SPF-EER of a list without spoofs)
    instead of failing."""
    if convention not in CONVENTIONS:
        raise InputError(f"unknown EER convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    classes = split_trials(scores, keys)
    if convention == "roc":
        return ranked_sasv_eers(rank_trials(classes), available_only)
    tar, non, spf = classes
    negatives = {"sasv_eer": np.concatenate([non, spf]), "sv_eer": non, "spf_eer": spf}
    return {name: det_eer(tar, neg).eer for name, neg in negatives.items()
            if not available_only or (tar.size and neg.size)}


def ranked_sasv_eers(ranked: RankedTrials, available_only: bool = False) -> dict[str, float]:
    """`sasv_eers` in the SASV 2022 convention of scores sorted once (metrics.trials.rank_trials), which the a-DCF
    of the same score reads too."""
    return {name: roc_curve_eer(*ranked_roc_curve(ranked, negatives)).eer for name, negatives in NEGATIVES.items()
            if not available_only or (ranked.counts[0] and sum(ranked.counts[c] for c in negatives))}
