"""SASV 2022 Baseline1-v2: Baseline1's score sum with a softmax applied to the CM output first.

The SASV 2022 challenge results page lists "Baseline1-v2: Baseline1 with additional softmax applied to the CM
output" at 1.71 % eval SASV-EER, against 19.31 % for Baseline1, the raw sum of the ECAPA-TDNN cosine and the
AASIST bona fide logit (Jung et al., "SASV 2022: The first spoofing-aware speaker verification challenge",
Interspeech 2022). The softmax bounds the CM term to (0, 1), the cosine's own range, so the logit's tens of units
no longer drown the ASV score.

What the softmax is of: AASIST has two logits (spoof, bona fide); the softmax's bona fide probability is
exp(l_bona) / (exp(l_spoof) + exp(l_bona)) = sigmoid(l_bona - l_spoof). sasv-challenge/SASVC2022_Baseline holds
no Baseline1 code (only Baseline2, whose systems/baseline2.py takes `torch.softmax(pred, dim=-1)[:, 1]` of its
two logits, the same operation). This toolkit's CM score is one number per utterance, the bona fide logit
l_bona = logits[:, 1] (pipeline/stages/frontends.py; CMs trained with OC-softmax are refused by the SASV stages),
and a score file holds one number too, so the rule takes the sigmoid of the CM score it is given:
* a CM score that is the bona fide log-odds l_bona - l_spoof (a 2-logit CM's score file written that way, or any
  single-logit / LLR-like CM score) gives exactly the published Baseline1-v2;
* the toolkit's own CM score, l_bona alone, gives sigmoid(l_bona): the same bounded squashing, not the same number
  (l_spoof is not kept), so compare its rows with the published 1.71 % as a re-implementation, not a copy.
  ablate.py rebuilds l_bona - l_spoof from the cached CM embeddings: a system with `cm_score: log_odds` and this
  back-end is the published rule (so is `score_sum` with `cm_score: posterior`, the same numbers).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fusion.base import ScoreBackend, check_keys, check_scores
from fusion.calibration import log_sigmoid


class Baseline1V2(ScoreBackend):
    """score = asv + sigmoid(cm). Nothing to fit (fit only checks its inputs); not an LLR."""

    name = "baseline1_v2"
    state_fields = {}

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "Baseline1V2":
        asv, cm = check_scores(asv, cm, self.name)
        check_keys(keys, len(asv), self.name)
        return self

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        asv, cm = check_scores(asv, cm, self.name)
        return asv + np.exp(log_sigmoid(cm))
