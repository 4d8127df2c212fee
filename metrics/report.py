"""The SASV evaluation report: every metric of one system from its trial keys and scores, and a table.

Conventions (so that numbers compare with the literature):
* sasv_eer / sv_eer / spf_eer: SASV 2022 challenge (ROC interpolation), on the SASV score, in percent;
* min_a_dcf: a-DCF with the paper's default costs; min_a_dcf_asvspoof5: with the ASVspoof 5 costs;
* act_a_dcf / act_a_dcf_asvspoof5 (only with `llr=True`, for a back-end whose output is an LLR: fusion's
  `outputs_llr`): the a-DCF actually paid at the Bayes threshold of the same costs (metrics.dcf.act_a_dcf);
* asv_eer (target vs nontarget, ASV score) and cm_eer (target + nontarget vs spoof, CM score):
  ASVspoof DET convention, in percent;
* t_eer: concurrent t-EER in percent; min_t_dcf_asvspoof2019: the ASVspoof 2019 t-DCF with the ASV fixed
  at its EER threshold; min_t_dcf_asvspoof5: the ASVspoof 2021/5 t-DCF *as the official ASVspoof 5
  evaluation package computes it*, so that it compares with published ASVspoof 5 numbers: the package
  passes the ASV's spoof rejection rate where the formula takes its spoof acceptance rate
  (metrics.tdcf.asvspoof5_package_operating_point); min_t_dcf_asvspoof5_formula: the same t-DCF with the
  operating point the formula defines (spoof acceptance rate). These need both the ASV and the CM scores.
* min_t_dcf_asvspoof5_org_asv: the ASVspoof 5 t-DCF with the organisers' ASV (metrics.tdcf.ASVSPOOF5_ORGANISERS_ASV),
  the number the package's `evaluation.py --m t2_tandem` prints for a Track 2 submission; it needs the CM scores only.

Breakdowns of these metrics per attack and codec condition live in metrics.breakdown; a stand-alone countermeasure's
metrics (ASVspoof 5 Track 1) in metrics.countermeasure.
"""
from __future__ import annotations

from typing import Collection, Mapping, Sequence

import numpy as np

from metrics.dcf import ASVSPOOF5, PAPER_DEFAULT, act_a_dcf, min_a_dcf
from metrics.eer import det_eer
from metrics.sasv import ranked_sasv_eers
from metrics.tdcf import (
    ASVSPOOF5_ORGANISERS_ASV,
    asv_operating_point,
    asvspoof5_package_operating_point,
    min_t_dcf,
    min_t_dcf_legacy,
)
from metrics.teer import concurrent_t_eer
from metrics.trials import rank_trials, split_trials

NEEDS_LLR = ("act_a_dcf", "act_a_dcf_asvspoof5")     # reported only for LLR scores (evaluate_trials(llr=True))
NEEDS_ASV_AND_CM = ("t_eer", "min_t_dcf_asvspoof5", "min_t_dcf_asvspoof5_formula", "min_t_dcf_asvspoof2019")

# Column order and headers of `format_table`; percent metrics carry (%) in their header.
COLUMNS = {
    "sasv_eer": "SASV-EER(%)",
    "sv_eer": "SV-EER(%)",
    "spf_eer": "SPF-EER(%)",
    "min_a_dcf": "a-DCF",
    "min_a_dcf_asvspoof5": "a-DCF(AS5)",
    "act_a_dcf": "act a-DCF",
    "act_a_dcf_asvspoof5": "act a-DCF(AS5)",
    "t_eer": "t-EER(%)",
    "min_t_dcf_asvspoof5": "t-DCF(AS5)",
    "min_t_dcf_asvspoof5_formula": "t-DCF(AS5 formula)",
    "min_t_dcf_asvspoof5_org_asv": "t-DCF(AS5 org ASV)",
    "min_t_dcf_asvspoof2019": "t-DCF(2019)",
    "asv_eer": "ASV-EER(%)",
    "cm_eer": "CM-EER(%)",
}


# The trial classes each metric needs (an error rate over an empty class is 0/0).
NEEDS_CLASSES = {
    "sasv_eer": ("target", "nontarget|spoof"), "sv_eer": ("target", "nontarget"), "spf_eer": ("target", "spoof"),
    "min_a_dcf": ("target", "nontarget", "spoof"), "min_a_dcf_asvspoof5": ("target", "nontarget", "spoof"),
    "t_eer": ("target", "nontarget", "spoof"), "min_t_dcf_asvspoof5": ("target", "nontarget", "spoof"),
    "min_t_dcf_asvspoof5_formula": ("target", "nontarget", "spoof"),
    "min_t_dcf_asvspoof2019": ("target", "nontarget", "spoof"),
    "min_t_dcf_asvspoof5_org_asv": ("target|nontarget", "spoof"),
    "asv_eer": ("target", "nontarget"), "cm_eer": ("target|nontarget", "spoof"),
}


def missing_classes(keys: Sequence[str]) -> dict[str, str]:
    """Metric -> the trial class it lacks, for each metric these keys cannot give (e.g. SPF-EER without spoofs)."""
    k = np.asarray(keys, dtype=str)
    counts = {key: int(np.count_nonzero(k == key)) for key in ("target", "nontarget", "spoof")}
    out = {}
    for metric, needs in NEEDS_CLASSES.items():
        lacking = next((need for need in needs if not any(counts[k] for k in need.split("|"))), None)
        if lacking is not None:
            out[metric] = lacking.replace("|", " or ")
    return out


def evaluate_trials(keys: Sequence[str], sasv: np.ndarray, asv: np.ndarray | None = None,
                    cm: np.ndarray | None = None, only: Collection[str] | None = None,
                    llr: bool = False) -> dict[str, float]:
    """All metrics computable from the given scores (aligned with `keys`: 'target'|'nontarget'|'spoof'), or those of
    them named in `only` (metrics.breakdown computes a few per condition): `sasv_metrics` then `subscore_metrics`.

    llr: the SASV scores are log-likelihood ratios (the back-end's `outputs_llr`): adds act_a_dcf and
    act_a_dcf_asvspoof5, the a-DCF at each cost model's Bayes threshold, beside the minima. Left out otherwise: the
    Bayes threshold of a score that is no LLR means nothing.
    A metric whose trial classes are absent (see `missing_classes`) is left out rather than failing the rest."""
    keys = np.asarray(keys, dtype=str)      # once: every metric below splits its scores by these keys
    return {**sasv_metrics(keys, sasv, only, llr), **subscore_metrics(keys, asv, cm, only)}


def sasv_metrics(keys: Sequence[str], sasv: np.ndarray, only: Collection[str] | None = None,
                 llr: bool = False) -> dict[str, float]:
    """The metrics of `evaluate_trials` that read the SASV score alone (the EERs, the a-DCFs), in its order."""
    keys = np.asarray(keys, dtype=str)
    lacking = missing_classes(keys)
    # the actual a-DCFs need what the minima need (they stay out of NEEDS_CLASSES: only LLR scores report them)
    skipped = set(lacking) | (set(NEEDS_LLR) if not llr or "min_a_dcf" in lacking else set())
    wanted = lambda name: name not in skipped and (only is None or name in only)  # noqa: E731
    sasv_classes = split_trials(sasv, keys, "SASV scores")
    ranked = rank_trials(sasv_classes, "SASV scores")      # one sort for the three EERs and both a-DCFs
    out = {k: 100.0 * v for k, v in ranked_sasv_eers(ranked, available_only=True).items() if wanted(k)}
    if wanted("min_a_dcf"):
        out["min_a_dcf"] = min_a_dcf(ranked, PAPER_DEFAULT).value
    if wanted("min_a_dcf_asvspoof5"):
        out["min_a_dcf_asvspoof5"] = min_a_dcf(ranked, ASVSPOOF5).value
    if wanted("act_a_dcf"):
        out["act_a_dcf"] = act_a_dcf(sasv_classes, PAPER_DEFAULT).value
    if wanted("act_a_dcf_asvspoof5"):
        out["act_a_dcf_asvspoof5"] = act_a_dcf(sasv_classes, ASVSPOOF5).value
    return out


def subscore_metrics(keys: Sequence[str], asv: np.ndarray | None = None, cm: np.ndarray | None = None,
                     only: Collection[str] | None = None) -> dict[str, float]:
    """The metrics of `evaluate_trials` that read the ASV and CM scores alone (t-EER, t-DCFs, ASV-EER, CM-EER), in its
    order. They are the same for every back-end fusing those sub-scores: a run comparing many back-ends on the same
    trials (fuse.py, ablate.py) computes them once per split and adds them to each back-end's `sasv_metrics`."""
    keys = np.asarray(keys, dtype=str)
    lacking = missing_classes(keys)
    wanted = lambda name: name not in lacking and (only is None or name in only)  # noqa: E731
    out = {}
    asv_classes = split_trials(asv, keys, "ASV scores") if asv is not None else None
    cm_classes = split_trials(cm, keys, "CM scores") if cm is not None else None
    if cm_classes is not None:
        bonafide = np.concatenate([cm_classes.target, cm_classes.nontarget])
    if asv_classes is not None and cm_classes is not None and not lacking.keys() & set(NEEDS_ASV_AND_CM):
        if wanted("t_eer"):
            out["t_eer"] = 100.0 * concurrent_t_eer(asv_classes, cm_classes)
        operating_point = asv_operating_point(asv_classes)
        if wanted("min_t_dcf_asvspoof5"):
            package_point = asvspoof5_package_operating_point(asv_classes)
            out["min_t_dcf_asvspoof5"] = min_t_dcf(bonafide, cm_classes.spoof, package_point).value
        if wanted("min_t_dcf_asvspoof5_formula"):
            out["min_t_dcf_asvspoof5_formula"] = min_t_dcf(bonafide, cm_classes.spoof, operating_point).value
        if wanted("min_t_dcf_asvspoof2019"):
            out["min_t_dcf_asvspoof2019"] = min_t_dcf_legacy(bonafide, cm_classes.spoof, operating_point).value
    if asv_classes is not None and wanted("asv_eer"):
        out["asv_eer"] = 100.0 * det_eer(asv_classes.target, asv_classes.nontarget).eer
    if cm_classes is not None and wanted("min_t_dcf_asvspoof5_org_asv"):
        out["min_t_dcf_asvspoof5_org_asv"] = min_t_dcf(bonafide, cm_classes.spoof, ASVSPOOF5_ORGANISERS_ASV).value
    if cm_classes is not None and wanted("cm_eer"):
        out["cm_eer"] = 100.0 * det_eer(bonafide, cm_classes.spoof).eer
    return out


def _cell(key: str, value: float | None, columns: Mapping[str, str], digits: int) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.3f}" if columns.get(key, "").endswith("(%)") else f"{value:.{digits}f}"


def format_table(results: Mapping[str, Mapping[str, float]], columns: Mapping[str, str] = COLUMNS,
                 digits: int = 4) -> str:
    """An aligned text table, one row per system, one column per metric any system has (others show '-'), ordered
    and headed by `columns` (metric -> header; metrics.countermeasure.CM_COLUMNS for Track 1); percent metrics with
    3 decimals, others with `digits`."""
    present = {k for metrics in results.values() for k in metrics}
    keys = [k for k in columns if k in present] + sorted(present - columns.keys())
    header = ["system"] + [columns.get(k, k) for k in keys]
    rows = [[name] + [_cell(k, metrics.get(k), columns, digits) for k in keys] for name, metrics in results.items()]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def json_ready(node):
    """Undefined metrics (NaN, e.g. a t-DCF whose normaliser is 0) become null, so the JSON stays valid."""
    if isinstance(node, Mapping):
        return {k: json_ready(v) for k, v in node.items()}
    return None if isinstance(node, float) and not np.isfinite(node) else node
