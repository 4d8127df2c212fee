"""How a speaker model is made from enrolment audio: the one home of the enrolment form (`enrolment`: lists |
concat), of the averaging of `lists` embeddings (`asv.enrol_mean`, a mode of ENROL_MEANS), of the speaker models
themselves (`speaker_models`), and of what they add to the identity of cached speaker models and of scores
(`enrolment_identity`).

Every part of the toolkit that makes speaker models (the ASV stage, task asv's dev scoring on ASVspoof, the joint
SASV run, task sasv_e2e's scorer, verify.py) passes the configured mode by name to `speaker_models` /
`mean_embedding`, so a mode averages the same way everywhere.

Adding a mode is one entry of ENROL_MEANS: the config key accepts it (its rule reads the table), every caller
averages with it, and its identity is recorded. Changing how a mode averages means raising its `version`: cached
speaker models and results that recorded another version are then recomputed or refused (docs/caches.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from common.config import Rule
from common.dispatch import lookup
from data.databases import Database
from data.embeddings import EmbeddingSource, as_table

# How a speaker model is made (the `enrolment` key): the mean of the embeddings of the utterances listed in the
# per-gender enrolment lists (SASV 2022 baseline), or one embedding of the speaker's concatenated enr_audio file
# (EURECOM joint-optimisation recipes).
ENROLMENT_FORMS = ("lists", "concat")
ENROLMENT = Rule("lists", choices=ENROLMENT_FORMS)


@dataclass(frozen=True)
class EnrolMean:
    """One way of averaging a speaker's (N, D) float32 enrolment embeddings into its (D,) model.

    `version` is part of the identity of what the mode makes: raise it whenever `average` changes its result, so
    that speaker models cached by the earlier code are recomputed rather than reused."""
    average: Callable[[np.ndarray], np.ndarray]
    version: int = 1


def _raw_mean(e: np.ndarray) -> np.ndarray:
    return e.mean(axis=0)


def _unit_mean(e: np.ndarray) -> np.ndarray:
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).mean(axis=0)


# `asv.enrol_mean`: how `lists` speaker models average their enrolment embeddings. `raw`: the embeddings as they are
# (SASV 2022 baseline); `unit`: each L2-normalised first (SASV2, WeSpeaker; task sasv_e2e's default). The
# concatenated enr_audio form (`enrolment: concat`) averages nothing, so the key does not apply to it.
ENROL_MEANS: dict[str, EnrolMean] = {
    "raw": EnrolMean(_raw_mean),
    "unit": EnrolMean(_unit_mean),
}
DEFAULT_ENROL_MEAN = "raw"     # recorded identities leave it out (they were written before the key existed)
# The key's rule takes its choices from the table itself (a live view), so a mode added there is a valid value.
ENROL_MEAN = Rule(DEFAULT_ENROL_MEAN, choices=ENROL_MEANS.keys())


def enrolment_form(cfg: Mapping) -> str:
    """The `enrolment` key, by its rule (a config built in code is refused as a loaded one would be)."""
    return ENROLMENT.check("enrolment", cfg["enrolment"])


def enrolment_audio(db: Database, split: str, form: str) -> list[tuple[str, Path]]:
    """(id, audio file) of what a split's speaker models are made from: each listed utterance once (lists: ids
    are utterances) or each speaker's concatenated file (concat: ids are speakers)."""
    if form == "lists":
        utts = dict.fromkeys(u for us in db.enrolment(split).values() for u in us)
        return [(u, db.audio(split, u)) for u in utts]
    return [(spk, db.enr_audio_file(split, stem)) for spk, stem in db.enrolment_concat(split).items()]


def enrol_mean(section: Mapping) -> str:
    """The averaging mode of an ASV section (`enrol_mean`), by its rule: one line naming the key for a value that is
    not a mode of ENROL_MEANS."""
    return ENROL_MEAN.check("asv.enrol_mean", section["enrol_mean"])


def _mode(mode: str) -> EnrolMean:
    return lookup(ENROL_MEANS, mode, "enrolment averaging (asv.enrol_mean)")


def mean_embedding(embeddings: Sequence[np.ndarray] | np.ndarray, mode: str) -> np.ndarray:
    """One speaker model: the float32 average of (N, D) enrolment embeddings by the mode `mode` of ENROL_MEANS."""
    e = np.asarray(embeddings, dtype=np.float32)
    return np.asarray(_mode(mode).average(e)).astype(np.float32)


def speaker_models(enrolment: Mapping[str, Sequence[str]], asv: EmbeddingSource, mode: str) -> dict[str, np.ndarray]:
    """Speaker -> the average (`mode`, as `mean_embedding`) of its enrolment ASV embeddings (the SASV 2022 baseline's
    speaker models with `raw`). A ValueError naming what is missing when an utterance has no embedding or a speaker
    no utterance (the stages turn it into one line)."""
    _mode(mode)                    # an unknown mode fails before any work
    table = as_table(asv)
    table.require([u for utts in enrolment.values() for u in utts], "the enrolment lists")
    models = {}
    for spk, utts in enrolment.items():
        if not utts:
            raise ValueError(f"speaker {spk} has no enrolment utterances")
        models[spk] = mean_embedding(np.stack([table[u] for u in utts]), mode)
    return models


def enrolment_identity(section: Mapping, form: str) -> dict:
    """What, beside the front-end and the enrolment form, makes speaker models (and the scores made with them) what
    they are: for `lists`, the averaging mode and its version. Each part is left out at the value it had before it
    was recorded (mode `raw`, version 1), so that identities written then (speaker-model caches, results.json)
    still hold; any other mode or version is recorded and compared. The per-utterance embeddings do not depend on
    it."""
    if form != "lists":
        return {}
    mode = enrol_mean(section)
    version = _mode(mode).version
    return {**({"enrol_mean": mode} if mode != DEFAULT_ENROL_MEAN else {}),
            **({"enrol_mean_version": version} if version != 1 else {})}
