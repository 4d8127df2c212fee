"""Cllr / min Cllr on cases with known answers, and the reliability plot."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from metrics.calibration import cllr, min_cllr, pav_llrs, plot_reliability, reliability_curve


def _gaussian_llrs(mu: float, n: int, seed: int = 0):
    """Scores ~ N(+mu, 2mu) for targets and N(-mu, 2mu) for non-targets ARE their own LLRs: log N(s;mu,2mu) -
    log N(s;-mu,2mu) = s. So they are perfectly calibrated."""
    rng = np.random.default_rng(seed)
    sd = math.sqrt(2 * mu)
    return rng.normal(mu, sd, n), rng.normal(-mu, sd, n)


def _analytical_cllr(mu: float) -> float:
    """E over targets of log2(1 + e^-s), s ~ N(mu, 2mu); the non-target half is the same by symmetry."""
    sd = math.sqrt(2 * mu)

    def integrand(s: float) -> float:
        density = math.exp(-0.5 * ((s - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        return math.log1p(math.exp(-s)) / math.log(2) * density

    return integrate.quad(integrand, mu - 12 * sd, mu + 12 * sd)[0]


def test_calibrated_gaussian_llrs_match_the_analytical_cllr():
    mu = 2.0
    tar, non = _gaussian_llrs(mu, 40000)
    expected = _analytical_cllr(mu)
    assert 0.2 < expected < 0.6  # sanity of the quadrature
    assert cllr(tar, non) == pytest.approx(expected, abs=0.01)
    m = min_cllr(tar, non)
    assert m <= cllr(tar, non)
    assert m == pytest.approx(expected, abs=0.02)  # calibrated: little to gain from re-mapping


def test_all_zero_scores_give_cllr_one():
    assert cllr(np.zeros(7), np.zeros(13)) == pytest.approx(1.0, abs=1e-12)
    assert min_cllr(np.zeros(7), np.zeros(13)) == pytest.approx(1.0, abs=1e-12)  # ties are pooled


def test_perfectly_separated_scores_have_zero_min_cllr():
    tar, non = np.array([0.3, 0.5, 0.9]), np.array([-2.0, 0.1, 0.2, 0.25])
    assert min_cllr(tar, non) == 0.0
    assert cllr(tar, non) > 0.1  # but as LLRs these small values are poorly calibrated
    t_llr, n_llr = pav_llrs(tar, non)
    assert np.isposinf(t_llr).all() and np.isneginf(n_llr).all()


def test_scaling_miscalibrates_but_keeps_min_cllr():
    tar, non = _gaussian_llrs(1.5, 5000, seed=1)
    assert cllr(10 * tar, 10 * non) > cllr(tar, non) + 0.5
    assert min_cllr(10 * tar, 10 * non) == pytest.approx(min_cllr(tar, non), abs=1e-12)
    assert cllr(tar + 3.0, non + 3.0) > cllr(tar, non)  # a shift miscalibrates too


def test_pav_llrs_are_monotonic_and_hand_checked():
    # scores sorted: n(0) t(1) n(2) t(3): PAV pools the violating middle pair -> posteriors 0, .5, .5, 1
    t_llr, n_llr = pav_llrs([1.0, 3.0], [0.0, 2.0])
    assert n_llr[0] == -np.inf and t_llr[1] == np.inf
    assert t_llr[0] == pytest.approx(0.0) and n_llr[1] == pytest.approx(0.0)  # equal class counts: prior odds 1
    # min Cllr = 1/2 [ (0 + 1)/2 + (0 + 1)/2 ] = 0.5 bits
    assert min_cllr([1.0, 3.0], [0.0, 2.0]) == pytest.approx(0.5)


def test_reliability_curve_of_calibrated_scores_is_diagonal(tmp_path):
    tar, non = _gaussian_llrs(2.0, 20000, seed=2)
    non = non[:5000]  # unequal class counts do not matter: classes are weighted equally
    pred, obs, count = reliability_curve(tar, non, n_bins=10)
    busy = count > 500
    np.testing.assert_allclose(obs[busy], pred[busy], atol=0.05)
    assert count.sum() == len(tar) + len(non)
    path = tmp_path / "plots" / "reliability.png"
    plot_reliability(tar, non, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input():
    with pytest.raises(ValueError, match="target and non-target"):
        cllr([], [0.0])
    with pytest.raises(ValueError, match="NaN"):
        min_cllr([np.nan], [0.0])
