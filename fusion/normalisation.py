"""Sub-score normalisation shared by the score-level back-ends (their calibration: fusion/calibration.py).

It returns plain floats, so a fitted back-end's state stays JSON/npz friendly.
"""
from __future__ import annotations

import numpy as np

NORMALISATIONS = ("none", "zscore", "minmax")


def fit_shift_scale(x: np.ndarray, kind: str, what: str) -> tuple[float, float]:
    """(shift, scale) such that (x - shift) / scale is the `kind` normalisation of x.

    none: (0, 1); zscore: (mean, std); minmax: (min, max - min), mapping the fit set onto [0, 1].
    """
    if kind == "none":
        return 0.0, 1.0
    if kind == "zscore":
        shift, scale = float(np.mean(x)), float(np.std(x))
    elif kind == "minmax":
        shift, scale = float(np.min(x)), float(np.max(x) - np.min(x))
    else:
        raise ValueError(f"unknown normalisation {kind!r}; valid: {list(NORMALISATIONS)}")
    if not scale > 0:
        raise ValueError(f"{what} are constant on the fit set; cannot {kind}-normalise them")
    return shift, scale
