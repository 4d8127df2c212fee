"""Concurrent tandem equal error rate (t-EER) of an ASV system and a CM (Kinnunen et al., TPAMI 2023).

The tandem accepts a trial when the CM passes it AND the ASV accepts it. With the CM at threshold
index i and the ASV at threshold index j, the tandem's rates are (assuming independent decisions)

    Pmiss_tdm = Pmiss_cm[i] + (1 - Pmiss_cm[i]) * Pmiss_asv[j]
    Pfa_tdm   = (1 - rho) * (1 - Pmiss_cm[i]) * Pfa_non_asv[j] + rho * Pfa_cm[i] * Pfa_spf_asv[j]

For each ASV threshold, the t-EER path takes the CM threshold where |Pmiss_tdm - Pfa_tdm| is smallest.
The concurrent t-EER is the point of that path where the paths of every spoof prevalence rho meet:
Pfa_non_asv / Pfa_spf_asv = Pfa_cm / (1 - Pmiss_cm), and its value there is Pfa_spf_asv * Pfa_cm.

This follows the reference implementation (the ASVspoof 5 evaluation package) point for point,
including its per-sample ASV / CM curves and its first-index tie breaking, but instead of scanning every
CM threshold for every ASV threshold (quadratic), it uses that Pmiss_tdm - Pfa_tdm is non-decreasing
in the CM threshold index and binary-searches the crossing for all ASV thresholds at once:
O(N log N) time and O(N) memory.
"""
from __future__ import annotations

import numpy as np

from common.errors import InputError
from metrics.eer import det_curve
from metrics.trials import TrialClasses, as_scores, require


def asv_curves(asv: TrialClasses) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Pmiss, Pfa_nontarget, Pfa_spoof) of the ASV at every sorted score (ties: target, nontarget, spoof)."""
    require(asv, ("target", "nontarget", "spoof"), "t-EER (ASV scores)")
    tar, non, spf = (as_scores(a, "ASV scores") for a in asv)
    scores = np.concatenate([tar, non, spf])
    labels = np.concatenate([np.zeros(tar.size, np.int8), np.ones(non.size, np.int8),
                             np.full(spf.size, 2, np.int8)])
    labels = labels[np.argsort(scores, kind="stable")]
    p_miss = np.r_[0.0, np.cumsum(labels == 0) / tar.size]
    p_fa_non = np.r_[1.0, 1 - np.cumsum(labels == 1) / non.size]
    p_fa_spf = np.r_[1.0, 1 - np.cumsum(labels == 2) / spf.size]
    return p_miss, p_fa_non, p_fa_spf


def _gap(m: np.ndarray, f: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, rho: float) -> np.ndarray:
    """Pmiss_tdm - Pfa_tdm, written exactly as the reference does so that ties break the same way."""
    return (m + (1 - m) * a) - ((1 - rho) * (1 - m) * b + rho * f * c)


def _closest_cm_index(cand: np.ndarray, m: np.ndarray, f: np.ndarray, a: np.ndarray, b: np.ndarray,
                      c: np.ndarray, rho: float) -> np.ndarray:
    """For each ASV point (a, b, c), the first CM index among `cand` where |Pmiss_tdm - Pfa_tdm| is smallest.

    `cand` lists CM indices along which the gap is non-decreasing; the crossing is found by a vectorised
    binary search, then the few indices around it are compared exactly.
    """
    lo = np.zeros(a.size, np.int64)
    hi = np.full(a.size, cand.size, np.int64)  # invariant: gap < 0 before lo, gap >= 0 from hi on
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        idx = cand[np.minimum(mid, cand.size - 1)]
        up = _gap(m[idx], f[idx], a, b, c, rho) >= 0
        hi = np.where(active & up, mid, hi)
        lo = np.where(active & ~up, mid + 1, lo)
    window = lo[:, None] + np.arange(-2, 2)[None, :]
    inside = (window >= 0) & (window < cand.size)
    idx = cand[np.clip(window, 0, cand.size - 1)]
    dist = np.abs(_gap(m[idx], f[idx], a[:, None], b[:, None], c[:, None], rho))
    dist[~inside] = np.inf
    return idx[np.arange(a.size), np.argmin(dist, axis=1)]


def concurrent_t_eer(asv: TrialClasses, cm: TrialClasses, rho: float = 0.5) -> float:
    """Concurrent t-EER as a fraction. `asv` and `cm` hold the two systems' scores split by trial key;
    the CM's bona fide class is target + nontarget. `rho` only picks which t-EER path is scanned for the
    meeting point (any value in [0, 1] gives the same point up to ties; the reference uses 0.5)."""
    if not 0.0 <= rho <= 1.0:
        raise InputError(f"t-EER: rho={rho} must lie in [0, 1]")
    require(cm, ("target", "nontarget", "spoof"), "t-EER (CM scores)")
    a_all, b_all, c_all = asv_curves(asv)
    m, f, _ = det_curve(np.concatenate([cm.target, cm.nontarget]), cm.spoof)

    # Only ASV thresholds where the ASV alone misses fewer targets than it accepts impostors are on a path.
    valid = np.flatnonzero(a_all < (1 - rho) * b_all + rho * c_all)
    a, b, c = a_all[valid], b_all[valid], c_all[valid]
    tmp = np.empty(valid.size, np.int64)
    # When rho * Pfa_spf_asv is 0 the gap depends on Pmiss_cm only, so it is flat across spoof steps and
    # the reference's argmin lands on the first index of each Pmiss_cm value: search those indices only.
    flat = rho * c == 0
    first_of_each_miss = np.r_[0, np.flatnonzero(np.diff(m)) + 1]
    for sel, cand in ((flat, first_of_each_miss), (~flat, np.arange(m.size))):
        if sel.any():
            tmp[sel] = _closest_cm_index(cand, m, f, a[sel], b[sel], c[sel], rho)

    with np.errstate(divide="ignore", invalid="ignore"):
        crit = np.abs(b / c - f[tmp] / (1 - m[tmp]))
    crit[np.isnan(crit)] = np.inf
    if crit.size == 0 or not np.isfinite(crit.min()):
        raise InputError("t-EER undefined: no ASV threshold where the tandem error paths meet "
                         "(ASV or CM scores inverted, or a degenerate score distribution)")
    best = int(np.argmin(crit))
    return float(c[best] * f[tmp[best]])
