"""The grid's report: ablation.csv (every metric, mean and std over seeds) and ablation.md (the tables)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping, Sequence

from common.io import atomic_write
from metrics.report import NEEDS_LLR
from pipeline.stages.experiment import experiment
from pipeline.tools.ablation.analysis import THRESHOLD_METHODS, threshold_label
from pipeline.tools.ablation.grid import SCORE_SPLITS, score_files

INFO_COLUMNS = ("system", "backend", "cm_score", "score_norm", "enrolment", "calibrated", "seeds", "n_runs")


def csv_rows(results: Sequence[Mapping]) -> tuple[list[str], list[dict]]:
    """Header and rows of ablation.csv: one row per system, every metric as its mean over seeds followed by
    its sample standard deviation (`<metric>_std`, empty for single-run systems). The metrics only LLR back-ends
    report (the actual a-DCFs) come last, so that every other column keeps its place whichever systems run."""
    metric_keys: list[str] = []
    for r in results:
        metric_keys += [k for k in r["mean"] if k not in metric_keys]
    llr_only = {f"{split}_{m}" for split in SCORE_SPLITS for m in NEEDS_LLR}
    metric_keys = [k for k in metric_keys if k not in llr_only] + [k for k in metric_keys if k in llr_only]
    header = list(INFO_COLUMNS) + [c for k in metric_keys for c in (k, f"{k}_std")]
    rows = []
    for r in results:
        row = {"system": r["system"], "backend": r["backend"], "cm_score": r["cm_score"],
               "score_norm": r["score_norm"], "enrolment": r["enrolment"], "calibrated": r["calibrated"],
               "seeds": " ".join(map(str, r["seeds"])), "n_runs": len(r["runs"])}
        for k in metric_keys:
            row[k] = _num(r["mean"].get(k))
            row[f"{k}_std"] = _num(r["std"].get(k)) if r["std"] else ""
        rows.append(row)
    return header, rows


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_csv(path: Path, results: Sequence[Mapping]) -> None:
    header, rows = csv_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def _cell(result: Mapping, key: str, scale: float = 1.0, digits: int = 2) -> str:
    mean = result["mean"].get(key)
    if mean is None:
        return "-"
    text = f"{scale * mean:.{digits}f}"
    if result["std"]:
        text += f" ± {scale * result['std'][key]:.{digits}f}"
    return text


def _source(cfg: Mapping) -> str:
    """Where the systems' scores come from, as the report's first words."""
    if score_files(cfg):
        files = "; ".join(f"{split}: ASV `{f['asv']}`, CM `{f['cm']}`" + (f", trials `{f['trials']}`" if f["trials"]
                                                                           else "")
                          for split, f in cfg["scores"].items())
        return f"Score files ({files})"
    return f"Experiment `{cfg['output_dir']}`, embeddings `{experiment(cfg).embeddings}`"


def _fit_set(cfg: Mapping) -> str:
    return "dev" if score_files(cfg) else f"`backend.fit_on` ({cfg['backend']['fit_on']})"


def markdown(cfg: Mapping, results: Sequence[Mapping], thresholds: Mapping) -> str:
    """ablation.md: the results table sorted by dev SASV-EER, the deployed-threshold table, picture links."""
    lines = [
        "# Fusion ablation", "",
        f"{_source(cfg)}, {len(results)} systems, "
        "sorted by dev SASV-EER. EERs in %; a-DCF with the paper's default costs; Cllr in bits (target vs "
        "nontarget + spoof). Trained back-ends: mean ± sample standard deviation over their seeds. "
        f"Score-level back-ends are fitted on {_fit_set(cfg)}, so their dev numbers are optimistic. "
        "† marks calibrated systems (LLR output): only their Cllr is meaningful as such; min Cllr compares all. "
        "Back-ends whose output is an LLR also get the actual a-DCF at the Bayes threshold of the a-DCF costs "
        "(act a-DCF; '-' for the others, whose scores are no LLRs).", "",
        "![DET curves of every system on eval](ablation_det.png)", "",
        "## Results", "",
        "| system | back-end | CM score | score norm | enrolment | seeds | dev SASV-EER | eval SASV-EER | eval SV-EER "
        "| eval SPF-EER | eval min a-DCF | eval act a-DCF | eval t-EER | eval Cllr | eval min Cllr | pictures |",
        "|---|---|---|---|---|---|" + "---:|" * 9 + "---|",
    ]
    for r in results:
        name = r["system"] + (" †" if r["calibrated"] else "")
        pictures = " · ".join(f"[{Path(p).stem}]({r['system']}/{p})" for p in r["files"])
        seeds = " ".join(map(str, r["seeds"])) or "-"
        lines.append(f"| {name} | {r['backend']} | {r['cm_score']} | {r['score_norm']} | {r['enrolment']} | {seeds} | "
                     f"{_cell(r, 'dev_sasv_eer')} | {_cell(r, 'eval_sasv_eer')} | {_cell(r, 'eval_sv_eer')} | "
                     f"{_cell(r, 'eval_spf_eer')} | {_cell(r, 'eval_min_a_dcf', digits=4)} | "
                     f"{_cell(r, 'eval_act_a_dcf', digits=4)} | {_cell(r, 'eval_t_eer')} | "
                     f"{_cell(r, 'eval_cllr', digits=3)} | {_cell(r, 'eval_min_cllr', digits=3)} | {pictures} |")
    lines += [
        "", "## Deployed thresholds", "",
        "Each threshold is chosen on the dev SASV scores and applied unchanged to eval (accept iff score >= "
        f"threshold): the EER point (target vs {thresholds['negatives']}), the min-DCF point (target vs nontarget, "
        "p_target 0.05), the min-a-DCF point (all three classes), and the most accepting threshold with a "
        f"false-accept rate of at most {100 * thresholds['far']:g} % (on {thresholds['negatives']}). Rates in %. "
        "Actual minus min a-DCF on eval is the price of fixing the threshold on dev.", "",
        "| system | threshold from dev | threshold | eval miss | eval FA nontarget | eval FA spoof | eval actual DCF "
        "| eval actual a-DCF | eval min a-DCF |",
        "|---|---|" + "---:|" * 7,
    ]
    for r in results:
        for m in THRESHOLD_METHODS:
            lines.append(f"| {r['system']} | {threshold_label(m, thresholds)} | "
                         f"{_cell(r, f'{m}_threshold', digits=4)} | "
                         f"{_cell(r, f'{m}_eval_p_miss', 100)} | {_cell(r, f'{m}_eval_p_fa_nontarget', 100)} | "
                         f"{_cell(r, f'{m}_eval_p_fa_spoof', 100)} | {_cell(r, f'{m}_eval_actual_dcf', digits=4)} | "
                         f"{_cell(r, f'{m}_eval_actual_a_dcf', digits=4)} | {_cell(r, 'eval_min_a_dcf', digits=4)} |")
    lines += [
        "", "## Files", "",
        "- `ablation.csv`: one row per system, every metric (dev_/eval_ prefixes; threshold columns "
        "`<method>_threshold`, `<method>_eval_<rate>` as fractions) with its `_std` over seeds.",
        "- `<system>/result.json`: every run's metrics, thresholds and Cllr; mean and std.",
        "- `<system>/[seed_<k>/]thresholds.json`: each dev-chosen threshold with its dev and eval rates and costs.",
        "- `<system>/[seed_<k>/]scores/sasv_{dev,eval}.txt`: SASV scores (SASV 2022 format).",
        "- `<system>/hist.png`, `det.png`, `reliability.png`: pictures of the system (first seed).", "",
    ]
    return "\n".join(lines)
