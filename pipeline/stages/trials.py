"""SASV trials over cached embeddings: which can be scored, their ASV scores, their score-file rows."""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from asv.score_norm import normalise_scores, speaker_mean_cohort
from common.config import ConfigError
from common.errors import InputError
from data.asvspoof import SASVTrial
from data.embeddings import EmbeddingTable
from data.score_files import SASVScores, write_asvspoof5_sasv
from pipeline.stages.experiment import database, experiment
from pipeline.stages.outputs import asv_embeddings_spec, current_output, table_of

log = logging.getLogger(__name__)


def scorable_trials(cfg: Mapping, split: str, *tables: EmbeddingTable) -> list[SASVTrial]:
    """The split's trials whose test utterance has an entry in every table. Only skip_bad_audio leaves
    entries out; anything else missing is an error rather than a silently shorter trial list."""
    db = database(cfg)
    trials = db.sasv_trials(split)
    kept, missing = [], []
    for t in trials:
        (kept if all(t.utt in table for table in tables) else missing).append(t)
    if missing:
        if not cfg["skip_bad_audio"]:
            raise InputError(f"{split}: {len(missing)} trial(s) have no cached embedding of their test utterance "
                             f"(e.g. {missing[0].utt}); rerun the stages with this config")
        if not kept:
            raise InputError(f"{db.sasv_trials_path(split)}: none of its {len(trials)} trials can be scored: the "
                             f"test audio of every one was unreadable and skipped (skip_bad_audio)")
        log.info(f"{split}: {len(missing)} trials skipped (test audio was unreadable and skip_bad_audio is on)")
    return kept


def asv_trial_scores(cfg: Mapping, split: str, trials: Sequence[SASVTrial], models: EmbeddingTable,
                     tests: EmbeddingTable) -> np.ndarray:
    """Cosine scores of each trial (speaker model vs test embedding), normalised as `score_norm` says."""
    models.require([t.speaker for t in trials], f"the {split} SASV trials (speaker models)")
    tests.require([t.utt for t in trials], f"the {split} SASV trials (test utterances)")
    enrol_idx = np.array([models.index[t.speaker] for t in trials])
    test_idx = np.array([tests.index[t.utt] for t in trials])
    method = cfg["score_norm"]["method"]
    cohort = _cohort(cfg) if method != "none" else None
    return normalise_scores(method, models.embeddings, tests.embeddings, enrol_idx, test_idx,
                            cohort_emb=cohort, top_n=cfg["score_norm"]["top_n"])


def _cohort(cfg: Mapping) -> np.ndarray:
    """Score-normalisation cohort: mean ASV embedding of each training speaker's bona fide utterances, from
    train embeddings made by the configured front-end."""
    if "train" not in cfg["splits"]:
        raise ConfigError("score_norm needs the train ASV embeddings (the cohort); include 'train' in 'splits'")
    db = database(cfg)
    spec = asv_embeddings_spec(cfg, "train", db)
    table = table_of(current_output(spec, cfg), spec.path)
    bona = [e for e in db.cm_entries("train") if e.is_bonafide and e.utt in table]
    _, cohort = speaker_mean_cohort(np.stack([table[e.utt] for e in bona]), [e.speaker for e in bona])
    return cohort


def sasv_rows(trials: Sequence[SASVTrial], scores: np.ndarray, cfg: Mapping | None = None,
              split: str | None = None) -> SASVScores:
    """Score-file rows of SASV trials with one score each; with `cfg` and `split`, also the codec condition and
    quality of each test utterance from the split's CM protocol (the ASVspoof 5 package key files carry them)."""
    codec = codec_q = None
    if cfg is not None:
        entries = {e.utt: e for e in database(cfg).cm_entries(split)}
        codec = [entries[t.utt].codec if t.utt in entries else "-" for t in trials]
        codec_q = [entries[t.utt].codec_q if t.utt in entries else "-" for t in trials]
    return SASVScores([t.speaker for t in trials], [t.utt for t in trials], [t.attack for t in trials],
                      [t.key for t in trials], scores, codec, codec_q)


def write_package_sasv(cfg: Mapping, split: str, kind: str, trials: Sequence[SASVTrial],
                       columns: Mapping[str, np.ndarray]) -> None:
    """The ASVspoof 5 evaluation package's Track 2 score file of these trials ({'sasv' | 'asv' | 'cm': scores}, `-`
    in the other columns) and its key file, under scores/asvspoof5/ (pipeline.stages.experiment.Experiment)."""
    exp = experiment(cfg)
    rows = {name: sasv_rows(trials, scores, cfg, split) for name, scores in columns.items()}
    write_asvspoof5_sasv(exp.package_scores(kind, split), exp.package_keys(kind, split), rows)
