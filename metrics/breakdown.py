"""Metrics per condition: the tables ASVspoof 5 papers print, for a countermeasure (Track 1) or a SASV system (Track 2).

A pooled number hides which attacks a system misses and which channels break it. Given one system's per-trial
scores, keys and condition labels (the attack of each spoof; the codec condition and codec quality of each
utterance, or of each trial's test utterance), this computes the same metrics on subsets of the trials:

* `attack`: each attack's spoofs against every bona fide trial (Track 1: all bona fide utterances; Track 2: all
  target and nontarget trials). The ASVspoof 5 package's full table calls this its `pooled` codec column.
* `codec`: the bona fide and spoof trials of one codec condition (ASVspoof 5: `-` uncoded, C01..C11; 2021 LA: the
  codec; 2021 DF: the compression). The package's `pooled` attack row.
* `codec_q`: the same per codec quality, pooled over codecs (ASVspoof 5 CODEC_Q: the codec's bit-rate level; 2021
  LA: the transmission channel; 2021 DF: the source corpus). The package has no such table.
* `attack_by_codec`: each attack's spoofs against the bona fide trials of one codec: the cells of the package's
  full table (evaluation-package/calculate_metrics_full.py, which loops over exactly these subsets).

A breakdown is made when its labels say something: `attack` when some spoof has an attack label other than `-`,
`codec` / `codec_q` when some label is not `-` (then `-`, uncoded, is one of the conditions), `attack_by_codec`
when both of its axes are made. A cell without both a positive and a negative class has its trial counts only
(the package leaves it NaN).

The JSON form (for results.json) is {"pooled": cell, "attack": {label: cell}, "codec": {...}, "codec_q": {...},
"attack_by_codec": {attack: {codec: cell}}}, a cell being the trial counts per class and the metrics.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from common.errors import InputError
from data.trial_kinds import BONAFIDE, NONTARGET, SPOOF, TARGET
from metrics.countermeasure import CM_COLUMNS, evaluate_cm
from metrics.report import COLUMNS, evaluate_trials

UNKNOWN = "-"     # no attack / no codec / no quality label (ASVspoof 5 writes `-` for uncoded)
POOLED = "pooled"
AXES = ("attack", "codec", "codec_q")

# Track 2 metrics per cell: the ASVspoof 5 Track 2 set (min a-DCF, t-EER, min t-DCF) with the SASV 2022 EERs.
SASV_METRICS = ("sasv_eer", "sv_eer", "spf_eer", "min_a_dcf_asvspoof5", "t_eer", "min_t_dcf_asvspoof5")
# The metric each printed attack x codec table shows: the track's primary metric and the EER.
CM_MATRIX_METRICS = ("min_dcf", "eer")
SASV_MATRIX_METRICS = ("min_a_dcf_asvspoof5", "sasv_eer")


@dataclass(frozen=True)
class Conditions:
    """Condition labels aligned with the trials; None or all `-`: unknown. A bona fide trial's attack is ignored."""
    attack: Sequence[str] | None = None
    codec: Sequence[str] | None = None
    codec_q: Sequence[str] | None = None

    @classmethod
    def of_entries(cls, entries: Sequence) -> Conditions:
        """The conditions of CM entries (data.asvspoof.CMEntry: `system`, `codec`, `codec_q`)."""
        return cls([e.system for e in entries], [e.codec for e in entries], [e.codec_q for e in entries])

    def labels(self, axis: str, n: int) -> np.ndarray | None:
        values = getattr(self, axis)
        if values is None:
            return None
        out = np.asarray(values, dtype=str)
        if out.shape != (n,):
            raise InputError(f"breakdown: {out.size} {axis} labels for {n} trials")
        return out


def natural_key(label: str) -> tuple:
    """Sorts `-` first, then A2 before A10 and C01..C11 in order."""
    parts = re.split(r"(\d+)", label)
    return (label != UNKNOWN, [int(p) if i % 2 else p for i, p in enumerate(parts)])


def subsets(is_spoof: np.ndarray, conditions: Conditions) -> dict:
    """The trial masks of every breakdown the labels allow: {axis: {label: mask}} and
    {'attack_by_codec': {attack: {codec: mask}}}."""
    n = is_spoof.size
    out: dict = {}
    attack = conditions.labels("attack", n)
    if attack is not None and (attack[is_spoof] != UNKNOWN).any():
        labels = sorted(set(attack[is_spoof].tolist()), key=natural_key)
        out["attack"] = {a: ~is_spoof | (attack == a) for a in labels}
    for axis in ("codec", "codec_q"):
        values = conditions.labels(axis, n)
        if values is not None and (values != UNKNOWN).any():
            out[axis] = {c: values == c for c in sorted(set(values.tolist()), key=natural_key)}
    if "attack" in out and "codec" in out:
        out["attack_by_codec"] = {a: {c: a_mask & c_mask for c, c_mask in out["codec"].items()}
                                  for a, a_mask in out["attack"].items()}
    return out


def _breakdown(is_spoof: np.ndarray, conditions: Conditions, cell: Callable[[np.ndarray], dict]) -> dict:
    everything = np.ones(is_spoof.size, dtype=bool)
    out: dict = {POOLED: cell(everything)}
    for name, groups in subsets(is_spoof, conditions).items():
        if name == "attack_by_codec":
            out[name] = {a: {c: cell(mask) for c, mask in row.items()} for a, row in groups.items()}
        else:
            out[name] = {label: cell(mask) for label, mask in groups.items()}
    return out


def cm_breakdown(keys: Sequence[str], scores: np.ndarray, conditions: Conditions) -> dict:
    """Track 1 metrics (metrics.countermeasure.evaluate_cm) pooled and per condition; keys 'bonafide' | 'spoof'."""
    keys = np.asarray(keys, dtype=str)
    scores = np.asarray(scores, dtype=np.float64)
    if keys.shape != scores.shape:
        raise InputError(f"breakdown: {scores.size} scores but {keys.size} keys")
    is_spoof, is_bonafide = keys == SPOOF, keys == BONAFIDE

    def cell(mask: np.ndarray) -> dict:
        bonafide, spoof = scores[mask & is_bonafide], scores[mask & is_spoof]
        out: dict = {"bonafide": int(bonafide.size), "spoof": int(spoof.size)}
        if bonafide.size and spoof.size:
            out.update(evaluate_cm(bonafide, spoof))
        return out

    return _breakdown(is_spoof, conditions, cell)


def sasv_breakdown(keys: Sequence[str], sasv: np.ndarray, conditions: Conditions, asv: np.ndarray | None = None,
                   cm: np.ndarray | None = None, metrics: Sequence[str] = SASV_METRICS) -> dict:
    """Track 2 metrics (metrics.report.evaluate_trials, those in `metrics`) pooled and per condition of the trials'
    test utterances; keys 'target' | 'nontarget' | 'spoof'."""
    keys = np.asarray(keys, dtype=str)
    columns = [np.asarray(a, dtype=np.float64) if a is not None else None for a in (sasv, asv, cm)]
    if any(c is not None and c.shape != keys.shape for c in columns):
        raise InputError(f"breakdown: score columns and the {keys.size} keys differ in length")
    is_spoof = keys == SPOOF

    def cell(mask: np.ndarray) -> dict:
        k = keys[mask]
        out: dict = {key: int(np.count_nonzero(k == key)) for key in (TARGET, NONTARGET, SPOOF)}
        if out[TARGET] and (out[NONTARGET] or out[SPOOF]):
            out.update(evaluate_trials(k, *(c[mask] if c is not None else None for c in columns), only=metrics))
        return out

    return _breakdown(is_spoof, conditions, cell)


def results_entry(metrics: Mapping, breakdown: Mapping) -> dict:
    """A split's results.json entry: its metrics and, when the trials carry attack or codec labels, the
    per-condition tables under 'breakdown'; what the stages, fuse.py and evaluate.py --json write alike."""
    return {**metrics, **({"breakdown": breakdown} if any(axis in breakdown for axis in AXES) else {})}


def per_condition(breakdown: Mapping, axis: str, metric: str) -> dict[str, float]:
    """{label: value} of one metric along one axis (e.g. the EER per attack), leaving out cells that lack it; empty
    when that breakdown was not made."""
    return {label: cell[metric] for label, cell in breakdown.get(axis, {}).items() if metric in cell}


# ------------------------------------------------------------------------------------------------ printed tables

def _value(metric: str, value: float | None, headers: Mapping[str, str]) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.3f}" if headers.get(metric, "").endswith("(%)") else f"{value:.5f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in  # noqa: E731
                                                                  zip(cells[1:], widths[1:], strict=True)])
    return [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


TITLES = {"attack": "per attack (its spoofs against all bona fide trials)",
          "codec": "per codec condition (bona fide and spoof trials of that condition)",
          "codec_q": "per codec quality, pooled over codecs"}


def format_breakdown(breakdown: Mapping, track: str) -> str:
    """The printed tables of a `cm_breakdown` (track 'cm') or `sasv_breakdown` (track 'sasv'): one per axis (rows:
    pooled, then each label; columns: trial counts and metrics) and, when made, the attack x codec tables of the
    track's primary metric and EER laid out as the ASVspoof 5 package prints them (pooled row and column first)."""
    if track not in ("cm", "sasv"):
        raise InputError(f"unknown track {track!r}; valid: cm, sasv")
    headers = CM_COLUMNS if track == "cm" else COLUMNS
    counts = ("bonafide", "spoof") if track == "cm" else (TARGET, NONTARGET, SPOOF)
    metrics = list(CM_COLUMNS) if track == "cm" else [m for m in COLUMNS if m in SASV_METRICS]
    pooled = breakdown[POOLED]
    metrics = [m for m in metrics if any(m in cell for cell in _cells(breakdown))]
    blocks = []
    for axis in AXES:
        if axis not in breakdown:
            continue
        rows = [[label] + [str(cell[c]) for c in counts] + [_value(m, cell.get(m), headers) for m in metrics]
                for label, cell in [(POOLED, pooled), *breakdown[axis].items()]]
        blocks.append("\n".join([f"{TITLES[axis]}:"] + _table([axis] + list(counts) + [headers[m] for m in metrics],
                                                               rows)))
    if "attack_by_codec" in breakdown:
        codecs = list(breakdown["codec"])
        for metric in (CM_MATRIX_METRICS if track == "cm" else SASV_MATRIX_METRICS):
            rows = [[POOLED, _value(metric, pooled.get(metric), headers)]
                    + [_value(metric, breakdown["codec"][c].get(metric), headers) for c in codecs]]
            for attack, row in breakdown["attack_by_codec"].items():
                rows.append([attack, _value(metric, breakdown["attack"][attack].get(metric), headers)]
                            + [_value(metric, row[c].get(metric), headers) for c in codecs])
            blocks.append("\n".join([f"{headers[metric]} per attack (rows) and codec condition (columns):"]
                                    + _table(["attack", POOLED] + codecs, rows)))
    return "\n\n".join(blocks)


def _cells(breakdown: Mapping):
    yield breakdown[POOLED]
    for axis in AXES:
        yield from breakdown.get(axis, {}).values()
