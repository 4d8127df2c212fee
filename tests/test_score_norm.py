"""Cohort score normalisation against hand-written formulas on a toy case."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from asv.score_norm import normalise_scores, speaker_mean_cohort

# 2 enrolment models, 3 test utterances, 4 cohort speakers, 2-D embeddings (unnormalised on purpose).
ENROL = np.array([[1.0, 0.0], [0.0, 2.0]])
TEST = np.array([[3.0, 4.0], [1.0, -1.0], [-2.0, 0.5]])
COHORT = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, -3.0], [2.0, -1.0]])
EI = np.array([0, 0, 1, 1, 0])
TI = np.array([0, 1, 1, 2, 2])


def _cos(a, b):
    return (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))


def _stats(v, top=None):
    scores = sorted((_cos(v, c) for c in COHORT), reverse=True)[:top]
    mean = sum(scores) / len(scores)
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))


def _expected(method, top=None):
    out = []
    for e, t in zip(EI, TI, strict=True):
        s = _cos(ENROL[e], TEST[t])
        me, se = _stats(ENROL[e], top)
        mt, st = _stats(TEST[t], top)
        z, tn = (s - me) / se, (s - mt) / st
        out.append({"none": s, "znorm": z, "tnorm": tn, "snorm": (z + tn) / 2, "asnorm": (z + tn) / 2}[method])
    return np.array(out)


@pytest.mark.parametrize("method", ["none", "znorm", "tnorm", "snorm"])
def test_methods_match_hand_formulas(method):
    got = normalise_scores(method, ENROL, TEST, EI, TI, cohort_emb=COHORT)
    np.testing.assert_allclose(got, _expected(method), rtol=1e-12, atol=1e-12)


def test_asnorm_top2_matches_hand_formula():
    got = normalise_scores("asnorm", ENROL, TEST, EI, TI, cohort_emb=COHORT, top_n=2)
    np.testing.assert_allclose(got, _expected("asnorm", top=2), rtol=1e-12, atol=1e-12)
    assert not np.allclose(got, _expected("snorm"))


def test_asnorm_with_whole_cohort_is_snorm():
    np.testing.assert_allclose(normalise_scores("asnorm", ENROL, TEST, EI, TI, cohort_emb=COHORT, top_n=4),
                               normalise_scores("snorm", ENROL, TEST, EI, TI, cohort_emb=COHORT), rtol=1e-12)


def test_given_raw_scores_are_normalised_instead_of_cosines():
    raw = np.array([0.5, -0.1, 0.2, 0.3, 0.9])
    got = normalise_scores("znorm", ENROL, TEST, EI, TI, cohort_emb=COHORT, scores=raw)
    expected = [(s - _stats(ENROL[e])[0]) / _stats(ENROL[e])[1] for s, e in zip(raw, EI, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_large_random_case_is_consistent_and_shaped():
    rng = np.random.default_rng(0)
    enrol, test, cohort = rng.normal(size=(50, 16)), rng.normal(size=(3000, 16)), rng.normal(size=(200, 16))
    ei, ti = rng.integers(0, 50, 20000), rng.integers(0, 3000, 20000)
    s = normalise_scores("snorm", enrol, test, ei, ti, cohort_emb=cohort)
    z = normalise_scores("znorm", enrol, test, ei, ti, cohort_emb=cohort)
    t = normalise_scores("tnorm", enrol, test, ei, ti, cohort_emb=cohort)
    assert s.shape == (20000,)
    np.testing.assert_allclose(s, (z + t) / 2, rtol=1e-10)
    a = normalise_scores("asnorm", enrol, test, ei, ti, cohort_emb=cohort, top_n=20)
    assert a.shape == (20000,) and np.isfinite(a).all()


def test_a_large_float32_table_is_normalised_a_chunk_at_a_time_with_the_whole_table_formula():
    """ASVspoof 5 eval has 680k test embeddings: a float64 unit-length copy of the table (two, while dividing) was
    the SASV stage's peak. The rows are now made a chunk at a time, with the same values as the whole-table formula."""
    rng = np.random.default_rng(1)
    test = rng.normal(size=(60_000, 64)).astype(np.float32)         # 15 MB; a float64 copy is 31 MB
    enrol, cohort = rng.normal(size=(40, 64)).astype(np.float32), rng.normal(size=(30, 64))
    ei, ti = rng.integers(0, 40, 2000), rng.integers(0, len(test), 2000)
    unit = test.astype(np.float64) / np.linalg.norm(test.astype(np.float64), axis=1, keepdims=True)
    e_unit = enrol.astype(np.float64) / np.linalg.norm(enrol.astype(np.float64), axis=1, keepdims=True)
    assert np.array_equal(normalise_scores("none", enrol, test, ei, ti), np.einsum("ij,ij->i", e_unit[ei], unit[ti]))
    expected = normalise_scores("asnorm", e_unit, unit, ei, ti, cohort_emb=cohort, top_n=5)
    tracemalloc.start()
    try:
        got = normalise_scores("asnorm", enrol, test, ei, ti, cohort_emb=cohort, top_n=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert peak < unit.nbytes / 3, f"{peak / 2**20:.1f} MB held at once: a copy of the whole table"


def test_speaker_mean_cohort():
    emb = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0], [1.0, 1.0]])
    names, cohort = speaker_mean_cohort(emb, ["b", "a", "a", "b"])
    assert names == ["a", "b"]
    np.testing.assert_allclose(cohort, [[0.0, 1.0], [(1 + 1 / math.sqrt(2)) / 2, (1 / math.sqrt(2)) / 2]])


def test_errors():
    with pytest.raises(ValueError, match="unknown score normalisation 'xnorm'"):
        normalise_scores("xnorm", ENROL, TEST, EI, TI, cohort_emb=COHORT)
    with pytest.raises(ValueError, match="needs a cohort"):
        normalise_scores("snorm", ENROL, TEST, EI, TI)
    with pytest.raises(ValueError, match=r"top_n must be an integer in \[2, cohort size 4\]"):
        normalise_scores("asnorm", ENROL, TEST, EI, TI, cohort_emb=COHORT, top_n=5)
    with pytest.raises(ValueError, match="test_idx: index out of range"):
        normalise_scores("znorm", ENROL, TEST, EI, TI + 1, cohort_emb=COHORT)
    with pytest.raises(ValueError, match="enrol_idx has 5 trials but test_idx has 4"):
        normalise_scores("znorm", ENROL, TEST, EI, TI[:4], cohort_emb=COHORT)
    with pytest.raises(ValueError, match="dimension"):
        normalise_scores("znorm", ENROL, TEST, EI, TI, cohort_emb=np.ones((4, 3)))
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        normalise_scores("none", ENROL, np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), EI, TI)
    with pytest.raises(ValueError, match="zero spread"):
        normalise_scores("znorm", ENROL, TEST, EI, TI, cohort_emb=np.array([[1.0, 0.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="scores: shape"):
        normalise_scores("znorm", ENROL, TEST, EI, TI, cohort_emb=COHORT, scores=np.zeros(3))
