"""Trial keys and the split of a score vector into its classes: target / nontarget / spoof (SASV trials) or
bona fide / spoof (CM utterances).

Every metric here takes per-class score arrays; this is the one place that turns keys into them,
so an unknown key or an empty class fails the same way everywhere.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from common.errors import InputError
from data.trial_kinds import BONAFIDE, CM_KEYS, SASV_KEYS, SPOOF

__all__ = ["CM_KEYS", "SASV_KEYS", "RankedTrials", "TrialClasses", "as_scores", "rank_trials", "split_cm_trials",
           "split_trials", "require"]


class TrialClasses(NamedTuple):
    """Scores of one system split by trial key."""
    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray


class RankedTrials(NamedTuple):
    """One system's scores of every class sorted once: ascending, stable over target, nontarget, spoof (tied scores in
    that order, the a-DCF reference's), with each score's class (0 target, 1 nontarget, 2 spoof) and the class sizes.
    The a-DCF curves and the ROC curves of the SASV-, SV- and SPF-EER (and their DET panels) all read this one sort
    instead of sorting the same scores five times."""
    scores: np.ndarray
    labels: np.ndarray      # int8
    counts: tuple[int, int, int]


def rank_trials(classes: TrialClasses, name: str = "scores") -> RankedTrials:
    """The RankedTrials of scores split by class (each checked finite)."""
    tar, non, spf = (as_scores(a, name) for a in classes)
    scores = np.concatenate([tar, non, spf])
    labels = np.concatenate([np.zeros(tar.size, np.int8), np.ones(non.size, np.int8), np.full(spf.size, 2, np.int8)])
    order = np.argsort(scores, kind="stable")
    return RankedTrials(scores[order], labels[order], (tar.size, non.size, spf.size))


def as_scores(scores: Sequence[float] | np.ndarray, name: str = "scores") -> np.ndarray:
    """A 1-D float64 copy-free view of `scores`; NaN or infinite scores are refused (no metric is defined)."""
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array of scores, got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise InputError(f"{name}: score #{bad} is {a[bad]}, scores must be finite")
    return a


def split_trials(scores: Sequence[float] | np.ndarray, keys: Sequence[str] | np.ndarray,
                 name: str = "scores") -> TrialClasses:
    """Splits `scores` by SASV key ('target' | 'nontarget' | 'spoof'); any other key is an error."""
    s = as_scores(scores, name)
    k = np.asarray(keys, dtype=str)
    if k.shape != s.shape:
        raise InputError(f"{name}: {len(s)} scores but {len(k)} keys")
    masks = [k == key for key in SASV_KEYS]
    known = masks[0] | masks[1] | masks[2]
    if not known.all():
        bad = int(np.flatnonzero(~known)[0])
        raise InputError(f"{name}: unknown key {str(k[bad])!r} at trial #{bad}; valid keys: {', '.join(SASV_KEYS)}")
    return TrialClasses(*(s[m] for m in masks))


def split_cm_trials(scores: Sequence[float] | np.ndarray, keys: Sequence[str] | np.ndarray,
                    name: str = "CM scores") -> tuple[np.ndarray, np.ndarray]:
    """(bona fide, spoof) scores of CM keys ('bonafide' | 'spoof'); any other key is an error."""
    s = as_scores(scores, name)
    k = np.asarray(keys, dtype=str)
    if k.shape != s.shape:
        raise InputError(f"{name}: {len(s)} scores but {len(k)} keys")
    bonafide, spoof = k == BONAFIDE, k == SPOOF
    known = bonafide | spoof
    if not known.all():
        bad = int(np.flatnonzero(~known)[0])
        raise InputError(f"{name}: unknown key {str(k[bad])!r} at utterance #{bad}; valid keys: {', '.join(CM_KEYS)}")
    return s[bonafide], s[spoof]


def require(classes: TrialClasses | RankedTrials, needed: Sequence[str], metric: str) -> None:
    """Refuses to compute `metric` when a class it needs has no trials (its error rate would be 0/0)."""
    for key in needed:
        if (classes.counts[SASV_KEYS.index(key)] if isinstance(classes, RankedTrials)
                else getattr(classes, key).size) == 0:
            raise InputError(f"{metric}: no '{key}' trials; it needs {', '.join(needed)} trials")
