"""Metrics against the reference vectors (official implementations) and against brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve as sk_roc_curve

from common.errors import InputError
from metrics.calibration import cllr
from metrics.countermeasure import evaluate_cm, evaluate_cm_keys
from metrics.dcf import ASVSPOOF5, ASVSPOOF5_CM, PAPER_DEFAULT, ADCFCost, DCFCost, bayes_threshold, min_a_dcf, min_dcf
from metrics.eer import det_eer, ranked_roc_curve, roc_curve, roc_curve_eer, roc_eer
from metrics.report import NEEDS_ASV_AND_CM, evaluate_trials, format_table, sasv_metrics, subscore_metrics
from metrics.sasv import ranked_sasv_eers, sasv_eers
from metrics.tdcf import (
    ASVSPOOF5_ORGANISERS_ASV,
    ASVSPOOF5_TDCF,
    ASVSPOOF2019_LEGACY,
    ASVOperatingPoint,
    asv_operating_point,
    asvspoof5_package_operating_point,
    min_t_dcf,
    min_t_dcf_legacy,
)
from metrics.teer import concurrent_t_eer
from metrics.trials import TrialClasses, rank_trials, split_cm_trials, split_trials
from tests.conftest import REPORT_REFERENCE, approx_ref, assert_report_matches_reference, reference_metric_trials


@pytest.fixture(scope="module")
def ref() -> dict:
    """The reference trials: keys and the three score columns, plus expected.json."""
    scores, keys, expected = reference_metric_trials()
    column = lambda name: np.array([float(r[name]) for r in scores])  # noqa: E731
    return {"expected": expected, "keys": [r["asv-label"] for r in keys],
            "cm_labels": [r["cm-label"] for r in keys],
            "cm": column("cm-score"), "asv": column("asv-score"), "sasv": column("sasv-score")}


# ---------------------------------------------------------------- reference vectors

def test_reference_cm_labels_are_the_bonafide_split_of_keys(ref):
    # The CM's bona fide class is target + nontarget: this is what every CM metric below relies on.
    assert all((c == "bonafide") == (k != "spoof") for c, k in zip(ref["cm_labels"], ref["keys"], strict=True))


@pytest.mark.parametrize("score, section", [("sasv", "sasv2022_eers_on_sasv_score"),
                                            ("asv", "sasv2022_eers_on_asv_score")])
def test_sasv2022_eers(ref, score, section):
    got = sasv_eers(ref[score], ref["keys"])
    for name in ("sasv_eer", "sv_eer", "spf_eer"):
        assert got[name] == approx_ref(ref["expected"][section][name]), name


def test_asvspoof_det_convention_eers(ref):
    got = sasv_eers(ref["sasv"], ref["keys"], convention="det")
    for name in ("sasv_eer", "sv_eer", "spf_eer"):
        assert got[name] == approx_ref(ref["expected"]["asvspoof_det_eers_on_sasv_score"][name]), name


@pytest.mark.parametrize("cost, section, fa_costs, has_threshold", [
    (PAPER_DEFAULT, "min_a_dcf_paper_default_on_sasv_score", ("Cfa_asv", "Cfa_cm"), True),
    (ASVSPOOF5, "asvspoof5_on_all_scores", ("Cfa", "Cfa_spoof"), False),
], ids=["paper_default", "asvspoof5"])
def test_min_a_dcf(ref, cost, section, fa_costs, has_threshold):
    exp = ref["expected"][section]
    cm = exp["cost_model"]
    assert cost == ADCFCost(cm["Ptar"], cm["Pnon"], cm["Pspf"], cm["Cmiss"], *(cm[name] for name in fa_costs))
    got = min_a_dcf(split_trials(ref["sasv"], ref["keys"]), cost)
    assert got.value == approx_ref(exp["min_a_dcf"])
    assert ("threshold" in exp) == has_threshold   # expected.json gives the threshold for the paper's costs only
    if has_threshold:
        assert got.threshold == approx_ref(exp["threshold"])


def test_t_eer(ref):
    asv, cm = split_trials(ref["asv"], ref["keys"]), split_trials(ref["cm"], ref["keys"])
    expected = ref["expected"]["asvspoof5_on_all_scores"]["t_eer_percent"]
    for rho in (0.0, 0.5, 1.0):
        assert 100 * concurrent_t_eer(asv, cm, rho) == approx_ref(expected)


def test_legacy_t_dcf_and_its_asv_operating_point(ref):
    exp = ref["expected"]["asvspoof2019_legacy_min_t_dcf"]
    asv, cm = split_trials(ref["asv"], ref["keys"]), split_trials(ref["cm"], ref["keys"])
    assert det_eer(asv.target, asv.nontarget).eer == approx_ref(exp["asv_eer"])
    point = asv_operating_point(asv)
    assert point.p_fa == approx_ref(exp["asv_Pfa"])
    assert point.p_miss == approx_ref(exp["asv_Pmiss"])
    assert point.p_miss_spoof == approx_ref(exp["asv_Pmiss_spoof"])
    assert point.p_fa_spoof == approx_ref(1 - exp["asv_Pmiss_spoof"])
    bonafide = np.concatenate([cm.target, cm.nontarget])
    assert 100 * det_eer(bonafide, cm.spoof).eer == approx_ref(exp["cm_eer_percent"])
    assert min_t_dcf_legacy(bonafide, cm.spoof, point).value == approx_ref(exp["min_t_dcf"])


def test_asvspoof5_t_dcf_package_value_and_definition(ref):
    """expected.json's value comes from the ASVspoof 5 package, which puts the ASV's spoof *rejection* rate
    where the formula has its spoof acceptance rate; the definition gives a different (lower) cost."""
    exp = ref["expected"]["asvspoof5_on_all_scores"]
    cm_cost = exp["cost_model"]
    assert ASVSPOOF5_TDCF.p_target == pytest.approx(cm_cost["Ptar"])
    assert (ASVSPOOF5_TDCF.c_miss, ASVSPOOF5_TDCF.c_fa, ASVSPOOF5_TDCF.c_fa_spoof) == (1, 10, 10)
    asv, cm = split_trials(ref["asv"], ref["keys"]), split_trials(ref["cm"], ref["keys"])
    bonafide = np.concatenate([cm.target, cm.nontarget])
    package = min_t_dcf(bonafide, cm.spoof, asvspoof5_package_operating_point(asv))
    assert package.value == approx_ref(exp["min_t_dcf"])
    definition = min_t_dcf(bonafide, cm.spoof, asv_operating_point(asv)).value
    assert definition < package.value
    assert definition == pytest.approx(_min_t_dcf_by_hand(bonafide, cm.spoof, asv_operating_point(asv)), rel=1e-12)


# The ASVspoof 5 evaluation package's values on the reference scores. Made with asvspoof-challenge/asvspoof5 at commit
# fe23d3053a0889b305d98c9e4cadf418c213d972 (evaluation-package/, run outside this repository; numpy 2.4, Python 3.11,
# the package imported with a stub `pandas` module, which only its file loaders use):
#   calculate_minDCF_EER_CLLR_actDCF(cm, cm_keys, "", printout=False)  -> (minDCF, EER fraction, Cllr, actDCF)
#   calculate_aDCF_tdcf_tEER(cm, asv, sasv, cm_keys, asv_keys, "", printout=False)[1]  -> min t-DCF, no ASV scores
# with cm, asv, sasv the cm-score, asv-score, sasv-score columns of scores.tsv and cm_keys, asv_keys the cm-label and
# asv-label columns of keys.tsv, as numpy arrays in file order.
PACKAGE_TRACK1 = {"min_dcf": 0.051666666666666645, "eer": 100 * 0.019555555555555555, "cllr": 0.144705879559654,
                  "act_dcf": 0.05344444444444445}
PACKAGE_T2_TANDEM_MIN_T_DCF = 0.13908968515831377


def test_track1_metrics_are_the_packages(ref):
    got = evaluate_cm_keys(ref["cm_labels"], ref["cm"])
    assert list(got) == ["min_dcf", "eer", "cllr", "act_dcf"]      # the package's order
    for name, value in PACKAGE_TRACK1.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
    bonafide, spoof = split_cm_trials(ref["cm"], ref["cm_labels"])
    assert got == evaluate_cm(bonafide, spoof)
    assert bonafide.size == 1800 and spoof.size == 3000


def test_track1_cost_model_and_bayes_threshold():
    """ASVspoof 5 evaluation plan: spoof prior 0.05, Cmiss 1, Cfa 10; actDCF's threshold -log(beta),
    beta = Cmiss (1 - Pspoof) / (Cfa Pspoof) = 1.9."""
    assert (ASVSPOOF5_CM.p_target, ASVSPOOF5_CM.c_miss, ASVSPOOF5_CM.c_fa) == (pytest.approx(0.95), 1, 10)
    assert bayes_threshold(ASVSPOOF5_CM) == pytest.approx(-np.log(1.9), rel=1e-15)
    assert bayes_threshold(DCFCost(0.5)) == 0.0


def _package_min_dcf(bonafide: np.ndarray, spoof: np.ndarray, cost: DCFCost) -> float:
    """The package's compute_mindcf on its DET points, by hand: reject the k lowest scores (stable order, bona fide
    before spoof on ties), k = 0..N; the first smallest cost; normalised by min(Cmiss P, Cfa (1 - P))."""
    scores, labels = np.r_[bonafide, spoof], np.r_[np.ones(bonafide.size), np.zeros(spoof.size)]
    labels = labels[np.argsort(scores, kind="mergesort")]
    best = np.inf
    for k in range(labels.size + 1):
        frr, far = labels[:k].sum() / bonafide.size, (spoof.size - (k - labels[:k].sum())) / spoof.size
        best = min(best, cost.c_miss * frr * cost.p_target + cost.c_fa * far * (1 - cost.p_target))
    return best / min(cost.c_miss * cost.p_target, cost.c_fa * (1 - cost.p_target))


def test_min_dcf_is_the_packages_det_point_minimum_with_ties():
    """The package minimises over DET points that, in a run of tied scores, reject bona fide first; ours over
    thresholds. The minima agree (the cost rises then falls inside a run); heavy ties make sure runs occur."""
    rng = np.random.default_rng(7)
    for trial in range(30):
        c = _random_classes(rng, 70, decimals=0 if trial % 2 else None)
        expected = _package_min_dcf(c.target, c.spoof, ASVSPOOF5_CM)
        assert min_dcf(c.target, c.spoof, ASVSPOOF5_CM).value == pytest.approx(expected, rel=1e-12)
        assert evaluate_cm(c.target, c.spoof)["min_dcf"] == pytest.approx(expected, rel=1e-12)


def test_act_dcf_and_cllr_by_hand():
    bonafide, spoof = np.array([-1.0, -0.642, 0.0, 3.0]), np.array([-5.0, -0.6418, 2.0])
    t = -np.log(1.9)                                   # -0.64185...: -0.642 is below it, -0.6418 above
    miss, fa = np.mean(bonafide < t), np.mean(spoof >= t)
    assert (miss, fa) == (0.5, 2 / 3)
    got = evaluate_cm(bonafide, spoof)
    assert got["act_dcf"] == pytest.approx((0.95 * miss + 10 * 0.05 * fa) / 0.5, rel=1e-12)
    expected_cllr = 0.5 * (np.mean(np.log2(1 + np.exp(-bonafide))) + np.mean(np.log2(1 + np.exp(spoof))))
    assert got["cllr"] == pytest.approx(expected_cllr, rel=1e-12) == cllr(bonafide, spoof)


def test_cm_keys_are_checked():
    with pytest.raises(InputError, match="unknown key 'target' at utterance #1; valid keys: bonafide, spoof"):
        split_cm_trials([1.0, 2.0], ["bonafide", "target"])
    with pytest.raises(InputError, match="2 scores but 1 keys"):
        evaluate_cm_keys(["spoof"], np.array([1.0, 2.0]))


def test_t2_tandem_min_t_dcf_with_the_organisers_asv(ref):
    """What `evaluation.py --m t2_tandem` prints: the CM judged in front of the organisers' ASV, whose pooled error
    rates the package hard-codes."""
    cm = split_trials(ref["cm"], ref["keys"])
    bonafide = np.concatenate([cm.target, cm.nontarget])
    got = min_t_dcf(bonafide, cm.spoof, ASVSPOOF5_ORGANISERS_ASV).value
    assert got == pytest.approx(PACKAGE_T2_TANDEM_MIN_T_DCF, rel=1e-9)
    assert got == pytest.approx(_min_t_dcf_by_hand(bonafide, cm.spoof, ASVSPOOF5_ORGANISERS_ASV), rel=1e-12)
    report = evaluate_trials(ref["keys"], ref["sasv"], cm=ref["cm"])      # no ASV scores needed
    assert report["min_t_dcf_asvspoof5_org_asv"] == got


def test_report_restricted_to_some_metrics(ref):
    only = ("spf_eer", "min_a_dcf_asvspoof5", "t_eer")
    got = evaluate_trials(ref["keys"], ref["sasv"], ref["asv"], ref["cm"], only=only)
    full = evaluate_trials(ref["keys"], ref["sasv"], ref["asv"], ref["cm"])
    assert got == {k: full[k] for k in only}


def test_report_on_reference(ref):
    got = evaluate_trials(ref["keys"], ref["sasv"], ref["asv"], ref["cm"])
    assert_report_matches_reference(got, ref["expected"])
    sasv_only = evaluate_trials(ref["keys"], ref["sasv"])
    assert set(sasv_only) == {"sasv_eer", "sv_eer", "spf_eer", "min_a_dcf", "min_a_dcf_asvspoof5"}
    asv_only = evaluate_trials(ref["keys"], ref["sasv"], asv=ref["asv"])
    assert "asv_eer" in asv_only and not set(NEEDS_ASV_AND_CM) & set(asv_only)


def _expected_values(ref) -> dict[str, float]:
    """Our value of every number in expected.json, keyed by its path there ('section.field')."""
    keys = ref["keys"]
    asv, cm = split_trials(ref["asv"], keys), split_trials(ref["cm"], keys)
    bonafide = np.concatenate([cm.target, cm.nontarget])
    report = evaluate_trials(keys, ref["sasv"], ref["asv"], ref["cm"])
    paper = min_a_dcf(split_trials(ref["sasv"], keys), PAPER_DEFAULT)
    point = asv_operating_point(asv)
    out = {f"{section}.{field}": report[name] / factor for name, (section, field, factor) in REPORT_REFERENCE.items()}
    out.update({f"sasv2022_eers_on_asv_score.{k}": v for k, v in sasv_eers(ref["asv"], keys).items()})
    out.update({f"asvspoof_det_eers_on_sasv_score.{k}": v
                for k, v in sasv_eers(ref["sasv"], keys, convention="det").items()})
    out["min_a_dcf_paper_default_on_sasv_score.threshold"] = paper.threshold
    out["asvspoof2019_legacy_min_t_dcf.asv_Pfa"] = point.p_fa
    out["asvspoof2019_legacy_min_t_dcf.asv_Pmiss"] = point.p_miss
    out["asvspoof2019_legacy_min_t_dcf.asv_Pmiss_spoof"] = point.p_miss_spoof
    assert 100 * det_eer(bonafide, cm.spoof).eer == approx_ref(report["cm_eer"])
    return out


def test_report_parts_and_the_one_sort_give_the_same_numbers(ref):
    """evaluate_trials = sasv_metrics + subscore_metrics, key for key and in order; the SASV metrics read one sort of
    the scores (rank_trials), and each of its ROC curves is the one roc_curve sorts for itself."""
    keys, sasv = ref["keys"], ref["sasv"]
    full = evaluate_trials(keys, sasv, ref["asv"], ref["cm"], llr=True)
    parts = {**sasv_metrics(keys, sasv, llr=True), **subscore_metrics(keys, ref["asv"], ref["cm"])}
    assert list(parts.items()) == list(full.items()) and "act_a_dcf" in parts and "t_eer" in parts
    rng = np.random.default_rng(3)
    tied = np.round(rng.normal(size=3000), 1) * rng.choice([1.0, -1.0], 3000)    # ties, and zeros of both signs
    tied_keys = rng.choice(["target", "nontarget", "spoof"], 3000)
    for scores, k in ((sasv, keys), (tied, tied_keys)):
        classes = split_trials(scores, k)
        ranked = rank_trials(classes)
        for negatives, neg in (((1, 2), np.r_[classes.nontarget, classes.spoof]), ((1,), classes.nontarget),
                               ((2,), classes.spoof)):
            fpr, tpr, _ = roc_curve(classes.target, neg)
            got = ranked_roc_curve(ranked, negatives)
            assert np.array_equal(got[0], fpr) and np.array_equal(got[1], tpr)
            assert roc_curve_eer(*got).eer == roc_eer(classes.target, neg).eer
        assert ranked_sasv_eers(ranked) == sasv_eers(scores, k)
        assert min_a_dcf(ranked, ASVSPOOF5) == min_a_dcf(classes, ASVSPOOF5)


def test_det_plot_draws_only_the_turns_of_the_staircase():
    """corners() leaves out only points on a straight axis-parallel run between two kept points: the same line."""
    from metrics.det import corners
    rng = np.random.default_rng(4)
    scores = np.round(rng.normal(size=2000), 3)                  # some ties: diagonal steps, which stay
    keys = rng.choice(["target", "nontarget"], 2000, p=[0.1, 0.9])
    fpr, tpr, _ = roc_curve(scores[keys == "target"], scores[keys == "nontarget"])
    x, y = fpr, 1 - tpr
    kx, ky = corners(x, y)
    index = {point: i for i, point in enumerate(zip(x.tolist(), y.tolist(), strict=True))}
    assert len(index) == x.size                                  # every point distinct: each kept one is found
    at = [index[p] for p in zip(kx.tolist(), ky.tolist(), strict=True)]
    assert at[0] == 0 and at[-1] == x.size - 1 and 3 <= len(at) < x.size / 2
    for a, b in zip(at[:-1], at[1:], strict=True):                  # what lies between two kept points is on one line
        assert b > a and (b == a + 1 or (x[a:b + 1] == x[a]).all() or (y[a:b + 1] == y[a]).all())
    assert corners(x[:2], y[:2])[0].size == 2


def test_every_value_of_expected_json_matches(ref):
    """Each number of expected.json (cost models aside, checked above) has our value within 1e-6 relative; a number
    added to the file without a counterpart here fails the test instead of going unchecked."""
    ours = _expected_values(ref)
    numbers = {f"{section}.{field}": value for section, fields in ref["expected"].items() if isinstance(fields, dict)
               for field, value in fields.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    assert set(numbers) == set(ours), f"unmatched: {sorted(set(numbers) ^ set(ours))}"
    for name, value in numbers.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-12), name


# ---------------------------------------------------------------- independent checks

def _random_classes(rng: np.random.Generator, n: int, decimals: int | None) -> TrialClasses:
    sizes = rng.integers(1, n, 3)
    mus = (2.0, 0.0, rng.uniform(-1, 2))
    arrays = [rng.normal(mu, 1, size) for mu, size in zip(mus, sizes, strict=True)]
    if decimals is not None:  # ties
        arrays = [np.round(a, decimals) for a in arrays]
    return TrialClasses(*arrays)


def test_roc_eer_matches_sklearn_and_brentq_with_ties():
    rng = np.random.default_rng(1)
    for trial in range(40):
        c = _random_classes(rng, 60, decimals=1 if trial % 2 else None)
        y = np.r_[np.ones(c.target.size), np.zeros(c.nontarget.size)]
        fpr, tpr, _ = sk_roc_curve(y, np.r_[c.target, c.nontarget])
        expected = brentq(lambda x, fpr=fpr, tpr=tpr: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
        assert roc_eer(c.target, c.nontarget).eer == pytest.approx(expected, abs=1e-9)


def test_det_eer_by_hand():
    # Sorted: 0(t) 1(n) 2(t) 3(n); rejecting k lowest: FRR 0,.5,.5,1,1  FAR 1,1,.5,.5,0 -> first |gap| min at k=2.
    got = det_eer(np.array([0.0, 2.0]), np.array([1.0, 3.0]))
    assert got.eer == 0.5 and got.threshold == 1.0


def test_min_dcf_brute_force():
    rng = np.random.default_rng(2)
    for p_target in (0.01, 0.05, 0.5):
        c = _random_classes(rng, 80, decimals=1)
        best = np.inf
        for t in np.r_[np.unique(np.r_[c.target, c.nontarget]), np.inf]:
            cost = p_target * np.mean(c.target < t) + (1 - p_target) * np.mean(c.nontarget >= t)
            best = min(best, cost)
        expected = best / min(p_target, 1 - p_target)
        assert min_dcf(c.target, c.nontarget, DCFCost(p_target)).value == pytest.approx(expected, rel=1e-12)


def test_min_a_dcf_brute_force():
    rng = np.random.default_rng(3)
    for cost in (PAPER_DEFAULT, ASVSPOOF5):
        c = _random_classes(rng, 80, decimals=None)  # no ties: every curve point is a real threshold
        best = np.inf
        for t in np.r_[-np.inf, np.r_[c.target, c.nontarget, c.spoof]]:
            value = (cost.c_miss * cost.p_target * np.mean(c.target <= t)
                     + cost.c_fa_asv * cost.p_nontarget * np.mean(c.nontarget > t)
                     + cost.c_fa_cm * cost.p_spoof * np.mean(c.spoof > t))
            best = min(best, value)
        norm = min(cost.c_fa_asv * cost.p_nontarget + cost.c_fa_cm * cost.p_spoof, cost.c_miss * cost.p_target)
        assert min_a_dcf(c, cost).value == pytest.approx(best / norm, rel=1e-12)


def _min_t_dcf_by_hand(bonafide, spoof, point: ASVOperatingPoint) -> float:
    cost = ASVSPOOF5_TDCF
    best = np.inf
    for t in np.r_[-np.inf, bonafide, spoof]:
        p_miss_cm, p_fa_cm = np.mean(bonafide <= t), np.mean(spoof > t)
        tandem = (cost.p_target * cost.c_miss * (p_miss_cm + (1 - p_miss_cm) * point.p_miss)
                  + cost.p_nontarget * cost.c_fa * (1 - p_miss_cm) * point.p_fa
                  + cost.p_spoof * cost.c_fa_spoof * p_fa_cm * point.p_fa_spoof)
        best = min(best, tandem)
    c0 = cost.p_target * cost.c_miss * point.p_miss + cost.p_nontarget * cost.c_fa * point.p_fa
    no_cm = c0 + min(cost.p_target * cost.c_miss - c0, cost.p_spoof * cost.c_fa_spoof * point.p_fa_spoof)
    return best / no_cm


def test_legacy_t_dcf_by_hand():
    rng = np.random.default_rng(4)
    c = _random_classes(rng, 100, decimals=None)
    bonafide, spoof = c.target, c.spoof
    point = ASVOperatingPoint(0.0, p_miss=0.05, p_fa=0.03, p_miss_spoof=0.4, p_fa_spoof=0.6)
    k = ASVSPOOF2019_LEGACY
    c1 = k.p_target * (k.c_miss_cm - k.c_miss_asv * point.p_miss) - k.p_nontarget * k.c_fa_asv * point.p_fa
    c2 = k.c_fa_cm * k.p_spoof * (1 - point.p_miss_spoof)
    best = min(c1 * np.mean(bonafide <= t) + c2 * np.mean(spoof > t) for t in np.r_[-np.inf, bonafide, spoof])
    assert min_t_dcf_legacy(bonafide, spoof, point).value == pytest.approx(best / min(c1, c2), rel=1e-12)


def test_t_dcf_refuses_an_inverted_asv():
    point = ASVOperatingPoint(0.0, p_miss=0.95, p_fa=0.95, p_miss_spoof=0.1, p_fa_spoof=0.9)
    with pytest.raises(InputError, match="negative weight"):
        min_t_dcf(np.array([1.0, 2.0]), np.array([0.0, 0.5]), point)


def _naive_t_eer(asv: TrialClasses, cm: TrialClasses, rho: float) -> float:
    """The concurrent t-EER by scanning every CM threshold for every ASV threshold (quadratic)."""
    scores = np.r_[asv.target, asv.nontarget, asv.spoof]
    label = np.r_[np.zeros(asv.target.size), np.ones(asv.nontarget.size), np.full(asv.spoof.size, 2)]
    label = label[np.argsort(scores, kind="stable")]
    a = np.r_[0, np.cumsum(label == 0) / asv.target.size]
    b = np.r_[1, 1 - np.cumsum(label == 1) / asv.nontarget.size]
    c = np.r_[1, 1 - np.cumsum(label == 2) / asv.spoof.size]
    bona = np.r_[cm.target, cm.nontarget]
    cm_label = np.r_[np.ones(bona.size), np.zeros(cm.spoof.size)][np.argsort(np.r_[bona, cm.spoof], kind="stable")]
    m = np.r_[0, np.cumsum(cm_label) / bona.size]
    f = np.r_[1, (cm.spoof.size - (np.arange(1, cm_label.size + 1) - np.cumsum(cm_label))) / cm.spoof.size]
    best_crit, value = np.inf, None
    for j in range(a.size):
        gap = (m + (1 - m) * a[j]) - ((1 - rho) * (1 - m) * b[j] + rho * f * c[j])
        i = int(np.argmin(np.abs(gap)))
        if a[j] < (1 - rho) * b[j] + rho * c[j]:
            with np.errstate(divide="ignore", invalid="ignore"):
                crit = abs(b[j] / c[j] - f[i] / (1 - m[i]))
            if crit < best_crit:
                best_crit, value = crit, c[j] * f[i]
    return value


def test_t_eer_matches_quadratic_scan():
    rng = np.random.default_rng(5)
    for trial in range(60):
        decimals = (None, 1, 0)[trial % 3]
        asv = _random_classes(rng, 40, decimals)
        cm = TrialClasses(*(np.round(rng.normal(mu, 1, x.size), 1) if decimals is not None
                            else rng.normal(mu, 1, x.size) for mu, x in zip((1, 1, -1), asv, strict=True)))
        for rho in (0.0, 0.5, 1.0):
            expected = _naive_t_eer(asv, cm, rho)
            if expected is None:
                with pytest.raises(InputError):
                    concurrent_t_eer(asv, cm, rho)
            else:
                assert concurrent_t_eer(asv, cm, rho) == expected


# ---------------------------------------------------------------- input checks and table

def test_unknown_key_and_empty_class_are_clear_errors():
    with pytest.raises(InputError, match="unknown key 'bonafide'"):
        split_trials([1.0, 2.0], ["target", "bonafide"])
    with pytest.raises(InputError, match="no 'spoof' trials"):
        min_a_dcf(split_trials([1.0, 2.0], ["target", "nontarget"]))
    with pytest.raises(InputError, match="finite"):
        roc_eer(np.array([np.nan, 1.0]), np.array([0.0]))
    with pytest.raises(InputError, match="priors"):
        ADCFCost(0.9, 0.1, 0.1, 1, 1, 1)


def test_format_table_aligns_and_marks_missing_metrics():
    table = format_table({"fused": {"sasv_eer": 1.23456, "min_a_dcf": 0.5, "t_eer": 2.0},
                          "a much longer name": {"sasv_eer": 10.0, "min_a_dcf": 0.25}})
    lines = table.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert "SASV-EER(%)" in lines[0] and "t-EER(%)" in lines[0]
    assert "1.235" in lines[2] and lines[3].rstrip().endswith("-")


def test_plot_det_writes_an_image(tmp_path):
    from metrics.det import plot_det
    rng = np.random.default_rng(6)
    keys = ["target"] * 50 + ["nontarget"] * 60 + ["spoof"] * 70
    scores = np.r_[rng.normal(2, 1, 50), rng.normal(0, 1, 60), rng.normal(1, 1, 70)]
    out = tmp_path / "det.png"
    plot_det({"a": (scores, keys), "b": (scores + rng.normal(0, 1, scores.size), keys)}, out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
