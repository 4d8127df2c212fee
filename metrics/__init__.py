"""SASV metrics: EERs (SASV 2022 and ASVspoof conventions), minDCF, a-DCF, t-EER, t-DCF, the report.

Functions take per-class score arrays (`metrics.trials.split_trials` makes them from keys);
`metrics.report.evaluate_trials` computes everything for one system. DET plots live in `metrics.det`
(imported on demand: it pulls in matplotlib).
"""
from metrics.dcf import ASVSPOOF5, DCF_P001, DCF_P005, PAPER_DEFAULT, ADCFCost, DCFCost, min_a_dcf, min_dcf
from metrics.eer import det_eer, roc_eer
from metrics.report import evaluate_trials, format_table
from metrics.sasv import sasv_eers
from metrics.tdcf import asv_operating_point, min_t_dcf, min_t_dcf_legacy
from metrics.teer import concurrent_t_eer
from metrics.trials import split_trials

__all__ = [
    "ADCFCost", "ASVSPOOF5", "DCFCost", "DCF_P001", "DCF_P005", "PAPER_DEFAULT", "asv_operating_point",
    "concurrent_t_eer", "det_eer", "evaluate_trials", "format_table", "min_a_dcf", "min_dcf", "min_t_dcf",
    "min_t_dcf_legacy", "roc_eer", "sasv_eers", "split_trials",
]
