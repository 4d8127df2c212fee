"""Score histograms by trial key (target / nontarget / spoof) with decision thresholds.

Why: EERs and DCFs summarise a system in one number; the histograms show *why* it errs (spoofs that score
like targets, a nontarget tail, a threshold sitting in the wrong valley) and how a dev-chosen threshold
lands on eval. Drawn on an Agg canvas directly (no global matplotlib backend switch) and saved atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from common.errors import InputError
from common.io import atomic_write
from metrics.trials import SASV_KEYS

COLOURS = {"target": "tab:green", "nontarget": "tab:blue", "spoof": "tab:red"}
LINESTYLES = ("-", "--", "-.", ":")


def histogram_bins(scores: Sequence[np.ndarray], n_bins: int = 40) -> np.ndarray:
    """Shared bin edges over the finite values of every score set (so panels and classes compare directly)."""
    finite = [s[np.isfinite(s)] for s in scores]
    finite = np.concatenate([f for f in finite if f.size] or [np.zeros(1)])
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def plot_score_histograms(panels: Mapping[str, tuple[np.ndarray, Sequence[str]]], path: str | os.PathLike,
                          thresholds: Mapping[str, float] | None = None, title: str = "Score histograms",
                          n_bins: int = 40) -> None:
    """One panel per entry {panel name: (scores, keys)} (e.g. dev and eval), one density histogram per key
    (target / nontarget / spoof, each normalised to unit area so small classes stay visible), and a vertical
    line per threshold {label: value} in every panel. Non-finite scores are left out and counted in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise InputError("plot_score_histograms: no score sets given")
    split = {}
    for name, (scores, keys) in panels.items():
        s = np.asarray(scores, dtype=np.float64).ravel()
        k = np.asarray(keys).astype(str)
        if s.shape != k.shape:
            raise InputError(f"plot_score_histograms: panel {name!r} has {s.size} scores but {k.size} keys")
        split[name] = {key: s[k == key] for key in SASV_KEYS if np.any(k == key)}
    bins = histogram_bins([v for classes in split.values() for v in classes.values()], n_bins)
    pad = 0.04 * (bins[-1] - bins[0])
    lo, hi = bins[0] - pad, bins[-1] + pad

    fig = Figure(figsize=(5.5 * len(split), 4.2))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(split), sharex=True))
    # fixed margins instead of a layout engine: constrained layout costs more than drawing the histograms
    fig.subplots_adjust(left=0.07 / len(split) ** 0.5, right=0.98, bottom=0.12, top=0.86, wspace=0.18)
    for ax, (name, classes) in zip(axes, split.items(), strict=True):
        for key, values in classes.items():
            finite = values[np.isfinite(values)]
            dropped = values.size - finite.size
            label = f"{key} ({values.size})" + (f", {dropped} non-finite" if dropped else "")
            if finite.size:
                ax.hist(finite, bins=bins, density=True, histtype="stepfilled", alpha=0.25, color=COLOURS[key])
                ax.hist(finite, bins=bins, density=True, histtype="step", linewidth=1.4, color=COLOURS[key],
                        label=label)
        for i, (label, value) in enumerate((thresholds or {}).items()):
            shown, note = _on_axis(float(value), lo, hi)
            ax.axvline(shown, color="black", linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=1.2,
                       label=f"{label} = {value:.4g}{note}")
        ax.set(xlabel="score", ylabel="density", title=name, xlim=(lo, hi))
        ax.grid(True, color="0.92")
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle(title)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=100)


def _on_axis(value: float, lo: float, hi: float) -> tuple[float, str]:
    """Where to draw a threshold: a threshold beyond every score (reject all / accept all) is drawn at the
    edge of the score range, with a note, rather than stretching the axis until the histograms vanish."""
    if value > hi or value == np.inf:
        return hi, " (above all scores)"
    if value < lo or value == -np.inf:
        return lo, " (below all scores)"
    return value, ""

