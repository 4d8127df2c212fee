"""What one run of a system measured: metrics per split, thresholds chosen on dev and applied to eval,
calibration (Cllr), and its pictures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from common.io import write_json
from data.score_files import SASVScores
from data.trial_kinds import SASV_KEYS
from fusion import backend_class
from metrics.calibration import cllr, min_cllr, plot_reliability
from metrics.det import plot_det
from metrics.plots import plot_score_histograms
from metrics.report import evaluate_trials
from metrics.thresholds import threshold_report
from pipeline.stages.sasv import EVAL_SPLITS
from pipeline.tools.ablation.grid import System

THRESHOLD_METHODS = ("eer", "min_dcf", "min_a_dcf", "far")

THRESHOLD_LABELS = {"eer": "EER point", "min_dcf": "min DCF", "min_a_dcf": "min a-DCF", "far": "FAR"}

RATES = ("p_miss", "p_fa_nontarget", "p_fa_spoof", "actual_dcf", "actual_a_dcf")


class SplitTrials(Protocol):
    """One split's trials with their ASV and CM scores, as a grid's source gives them: the stages' TrialInputs
    (cached embeddings) or fuse.py's ScoredTrials (score files). What the runner and the analysis read of a split."""
    split: str
    asv_scores: np.ndarray
    cm_scores: np.ndarray

    @property
    def keys(self) -> list[str]: ...

    def rows(self, scores: np.ndarray) -> SASVScores:
        """The trials with `scores`, for the score-file writers."""
        ...


@dataclass
class Run:
    seed: int | None
    folder: Path
    scores: dict[str, np.ndarray]     # split -> SASV scores, aligned with the split's trials
    keys: dict[str, list[str]]


def scores_by_key(scores: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
    k = np.asarray(keys)
    return {c: scores[k == c] for c in SASV_KEYS}


def analyse_run(system: System, run: Run, inputs: Mapping[str, SplitTrials], thresholds: Mapping) -> dict:
    """Metrics per split (the actual a-DCF too when the back-end's output is an LLR), dev-chosen thresholds applied
    to eval, Cllr; as nested detail and one flat row."""
    llr = backend_class(system.backend).outputs_llr
    metrics = {s: evaluate_trials(d.keys, run.scores[s], d.asv_scores, d.cm_scores, llr=llr)
               for s, d in inputs.items()}
    dev, ev = (scores_by_key(run.scores[s], inputs[s].keys) for s in ("dev", "eval"))
    def negatives(method: str) -> str:   # min_dcf is target vs nontarget; min_a_dcf uses all three classes
        return thresholds["negatives"] if method in ("eer", "far") else "nontarget"

    reports = {m: threshold_report(dev, ev, m, negatives=negatives(m), far=thresholds["far"] if m == "far" else None)
               for m in THRESHOLD_METHODS}
    write_json(run.folder / "thresholds.json", {"far_target": thresholds["far"],
                                                "negatives_of_eer_and_far": thresholds["negatives"],
                   "decision": "accept iff score >= threshold", **reports})
    calibration = {}
    for split, c in (("dev", dev), ("eval", ev)):
        negatives = np.concatenate([c["nontarget"], c["spoof"]])
        calibration[split] = {"cllr": cllr(c["target"], negatives), "min_cllr": min_cllr(c["target"], negatives)}
    row: dict[str, float] = {}
    for split in EVAL_SPLITS:
        row.update({f"{split}_{k}": v for k, v in metrics[split].items()})
        row.update({f"{split}_{k}": v for k, v in calibration[split].items()})
    for m, rep in reports.items():
        row[f"{m}_threshold"] = rep["threshold"]
        row.update({f"{m}_eval_{k}": rep["eval"][k] for k in RATES if k in rep["eval"]})
    return {"detail": {"metrics": metrics, "calibration": calibration,
                       "thresholds": {m: r["threshold"] for m, r in reports.items()}}, "row": row}


def draw_pictures(system: System, run: Run, analysed: Mapping, thresholds: Mapping) -> list[str]:
    """hist.png, det.png and (calibrated systems) reliability.png of one run; returns their names."""
    folder = system.folder
    label = system.name if run.seed is None else f"{system.name} (seed {run.seed})"
    marks = {f"dev {threshold_label(m, thresholds)}": t for m, t in analysed["detail"]["thresholds"].items()}
    plot_score_histograms({s: (run.scores[s], run.keys[s]) for s in EVAL_SPLITS}, folder / "hist.png",
                          thresholds=marks, title=f"{label}: SASV scores by key, thresholds chosen on dev")
    plot_det({f"{label} {s}": (run.scores[s], run.keys[s]) for s in EVAL_SPLITS}, folder / "det.png",
             title=f"{label}: DET on dev and eval")
    files = ["hist.png", "det.png"]
    if system.calibrated:
        c = scores_by_key(run.scores["eval"], run.keys["eval"])
        plot_reliability(c["target"], np.concatenate([c["nontarget"], c["spoof"]]), folder / "reliability.png",
                         title=f"{label}, eval: target vs nontarget + spoof")
        files.append("reliability.png")
    return files


def threshold_label(method: str, thresholds: Mapping) -> str:
    return f"FAR {100 * thresholds['far']:g}%" if method == "far" else THRESHOLD_LABELS[method]


def mean_over_runs(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def std_over_runs(rows: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    """Sample standard deviation (ddof=1) over seeds; None for a single run."""
    if len(rows) < 2:
        return None
    return {k: float(np.std([r[k] for r in rows], ddof=1)) for k in rows[0]}
