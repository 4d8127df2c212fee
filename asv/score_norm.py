"""Cohort score normalisation for cosine ASV scores: Z-norm, T-norm, S-norm and adaptive S-norm.

Why: raw cosine scores drift with each enrolment model and each test utterance; normalising a trial score by
the statistics of the same model/utterance against a cohort of impostors (training speakers) aligns the
non-target score distributions, which lowers the EER and, above all, makes one threshold fit all speakers.

Definitions (s = cosine(enrol, test); mu/sd are the mean and population std, ddof=0, of cosine scores
against the cohort):
  Z-norm  (s - mu_e) / sd_e                  enrolment-side statistics
  T-norm  (s - mu_t) / sd_t                  test-side statistics
  S-norm  ((s - mu_e)/sd_e + (s - mu_t)/sd_t) / 2
  AS-norm S-norm where each side's statistics use only its `top_n` highest cohort scores (Matejka et al. 2017;
          Cumani et al. 2011), so the cohort adapts to the speakers closest to each side.
Pure numpy and vectorised: side statistics are computed once per enrolment model and per test utterance,
then gathered per trial. Memory: the embeddings stay as given (float32 from the caches); rows are made float64 and
unit length a chunk at a time, so a call holds (rows x D) float64 only for a chunk, never for the whole table (a
whole-table copy was 1 GB for ASVspoof 5 eval's 680k test utterances at D = 192, and normalising took two).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError

METHODS = ("none", "znorm", "tnorm", "snorm", "asnorm")
MIN_TOP_N = 2    # asnorm's top_n: the standard deviation of fewer cohort scores is 0
_CHUNK = 8192  # rows scored against the cohort at a time (bounds memory for ~100k test utterances)


def l2_normalise(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Rows scaled to unit length; an all-zero or non-finite row is an error naming the matrix and row."""
    return _Unit(x, name).rows(np.arange(len(x)))


class _Unit:
    """A matrix's rows as float64 unit vectors, made on demand: the norms (checked) are computed once, a chunk at
    a time; `rows` gives exactly what `x.astype(float64) / norms` would hold at those rows."""

    def __init__(self, x: np.ndarray, name: str):
        self.x, self.name = np.asarray(x), name
        if self.x.ndim != 2:
            raise InputError(f"{name}: expected a 2-D (N, D) matrix, got shape {self.x.shape}")
        self.norms = np.empty(len(self.x))
        for start in range(0, len(self.x), _CHUNK):
            block = self.x[start:start + _CHUNK].astype(np.float64)
            if not np.isfinite(block).all():
                raise InputError(f"{name}: contains NaN or infinite values")
            self.norms[start:start + _CHUNK] = np.linalg.norm(block, axis=1)
        if (self.norms == 0).any():
            raise InputError(f"{name}: row {int(np.argmin(self.norms))} is all zeros and has no direction")

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    def rows(self, idx: np.ndarray) -> np.ndarray:
        return self.x[idx].astype(np.float64) / self.norms[idx, None]


def speaker_mean_cohort(embeddings: np.ndarray, speakers: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """A cohort of per-speaker mean embeddings (of L2-normalised rows): returns (speaker ids, (S, D) matrix)."""
    emb = l2_normalise(embeddings, "cohort embeddings")
    speakers = np.asarray(list(speakers))
    if len(speakers) != len(emb):
        raise InputError(f"cohort: {len(speakers)} speaker labels for {len(emb)} embeddings")
    names, inverse = np.unique(speakers, return_inverse=True)
    sums = np.zeros((len(names), emb.shape[1]))
    np.add.at(sums, inverse, emb)
    return names.tolist(), sums / np.bincount(inverse)[:, None]


def cohort_statistics(emb: np.ndarray | _Unit, cohort: np.ndarray, top_n: int | None = None,
                      used: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof=0) of each row's cosine scores against the cohort (of the rows `used`, default all),
    over all of the cohort or its `top_n` highest scores. Both inputs must already be L2-normalised (or `emb` a
    `_Unit`, normalised a chunk at a time)."""
    used = np.arange(len(emb.x if isinstance(emb, _Unit) else emb)) if used is None else used
    n = len(used)
    mean, std = np.empty(n), np.empty(n)
    for start in range(0, n, _CHUNK):
        rows = used[start:start + _CHUNK]
        s = (emb.rows(rows) if isinstance(emb, _Unit) else emb[rows]) @ cohort.T
        if top_n is not None and top_n < s.shape[1]:
            s = np.partition(s, s.shape[1] - top_n, axis=1)[:, -top_n:]
        mean[start:start + _CHUNK] = s.mean(axis=1)
        std[start:start + _CHUNK] = s.std(axis=1)
    return mean, std


def normalise_scores(method: str, enrol_emb: np.ndarray, test_emb: np.ndarray, enrol_idx: Sequence[int],
                     test_idx: Sequence[int], cohort_emb: np.ndarray | None = None, scores: np.ndarray | None = None,
                     top_n: int = 100) -> np.ndarray:
    """Normalised scores for trials (enrol_emb[enrol_idx[k]], test_emb[test_idx[k]]).

    method: 'none' | 'znorm' | 'tnorm' | 'snorm' | 'asnorm'. `scores` are the raw trial scores; when None they
    are the cosine similarities of the pairs. `cohort_emb` (C, D), e.g. per-speaker mean embeddings of
    training speakers (`speaker_mean_cohort`), is needed by every method but 'none'. `top_n` is for 'asnorm'.
    """
    if method not in METHODS:
        raise InputError(f"unknown score normalisation {method!r}; choose from {list(METHODS)}")
    enrol = _Unit(enrol_emb, "enrolment embeddings")
    test = _Unit(test_emb, "test embeddings")
    if enrol.dim != test.dim:
        raise InputError(f"enrolment embeddings have dimension {enrol.dim}, test embeddings {test.dim}")
    ei = _indices(enrol_idx, len(enrol.x), "enrol_idx")
    ti = _indices(test_idx, len(test.x), "test_idx")
    if len(ei) != len(ti):
        raise InputError(f"enrol_idx has {len(ei)} trials but test_idx has {len(ti)}")
    if scores is None:   # row-wise dots in chunks: no (trials x D) float64 copies of both sides (0.3 GB at 102k x 192)
        raw = np.empty(len(ei))
        for start in range(0, len(ei), _CHUNK):
            rows = slice(start, start + _CHUNK)
            raw[rows] = np.einsum("ij,ij->i", enrol.rows(ei[rows]), test.rows(ti[rows]))
    else:
        raw = np.asarray(scores, dtype=np.float64)
        if raw.shape != ei.shape:
            raise InputError(f"scores: shape {raw.shape} does not match the {len(ei)} trials")
        if not np.isfinite(raw).all():
            raise InputError("scores: contains NaN or infinite values")
    if method == "none":
        return raw

    if cohort_emb is None:
        raise InputError(f"score normalisation {method!r} needs a cohort (cohort_emb)")
    cohort = l2_normalise(cohort_emb, "cohort embeddings")
    if cohort.shape[1] != enrol.dim:
        raise InputError(f"cohort embeddings have dimension {cohort.shape[1]}, enrolment embeddings {enrol.dim}")
    if len(cohort) < 2:
        raise InputError(f"cohort has {len(cohort)} embedding(s); score statistics need at least 2")
    n = None
    if method == "asnorm":
        if not isinstance(top_n, (int, np.integer)) or not MIN_TOP_N <= top_n <= len(cohort):
            raise InputError(f"top_n must be an integer in [{MIN_TOP_N}, cohort size {len(cohort)}], got {top_n!r}")
        n = int(top_n)

    out = np.zeros_like(raw)
    sides = {"znorm": ("enrol",), "tnorm": ("test",)}.get(method, ("enrol", "test"))
    for side in sides:
        emb, idx = (enrol, ei) if side == "enrol" else (test, ti)
        used = np.unique(idx)  # only the models / utterances that occur in trials
        mean, std = cohort_statistics(emb, cohort, n, used)
        if (std <= 1e-12).any():
            bad = int(used[np.argmax(std <= 1e-12)])
            raise InputError(f"{side} embedding {bad}: its cohort scores have zero spread; cannot normalise")
        pos = np.searchsorted(used, idx)
        out += (raw - mean[pos]) / std[pos]
    return out / len(sides)


def _indices(idx: Sequence[int], size: int, name: str) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"{name}: expected a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}")
    if len(idx) and (idx.min() < 0 or idx.max() >= size):
        raise InputError(f"{name}: index out of range [0, {size}) (min {idx.min()}, max {idx.max()})")
    return idx
