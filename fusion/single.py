"""Single-system baselines as back-ends, so that "ASV only" and "CM only" sit in the same tables as fusions.

SASV 2022 evaluation plan, Table 2: an ASV system alone (spoofs pass when they imitate the speaker) and a
CM alone (zero-effort impostors pass, since they are bona fide).
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from fusion.base import ScoreBackend, check_keys, check_scores


class _Single(ScoreBackend):
    use_asv: ClassVar[bool]

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "_Single":
        asv, cm = check_scores(asv, cm, self.name)
        check_keys(keys, len(asv), self.name)
        return self  # nothing to estimate

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        asv, cm = check_scores(asv, cm, self.name)
        return asv.copy() if self.use_asv else cm.copy()


class ASVOnly(_Single):
    """SASV score = ASV score."""
    name = "asv_only"
    use_asv = True


class CMOnly(_Single):
    """SASV score = CM score."""
    name = "cm_only"
    use_asv = False
