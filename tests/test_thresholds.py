"""Dev-chosen thresholds and their actual error rates / costs, on a hand-checkable example."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.errors import InputError
from metrics.dcf import ASVSPOOF5, PAPER_DEFAULT, DCFCost, min_a_dcf, min_dcf
from metrics.thresholds import (
    actual_a_dcf,
    actual_dcf,
    choose_threshold,
    error_rates,
    evaluate_threshold,
    threshold_report,
)
from metrics.trials import TrialClasses
from tests.conftest import reference_path

DEV = {"target": [3.0, 4.0, 5.0, 6.0], "nontarget": [0.0, 1.0, 2.0, 3.5], "spoof": [1.5, 2.5, 4.5]}
EVAL = {"target": [2.0, 4.0, 5.0, 7.0], "nontarget": [1.0, 3.0, 4.8], "spoof": [0.0, 5.0, 6.0]}


def test_eer_threshold():
    # Accepting >= 3.5 rejects target 3 (1/4) and accepts nontarget 3.5 (1/4): the EER point, 25 %.
    t = choose_threshold(DEV, "eer")
    assert t == pytest.approx(3.5)
    assert error_rates(DEV, t) == pytest.approx({"p_miss": 0.25, "p_fa_nontarget": 0.25, "p_fa_spoof": 1 / 3})


def test_min_dcf_threshold_by_hand():
    # p_target 0.5, unit costs: DCF = Pmiss + Pfa. Best 0.25, first reached between 2 and 3 -> midpoint 2.5.
    t = choose_threshold(DEV, "min_dcf", dcf_cost=DCFCost(p_target=0.5))
    assert t == pytest.approx(2.5)
    # p_target 0.05: DCF = Pmiss + 19 Pfa, so no false accept is affordable: between 3.5 and 4.
    t = choose_threshold(DEV, "min_dcf", dcf_cost=DCFCost(p_target=0.05))
    assert t == pytest.approx(3.75)
    assert actual_dcf(DEV["target"], DEV["nontarget"], t, DCFCost(p_target=0.05)) == pytest.approx(0.25)


def test_far_threshold():
    assert choose_threshold(DEV, "far", far=0.25) == pytest.approx(2.75)  # (2 + 3.5) / 2: FA 1/4
    assert choose_threshold(DEV, "far", far=0.0) == pytest.approx(4.5)  # above every nontarget
    assert choose_threshold(DEV, "far", far=0.0, negatives="both") == pytest.approx(5.5)
    assert choose_threshold(DEV, "far", far=1.0) == pytest.approx(-1.0)  # accept everything


def test_min_a_dcf_threshold_and_eval_report_by_hand():
    # Paper cost model: a-DCF = (0.9 Pmiss + 0.5 Pfa_non + 1.0 Pfa_spoof) / 0.9. Minimum 0.5 at 4.75
    # (rejects targets 3 and 4, accepts no nontarget or spoof); the runner-up is 2.75 with 0.509.
    report = threshold_report(DEV, EVAL, "min_a_dcf")
    assert report["threshold"] == pytest.approx(4.75)
    assert report["dev"]["actual_a_dcf"] == pytest.approx(0.5)
    ev = report["eval"]
    # eval at 4.75: targets 2, 4 rejected; nontarget 4.8 accepted; spoofs 5, 6 accepted.
    assert ev["p_miss"] == pytest.approx(0.5)
    assert ev["p_fa_nontarget"] == pytest.approx(1 / 3)
    assert ev["p_fa_spoof"] == pytest.approx(2 / 3)
    assert ev["actual_a_dcf"] == pytest.approx((0.9 * 0.5 + 0.5 / 3 + 1.0 * 2 / 3) / 0.9)
    assert ev["actual_dcf"] == pytest.approx((0.05 * 0.5 + 0.95 / 3) / 0.05)
    json.dumps(report)  # plain floats, ready for a results file


def test_dev_equals_eval_gives_the_minimum_costs():
    rng = np.random.default_rng(0)
    c = TrialClasses(rng.normal(2, 1, 500), rng.normal(0, 1, 2000), rng.normal(1, 1.5, 1500))
    t = choose_threshold(c, "min_dcf")
    assert actual_dcf(c.target, c.nontarget, t) == pytest.approx(min_dcf(c.target, c.nontarget, DCFCost(0.05)).value)
    for cost in (PAPER_DEFAULT, ASVSPOOF5):
        t = choose_threshold(c, "min_a_dcf", a_dcf_cost=cost)
        assert actual_a_dcf(c, t, cost) == pytest.approx(min_a_dcf(c, cost).value)


def test_reference_min_a_dcf_reached_by_the_chosen_threshold():
    scores_path, keys_path = reference_path("metrics", "scores.tsv"), reference_path("metrics", "keys.tsv")
    expected = json.loads(reference_path("metrics", "expected.json").read_text())
    expected = expected["min_a_dcf_paper_default_on_sasv_score"]
    scores = np.loadtxt(scores_path, skiprows=1, usecols=4)
    keys = np.loadtxt(keys_path, skiprows=1, usecols=3, dtype=str)
    c = {k: scores[keys == k] for k in ("target", "nontarget", "spoof")}
    t = choose_threshold(c, "min_a_dcf")
    assert actual_a_dcf(c, t) == pytest.approx(expected["min_a_dcf"], abs=1e-12)
    assert evaluate_threshold(c, t)["actual_a_dcf"] == pytest.approx(expected["min_a_dcf"], abs=1e-12)


def test_missing_classes_and_bad_arguments():
    with pytest.raises(InputError, match="no 'spoof' trials"):
        choose_threshold({"target": [1.0], "nontarget": [0.0]}, "min_a_dcf")
    with pytest.raises(InputError, match="unknown threshold method 'best'"):
        choose_threshold(DEV, "best")
    with pytest.raises(InputError, match="needs far in"):
        choose_threshold(DEV, "far")
    with pytest.raises(InputError, match="unknown key 'bonafide'"):
        error_rates({"target": [1.0], "bonafide": [0.0]}, 0.5)
    with pytest.raises(InputError, match="finite"):
        error_rates({"target": [np.nan]}, 0.5)
    assert "actual_a_dcf" not in evaluate_threshold({"target": [1.0], "nontarget": [0.0]}, 0.5)
