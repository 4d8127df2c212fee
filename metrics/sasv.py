"""The three SASV 2022 challenge EERs of one score vector.

The positive class is always 'target'; the negatives differ:
SASV-EER: nontarget + spoof, SV-EER: nontarget only, SPF-EER: spoof only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from metrics.eer import det_eer, roc_eer
from metrics.trials import split_trials

CONVENTIONS = ("roc", "det")


def sasv_eers(scores: np.ndarray, keys: Sequence[str], convention: str = "roc",
              available_only: bool = False) -> dict[str, float]:
    """{'sasv_eer', 'sv_eer', 'spf_eer'} as fractions; 'roc' is the SASV 2022 convention, 'det' the ASVspoof one.
    `available_only`: leave out an EER whose negatives are absent (e.g. SPF-EER of a list without spoofs)
    instead of failing."""
    if convention not in CONVENTIONS:
        raise InputError(f"unknown EER convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    eer = roc_eer if convention == "roc" else det_eer
    tar, non, spf = split_trials(scores, keys)
    negatives = {"sasv_eer": np.concatenate([non, spf]), "sv_eer": non, "spf_eer": spf}
    return {name: eer(tar, neg).eer for name, neg in negatives.items()
            if not available_only or (tar.size and neg.size)}
