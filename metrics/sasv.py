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


def sasv_eers(scores: np.ndarray, keys: Sequence[str], convention: str = "roc") -> dict[str, float]:
    """{'sasv_eer', 'sv_eer', 'spf_eer'} as fractions; 'roc' is the SASV 2022 convention, 'det' the ASVspoof one."""
    if convention not in CONVENTIONS:
        raise InputError(f"unknown EER convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    eer = roc_eer if convention == "roc" else det_eer
    tar, non, spf = split_trials(scores, keys)
    return {
        "sasv_eer": eer(tar, np.concatenate([non, spf])).eer,
        "sv_eer": eer(tar, non).eer,
        "spf_eer": eer(tar, spf).eer,
    }
