"""Enrolment averaging (pipeline/stages/enrolment.py): a mode added to ENROL_MEANS alone is a config value that the
ASV stage scores with, and a mode's version is part of the speaker models' identity, so that changing how a mode
averages recomputes the cached speaker models instead of reusing them."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from common.config import ConfigError, load_config
from common.io import load_arrays
from data.embeddings import EmbeddingTable
from data.score_files import read_sasv_scores
from pipeline.stages.enrolment import ENROL_MEANS, EnrolMean, enrolment_identity, mean_embedding, speaker_models
from tests.pipeline_fixtures import tiny_corpus, tiny_experiment, write_config

__all__ = ["tiny_corpus"]   # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_thread")


def _max(e: np.ndarray) -> np.ndarray:
    """A mode for the test: the element-wise maximum (the tiny corpus enrols 2 utterances a speaker, whose median
    would be their mean)."""
    return e.max(axis=0)


def _sasv_config(tmp_path, corpus, *overrides: str) -> dict:
    """The tiny experiment (seeded random front-ends) on the dev split alone: what speaker models need."""
    from pipeline.recipes import sasv_task
    config = tmp_path / "sasv.conf"
    if not config.exists():
        exp = tiny_experiment(tmp_path, corpus)
        exp["cfg"].update(det=False, splits=["dev"])
        write_config(config, exp["cfg"])
    return load_config(config, list(overrides), sasv_task.SCHEMA)


def _models(cfg: dict) -> tuple[EmbeddingTable, dict]:
    """The cached dev speaker models and the record, stored in the cache, of what made them."""
    from pipeline.stages.outputs import speaker_models_spec, table_of
    path = speaker_models_spec(cfg, "dev").path
    arrays = load_arrays(path)
    return table_of(arrays, path), json.loads(str(arrays["made_by"]))


def test_the_two_modes_average_as_documented():
    e = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    assert mean_embedding(e, "raw").tolist() == [1.5, 3.0]
    assert mean_embedding(e, "unit") == pytest.approx([0.3, 0.9])           # (0.6, 0.8) and (0, 1) averaged
    assert mean_embedding(e, "raw").dtype == np.float32
    with pytest.raises(ValueError, match=r"^unknown enrolment averaging \(asv\.enrol_mean\) 'mean' "
                                         r"\(valid: raw, unit\)$"):
        speaker_models({"A": ["a"]}, {"a": e[0]}, "mean")


def test_identity_keeps_what_was_recorded_before_modes_had_versions(monkeypatch):
    """raw at version 1 adds nothing (caches made before the key existed stay current), unit adds its name only
    (caches made before versions existed stay current); a version other than 1 is recorded; concat averages
    nothing."""
    assert enrolment_identity({"enrol_mean": "raw"}, "lists") == {}
    assert enrolment_identity({"enrol_mean": "unit"}, "lists") == {"enrol_mean": "unit"}
    assert enrolment_identity({"enrol_mean": "unit"}, "concat") == {}
    monkeypatch.setitem(ENROL_MEANS, "raw", EnrolMean(ENROL_MEANS["raw"].average, version=2))
    assert enrolment_identity({"enrol_mean": "raw"}, "lists") == {"enrol_mean_version": 2}
    assert enrolment_identity({"enrol_mean": "raw"}, "concat") == {}
    with pytest.raises(ConfigError, match=r"^'asv\.enrol_mean' must be one of raw, unit, got 'median'$"):
        enrolment_identity({"enrol_mean": "median"}, "lists")


def test_a_mode_added_to_the_table_is_configured_and_scored_with(tiny_corpus, tmp_path, monkeypatch):
    """One entry in ENROL_MEANS is all a new mode takes: the config accepts it, the ASV stage makes speaker models
    with it and scores the trials against them, and its name is in their identity."""
    from pipeline.stages.asv import asv_stage
    from pipeline.stages.experiment import database, experiment

    with pytest.raises(ConfigError, match=r"'asv\.enrol_mean' must be one of raw, unit, got 'max'"):
        _sasv_config(tmp_path, tiny_corpus, "asv.enrol_mean=max")
    monkeypatch.setitem(ENROL_MEANS, "max", EnrolMean(_max))
    cfg = _sasv_config(tmp_path, tiny_corpus, "asv.enrol_mean=max")
    asv_stage(cfg)

    db, exp = database(cfg), experiment(cfg)
    table = EmbeddingTable.load(exp.asv_embeddings("dev"))
    models, made_by = _models(cfg)
    assert made_by["enrol_mean"] == "max" and "enrol_mean_version" not in made_by
    enrolled = db.enrolment("dev")
    assert sorted(models.ids) == sorted(enrolled)
    for speaker, utts in enrolled.items():
        expected = np.stack([table[u] for u in utts]).max(axis=0)
        np.testing.assert_array_equal(models[speaker], expected)
        assert not np.allclose(models[speaker], np.mean([table[u] for u in utts], axis=0))   # not the raw mean
    scores = read_sasv_scores(exp.scores("asv", "dev"))
    assert len(scores.score) == len(db.sasv_trials("dev"))
    for speaker, utt, score in zip(scores.spk, scores.utt, scores.score, strict=True):
        m, t = models[speaker], table[utt]
        assert score == pytest.approx(float(m @ t / np.linalg.norm(m) / np.linalg.norm(t)), abs=1e-5)
    # verify.py averages an enrolment set through the same table
    utts = enrolled[models.ids[0]]
    np.testing.assert_array_equal(mean_embedding([table[u] for u in utts], "max"), models[models.ids[0]])


def test_a_new_version_of_a_mode_recomputes_the_cached_speaker_models(tiny_corpus, tmp_path, monkeypatch, caplog):
    """Speaker models cached by one version of a mode are reused while the version stays, even when the averaging
    changed (nothing else can tell), and recomputed, saying why, once the version is raised; the per-utterance
    embeddings they are made from are reused throughout."""
    from pipeline.stages.asv import asv_stage
    from pipeline.stages.experiment import experiment
    from pipeline.stages.outputs import speaker_models_spec

    cfg = _sasv_config(tmp_path, tiny_corpus)            # raw, version 1
    asv_stage(cfg)
    before, made_by = _models(cfg)
    assert "enrol_mean" not in made_by and "enrol_mean_version" not in made_by
    path, embeddings = speaker_models_spec(cfg, "dev").path, experiment(cfg).asv_embeddings("dev")

    def doubled(e: np.ndarray) -> np.ndarray:
        return 2 * e.mean(axis=0)

    monkeypatch.setitem(ENROL_MEANS, "raw", EnrolMean(doubled, version=1))
    caplog.set_level(logging.INFO)
    asv_stage(cfg)
    assert f"asv dev speaker models: {path} is up to date, skipped" in caplog.text
    np.testing.assert_array_equal(_models(cfg)[0].embeddings, before.embeddings)

    monkeypatch.setitem(ENROL_MEANS, "raw", EnrolMean(doubled, version=2))
    caplog.clear()
    asv_stage(cfg)
    assert f"asv dev: {embeddings} is up to date, skipped" in caplog.text
    assert (f"asv dev speaker models: recomputing {path}: made by something else: enrol_mean_version changed"
            in caplog.text)
    after, made_by = _models(cfg)
    assert made_by["enrol_mean_version"] == 2 and after.ids == before.ids
    np.testing.assert_allclose(after.embeddings, 2 * before.embeddings, rtol=1e-6)
    assert enrolment_identity(cfg["asv"], "lists") == {"enrol_mean_version": 2}
