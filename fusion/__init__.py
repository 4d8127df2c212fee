"""SASV back-ends, chosen by name: score-level (numpy, fit/score) and embedding-level (torch modules).

See docs/backends.md for each back-end's inputs, options and paper; fusion/base.py for the two interfaces.
"""
from __future__ import annotations

from typing import Any, Mapping

from common.dispatch import build, lookup
from common.errors import InputError
from fusion.base import TRIAL_KEYS, EmbeddingBackend, ScoreBackend
from fusion.baseline1_v2 import Baseline1V2
from fusion.baseline2 import Baseline2
from fusion.joint_oc import JointOC
from fusion.llr_linear import LLRLinear
from fusion.llr_nonlinear import LLRNonlinear
from fusion.lr_fusion import LRFusion
from fusion.product_rule import ProductRule
from fusion.score_sum import ScoreSum
from fusion.single import ASVOnly, CMOnly

# The registry: a new back-end is its own file and one line here; what kind it is (`score_level`) and whether its
# output is a calibrated LLR (`outputs_llr`) are attributes of its class, read through `backend_class`.
BACKENDS: dict[str, type[ScoreBackend] | type[EmbeddingBackend]] = {
    "asv_only": ASVOnly,
    "cm_only": CMOnly,
    "score_sum": ScoreSum,
    "baseline1_v2": Baseline1V2,
    "product_rule": ProductRule,
    "lr_fusion": LRFusion,
    "llr_linear": LLRLinear,
    "llr_nonlinear": LLRNonlinear,
    "baseline2": Baseline2,
    "joint_oc": JointOC,
}

__all__ = ["BACKENDS", "TRIAL_KEYS", "ScoreBackend", "EmbeddingBackend", "backend_class",
           "backend_names", "build_backend", "score_backend_from_state"]


def build_backend(name: str, **kwargs: Any) -> ScoreBackend | EmbeddingBackend:
    """A back-end by name with its options; unknown names and options raise a one-line InputError (a ValueError)."""
    return build(BACKENDS, name, kwargs, "fusion back-end")


def backend_class(name: str) -> type[ScoreBackend] | type[EmbeddingBackend]:
    """The class registered as `name`, for what it says about every back-end of its kind without building one:
    `score_level` (fitted on sub-scores, or trained on embeddings) and `outputs_llr` (a calibrated LLR, whose results
    add the actual a-DCF at the Bayes threshold). An unknown name raises a one-line InputError listing the valid
    ones."""
    return lookup(BACKENDS, name, "fusion back-end")


def backend_names(score_level: bool) -> list[str]:
    """The registered back-ends of one kind, in registry order: for messages that list them, and fuse.py's rules."""
    return [name for name, cls in BACKENDS.items() if cls.score_level == score_level]


def score_backend_from_state(state: Mapping[str, Any]) -> ScoreBackend:
    """Rebuilds a fitted score-level back-end from its `state_dict()` (as read back from JSON or npz)."""
    name = str(state.get("backend", ""))
    if name not in BACKENDS or not BACKENDS[name].score_level:
        valid = sorted(backend_names(score_level=True))
        raise InputError(f"state: 'backend' is {name or 'missing'!r}; valid score-level back-ends: {valid}")
    return BACKENDS[name].from_state(state)
