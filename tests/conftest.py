"""Shared fixtures and helpers. Reference data lives beside the checkout in ../shared/reference and is never
copied in."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from common.cli import report_to_stderr

report_to_stderr()   # library progress lines on stderr, as the entry points show them


def _share_the_cores() -> None:
    """Under pytest-xdist (pytest.ini: `-n auto`), each worker's torch and the processes its tests start get their
    share of the cores: two workers with two threads each on 2 cores run several times slower than with one
    (threads spin-wait for each other)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        torch.set_num_threads(threads)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(threads))


_share_the_cores()

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = ROOT.parent / "shared" / "reference"


def reference_path(*parts: str) -> Path:
    """Path inside ../shared/reference, skipping the calling test when it is absent (e.g. on a user's machine)."""
    path = REFERENCE_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` first, the rest in their order: xdist (`--dist loadfile --no-loadscope-reorder`) hands
    files out in this order, so the longest file (the demo run) starts at once on one worker while the others
    share the rest, instead of starting last and running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a busy 2-core machine two spinning threads run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sweep_eer(target: np.ndarray, nontarget: np.ndarray) -> float:
    """Equal error rate (fraction) by sweeping every score as a threshold; a few lines independent of metrics/,
    for tests that judge scores rather than the metrics."""
    scores = np.concatenate([target, nontarget])
    labels = np.concatenate([np.ones(len(target)), np.zeros(len(nontarget))])
    order = np.argsort(scores, kind="mergesort")
    labels = labels[order]
    frr = np.concatenate([[0.0], np.cumsum(labels) / len(target)])
    far = np.concatenate([[1.0], 1 - np.cumsum(1 - labels) / len(nontarget)])
    i = np.argmin(np.abs(frr - far))
    return float((frr[i] + far[i]) / 2)


# --------------------------------------------------------------- metric reference vectors (../shared/reference/metrics)

# metrics.report name -> (expected.json section, field, factor from the reference's unit to ours: 100 for fractions
# that the report gives in percent)
REPORT_REFERENCE = {
    "sasv_eer": ("sasv2022_eers_on_sasv_score", "sasv_eer", 100),
    "sv_eer": ("sasv2022_eers_on_sasv_score", "sv_eer", 100),
    "spf_eer": ("sasv2022_eers_on_sasv_score", "spf_eer", 100),
    "min_a_dcf": ("min_a_dcf_paper_default_on_sasv_score", "min_a_dcf", 1),
    "min_a_dcf_asvspoof5": ("asvspoof5_on_all_scores", "min_a_dcf", 1),
    "t_eer": ("asvspoof5_on_all_scores", "t_eer_percent", 1),
    "min_t_dcf_asvspoof5": ("asvspoof5_on_all_scores", "min_t_dcf", 1),
    "min_t_dcf_asvspoof2019": ("asvspoof2019_legacy_min_t_dcf", "min_t_dcf", 1),
    "asv_eer": ("asvspoof2019_legacy_min_t_dcf", "asv_eer", 100),
    "cm_eer": ("asvspoof2019_legacy_min_t_dcf", "cm_eer_percent", 1),
}


def approx_ref(value: float) -> object:
    """pytest.approx at the reference vectors' tolerance: 1e-6 relative (1e-12 absolute where 0 is expected)."""
    return pytest.approx(value, rel=1e-6, abs=1e-12 if value == 0 else 0)


def reference_metric_trials() -> tuple[list[dict], list[dict], dict]:
    """The metric reference vectors: the rows of scores.tsv and keys.tsv (one per trial, the same order) and
    expected.json; skips the calling test when they are absent."""
    expected = json.loads(reference_path("metrics", "expected.json").read_text())
    with open(reference_path("metrics", "scores.tsv"), encoding="utf-8") as f:
        scores = list(csv.DictReader(f, delimiter="\t"))
    with open(reference_path("metrics", "keys.tsv"), encoding="utf-8") as f:
        keys = list(csv.DictReader(f, delimiter="\t"))
    assert [r["filename"] for r in scores] == [r["filename"] for r in keys]
    return scores, keys, expected


def assert_report_matches_reference(got: dict, expected: dict) -> None:
    """A report of every metric on the reference trials (metrics.report.evaluate_trials, evaluate.py --json)
    against expected.json: each official value, and the t-DCF formula's value below the package's."""
    for name, (section, field, factor) in REPORT_REFERENCE.items():
        assert got[name] == approx_ref(factor * expected[section][field]), name
    assert 0 < got["min_t_dcf_asvspoof5_formula"] < got["min_t_dcf_asvspoof5"]
