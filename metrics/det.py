"""DET curves (miss vs false-alarm rate on normal-deviate axes) for SASV systems.

One figure, three panels: SASV (target vs nontarget + spoof), SV (target vs nontarget) and
SPF (target vs spoof), one curve per system with its EER in the legend. Drawn on an Agg canvas
directly (no global matplotlib backend switch) and saved atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtri  # the standard normal's quantile (= scipy.stats.norm.ppf, whose import is 1 s)

from common.io import atomic_write
from metrics.eer import ranked_roc_curve, roc_curve_eer
from metrics.sasv import NEGATIVES
from metrics.trials import rank_trials, split_trials

TICKS_PERCENT = (0.1, 0.5, 1, 2, 5, 10, 20, 40, 60, 80)
LIMITS = (0.0005, 0.9)  # as probabilities

PANELS = tuple(zip(("SASV", "SV", "SPF"), NEGATIVES.values(), strict=True))     # (panel, its negative classes)


def probit(p: np.ndarray) -> np.ndarray:
    """The normal deviate of a probability, clipped so that 0 and 1 stay drawable at the axis edges."""
    return ndtri(np.clip(p, LIMITS[0] / 2, 1 - LIMITS[0] / 2))


def corners(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of a DET staircase where it turns: a point between two others with the same x (or the same y) lies
    on the straight segment joining them, so leaving it out draws the same line. A curve of N trials has N points
    but, for most systems, several times fewer turns: less memory and drawing for a figure of 800k-trial curves."""
    if x.size < 3:
        return x, y
    inner = ((x[:-2] == x[1:-1]) & (x[1:-1] == x[2:])) | ((y[:-2] == y[1:-1]) & (y[1:-1] == y[2:]))
    keep = np.r_[True, ~inner, True]
    return x[keep], y[keep]


def plot_det(systems: Mapping[str, tuple[np.ndarray, Sequence[str]]], path: str | os.PathLike,
             title: str = "DET curves") -> None:
    """Draws the SASV / SV / SPF DET panels of every system {name: (scores, keys)} into an image at `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    many = len(systems) > 6  # per-panel legends would hide the curves: one table of EERs below instead
    fig = Figure(figsize=(15, 5.2 + (0.2 * len(systems) if many else 0)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS))
    ticks = probit(np.asarray(TICKS_PERCENT) / 100)
    labels = [f"{t:g}" for t in TICKS_PERCENT]
    # each system's scores sorted once for its three panels' curves and EERs
    ranked = {name: rank_trials(split_trials(scores, keys, name), name) for name, (scores, keys) in systems.items()}
    eers: dict[str, list[str]] = {name: [] for name in ranked}
    for ax, (panel, negatives) in zip(axes, PANELS, strict=True):
        for index, (name, trials) in enumerate(ranked.items()):
            if trials.counts[0] == 0 or sum(trials.counts[c] for c in negatives) == 0:
                continue
            fpr, tpr, thresholds = ranked_roc_curve(trials, negatives)
            eer = 100 * roc_curve_eer(fpr, tpr, thresholds).eer
            eers[name].append(f"{panel} {eer:.2f}%")
            p_fa, p_miss = corners(fpr, 1.0 - tpr)
            ax.plot(probit(p_fa), probit(p_miss), label=name if many else f"{name} (EER {eer:.2f}%)",
                    linewidth=1.5, color=f"C{index % 10}", linestyle=("-", "--", ":")[index // 10 % 3])
        lo, hi = probit(np.asarray(LIMITS))
        ax.plot([lo, hi], [lo, hi], color="0.7", linestyle=":", linewidth=1)  # the EER line
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xticks=ticks, yticks=ticks, xticklabels=labels, yticklabels=labels,
               xlabel="False alarm rate (%)", ylabel="Miss rate (%)", title=f"{panel}-EER", aspect="equal")
        ax.grid(True, color="0.9")
        if not many:
            ax.legend(loc="upper right", fontsize="small")
    if many:
        handles = axes[0].get_lines()[:len(ranked)]
        fig.legend(handles, [f"{n}: " + ", ".join(e) for n, e in eers.items()], loc="outside lower center",
                   ncols=2, fontsize="small", title="EERs (SASV, SV, SPF)")
    fig.suptitle(title)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
