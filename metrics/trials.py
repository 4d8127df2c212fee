"""Trial keys and the split of a score vector into target / nontarget / spoof classes.

Every metric here takes per-class score arrays; this is the one place that turns SASV keys into them,
so an unknown key or an empty class fails the same way everywhere.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from common.errors import InputError
from data.trial_kinds import SASV_KEYS

__all__ = ["SASV_KEYS", "TrialClasses", "as_scores", "split_trials", "require"]


class TrialClasses(NamedTuple):
    """Scores of one system split by trial key."""
    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray


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


def require(classes: TrialClasses, needed: Sequence[str], metric: str) -> None:
    """Refuses to compute `metric` when a class it needs has no trials (its error rate would be 0/0)."""
    for key in needed:
        if getattr(classes, key).size == 0:
            raise InputError(f"{metric}: no '{key}' trials; it needs {', '.join(needed)} trials")
