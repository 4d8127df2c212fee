"""The two small interfaces every SASV back-end implements, and the input checks they share.

Score-level back-ends (numpy) fuse per-trial sub-system scores: the ASV score (cosine similarity of
enrolment and test embeddings) and the CM score (bona fide logit, `logits[:, 1]` of the CM model).
Embedding-level back-ends (torch) map (enrolment ASV, test ASV, test CM) embeddings to one SASV score and
can be trained on cached embeddings or end to end with the front-ends (they never detach their inputs).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from common.dispatch import accepted_kwargs
from common.errors import InputError

TRIAL_KEYS = ("target", "nontarget", "spoof")


class ScoreBackend:
    """Score-level SASV back-end: `fit` on labelled development trials, then `score` new trials.

    Subclasses set `name` and `state_fields` and implement `fit` and `score`; `state_dict` and `from_state`
    are shared. The state holds only str / float / bool values, so it can be written as JSON or npz and read
    back without pickling. Higher output = more likely a bona fide target trial.
    """

    name: ClassVar[str] = ""
    # What kind of back-end this is, read from the class wherever the pipeline must know (fusion.backend_class):
    # score-level back-ends are fitted on sub-scores (or loaded from their saved state), never trained.
    score_level: ClassVar[bool] = True
    # The saved attributes and their types: the constructor's options (by name), then what `fit` estimates.
    state_fields: ClassVar[Mapping[str, type]] = {}
    # True where the output is meant as a calibrated log-likelihood ratio (target vs the negatives), so that a
    # deployed decision thresholds it at the Bayes threshold of a cost model (metrics.dcf.a_dcf_bayes_threshold)
    # and reports the actual a-DCF there beside the minimum (metrics.report.evaluate_trials(llr=True)).
    outputs_llr: ClassVar[bool] = False

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "ScoreBackend":
        """Estimates the back-end's parameters from trials with keys 'target' | 'nontarget' | 'spoof'; returns self."""
        raise NotImplementedError

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        """SASV scores (N,) float64 for N trials given their ASV and CM scores (each (N,))."""
        raise NotImplementedError

    def needs_classes(self) -> tuple[str, ...]:
        """The trial classes `fit` needs in its fit set, as configured ('target', 'nontarget', 'spoof'; 'a|b': one of
        them), so that a fit set without one is refused in one line naming the split and the class
        (pipeline.stages.backend.ready_backend, for every entry point) rather than failing inside the fit. Default:
        none (nothing estimated from the classes)."""
        return ()

    def state_dict(self) -> dict[str, Any]:
        """Options and fitted parameters as plain values; includes 'backend': the dispatch name."""
        return {"backend": self.name, **{k: getattr(self, k) for k in self.state_fields}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ScoreBackend":
        """Rebuilds a back-end from `state_dict()` output (also accepts 0-d arrays, as np.load returns): the
        fields that are constructor options construct it (and are checked again), the rest are set after."""
        values = read_state(state, cls.name, cls.state_fields)
        backend = cls(**{k: values.pop(k) for k in accepted_kwargs(cls) if k in values})
        for key, value in values.items():
            setattr(backend, key, value)
        return backend


class EmbeddingBackend(nn.Module):
    """Embedding-level SASV back-end (a torch module).

    forward(enr (B, asv_dim), tst (B, asv_dim), cm (B, cm_dim)) -> (scores (B,), aux: dict of tensors)
    loss(output, labels) -> scalar tensor, where `output` is what forward returned and labels (B,) int64
    are 1 for a bona fide target trial and 0 for a non-target or a spoof (binary SASV labels).
    """

    # Trained on embeddings (main.py task sasv) and loaded from a checkpoint, never fitted on sub-scores.
    score_level: ClassVar[bool] = False
    # As ScoreBackend.outputs_llr: True for a back-end whose output is meant as a calibrated LLR (none yet: the
    # embedding back-ends output a bona fide target score or probability).
    outputs_llr: ClassVar[bool] = False
    asv_dim: int
    cm_dim: int

    def loss(self, output: tuple[torch.Tensor, dict[str, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_inputs(self, enr: torch.Tensor, tst: torch.Tensor, cm: torch.Tensor) -> None:
        """Raises ValueError naming the input whose shape does not match the configured dims."""
        for what, x, dim in (("enrolment ASV embedding", enr, self.asv_dim),
                             ("test ASV embedding", tst, self.asv_dim),
                             ("test CM embedding", cm, self.cm_dim)):
            if x.dim() != 2 or x.shape[1] != dim:
                raise ValueError(f"{type(self).__name__}: {what} must be (B, {dim}), got {tuple(x.shape)}")
        if not enr.shape[0] == tst.shape[0] == cm.shape[0]:
            raise ValueError(f"{type(self).__name__}: batch sizes differ: enrolment {enr.shape[0]}, "
                             f"test {tst.shape[0]}, CM {cm.shape[0]}")


def check_binary_labels(labels: torch.Tensor, batch: int, who: str) -> torch.Tensor:
    """Binary SASV labels (B,) with values in {0, 1}, as int64 on the labels' device."""
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"{who}: labels must be ({batch},), got {tuple(labels.shape)}")
    labels = labels.long()
    if bool(((labels != 0) & (labels != 1)).any()):
        bad = sorted(set(labels.unique().tolist()) - {0, 1})
        raise ValueError(f"{who}: labels must be 1 (target) or 0 (non-target/spoof), got values {bad}; "
                         "map a 4-class sampler's labels to binary first")
    return labels


def check_scores(asv: Any, cm: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    """Both sub-scores as finite float64 1-D arrays of one length."""
    out = []
    for what, x in (("ASV scores", asv), ("CM scores", cm)):
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"{who}: {what} must be 1-D, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{who}: {what} contain {int(np.sum(~np.isfinite(a)))} non-finite values (nan/inf)")
        out.append(a)
    if len(out[0]) != len(out[1]):
        raise ValueError(f"{who}: {len(out[0])} ASV scores but {len(out[1])} CM scores")
    return out[0], out[1]


def check_keys(keys: Sequence[str], n: int, who: str) -> np.ndarray:
    """Trial keys as a str array of length n, each one of TRIAL_KEYS."""
    k = np.asarray(keys).astype(str)
    if k.shape != (n,):
        raise ValueError(f"{who}: expected {n} trial keys, got shape {k.shape}")
    bad = sorted(set(k.tolist()) - set(TRIAL_KEYS))
    if bad:
        raise ValueError(f"{who}: unknown trial keys {bad[:5]}; expected {list(TRIAL_KEYS)}")
    return k


def require_keys(keys: np.ndarray, needed: Sequence[str], who: str, what: str) -> None:
    """One line naming the rule and the first class in `needed` that the fit set lacks, e.g.
    `llr_linear: the fit set has no spoof trials; the class-conditional Gaussian LLR step needs target, nontarget
    and spoof trials`."""
    present = set(np.asarray(keys).astype(str).tolist())
    for key in needed:
        if key not in present:
            raise InputError(f"{who}: the fit set has no {key} trials; {what} needs {', '.join(needed[:-1])}"
                             f"{' and ' if len(needed) > 1 else ''}{needed[-1]} trials")


def read_state(state: Mapping[str, Any], name: str, fields: Mapping[str, type]) -> dict[str, Any]:
    """Checks a saved state belongs to back-end `name` and has exactly `fields`; converts each to its type."""
    got = dict(state)
    backend = str(np.asarray(got.pop("backend", "")))
    if backend != name:
        raise InputError(f"state: back-end is {backend or 'missing'!r}, expected {name!r}")
    missing = sorted(set(fields) - set(got))
    unknown = sorted(set(got) - set(fields))
    if missing or unknown:
        raise InputError(f"state of {name!r}: missing keys {missing}, unknown keys {unknown}")
    out = {}
    for key, typ in fields.items():
        value = np.asarray(got[key])
        if value.ndim != 0:
            raise InputError(f"state of {name!r}: key {key!r} must be a scalar, got shape {value.shape}")
        out[key] = typ(value.item()) if typ is not str else str(value)
    return out
