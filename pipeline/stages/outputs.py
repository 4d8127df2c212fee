"""What each cached stage output is made of: one definition for the stage that writes it and those that read it.

A cached `.npz` is reused only when everything that made it is unchanged (front-end, checkpoint content,
crop, the utterance list, each audio file's path and identity: size, modification and change time, inode;
and skipping; pipeline/stages/cache.py) and it reads back undamaged, else it is recomputed and the log says
why. Readers (`current_output`) refuse outputs that were not made by what the config now names, or are
damaged, in one line naming the file and the stage that makes it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from common.errors import InputError
from data.databases import Database
from data.embeddings import EmbeddingTable
from pipeline.stages.cache import Inputs, load_cache
from pipeline.stages.enrolment import enrolment_audio, enrolment_form, enrolment_identity
from pipeline.stages.experiment import database, experiment
from pipeline.stages.extract import Extracted
from pipeline.stages.frontends import frontend_identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheSpec:
    path: Path
    made_by: dict
    inputs: Inputs
    stage: str                     # the stage script that writes it


def asv_embeddings_spec(cfg: Mapping, split: str, db: Database | None = None) -> CacheSpec:
    db = db or database(cfg)
    return CacheSpec(experiment(cfg).asv_embeddings(split), frontend_identity(cfg["asv"], "asv"),
                     Inputs.of([(u, db.audio(split, u)) for u in db.utterances(split)]), "save_asv_embeddings.py")


def cm_embeddings_spec(cfg: Mapping, split: str, db: Database | None = None) -> CacheSpec:
    db = db or database(cfg)
    return CacheSpec(experiment(cfg).cm_embeddings(split), frontend_identity(cfg["cm"], "cm"),
                     Inputs.of([(e.utt, db.audio(split, e.utt)) for e in db.cm_entries(split)]), "save_cm_score.py")


def speaker_models_spec(cfg: Mapping, split: str, db: Database | None = None) -> CacheSpec:
    """Lists: the average of the listed utterances' embeddings by the mode asv.enrol_mean (its name and version,
    and the lists' content, are part of what made it: `enrolment_identity`); concat: one embedding of each
    speaker's enr_audio file."""
    db, mode = db or database(cfg), enrolment_form(cfg)
    made_by = {**frontend_identity(cfg["asv"], "asv"), "enrolment": mode, **enrolment_identity(cfg["asv"], mode)}
    if mode == "lists":
        made_by["lists_sha256"] = hashlib.sha256(json.dumps(db.enrolment(split), sort_keys=True).encode()).hexdigest()
    inputs = Inputs.of(enrolment_audio(db, split, mode))
    return CacheSpec(experiment(cfg).asv_models(split, mode), made_by, inputs, "save_asv_embeddings.py")


def current_output(spec: CacheSpec, cfg: Mapping, read_arrays: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a cached output for a stage that only reads it: one line when it is missing, damaged, or
    was made by something else than the config now names (another checkpoint, corpus, utterance list, audio...).
    `read_arrays=False` only checks (decodes no data arrays, but checks their CRCs)."""
    arrays, why = load_cache(spec.path, spec.made_by, spec.inputs, cfg["skip_bad_audio"], arrays=read_arrays)
    if arrays is None:
        what = f"{why}" if why else "missing"
        raise InputError(f"{spec.path}: {what}; run {spec.stage} with this config first (it recomputes it)")
    return arrays


def table_of(arrays: Mapping[str, np.ndarray], path: Path) -> EmbeddingTable:
    return EmbeddingTable(arrays["ids"].tolist(), arrays["embeddings"], str(path))


def cached_or_none(spec: CacheSpec, cfg: Mapping, force: bool, label: str) -> dict[str, np.ndarray] | None:
    """The cached arrays when current (said), else None after saying why they are recomputed. A config without
    `skip_bad_audio` (task cm) never skips."""
    if force:
        log.info(f"{label}: recomputing {spec.path} (--force)")
        return None
    arrays, why = load_cache(spec.path, spec.made_by, spec.inputs, bool(cfg.get("skip_bad_audio", False)))
    if arrays is not None:
        log.info(f"{label}: {spec.path} is up to date, skipped")
    elif why:
        log.info(f"{label}: recomputing {spec.path}: {why}")
    return arrays


def require_extracted(out: Extracted, spec: CacheSpec, label: str) -> None:
    """Stops with one line when skipping left nothing of a split (an empty table would fail later, obscurely)."""
    if not out.ids:
        raise InputError(f"{label}: none of the {len(spec.inputs.ids)} files could be read (first: {out.skipped[0]})")
