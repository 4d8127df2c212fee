"""task cm, mode evaluate: a trained or published countermeasure scored on a corpus without training, through the
stage code (same scores as save_cm_score.py), cached, and refused in one line when it cannot run."""
from __future__ import annotations

import json

import numpy as np
import pytest

import main as main_py
import save_cm_score
from common.cli import run_main
from data.score_files import read_cm_scores
from tests.pipeline_fixtures import (
    CM_MODEL,
    CROP,
    assert_one_line_error,
    call,
    frontends,
    staged,
    tiny_corpus,
    tiny_databases,
)

__all__ = ["frontends", "staged", "tiny_corpus", "tiny_databases"]   # fixtures used by name


def _args(corpus, frontends, out, *extra):
    return ["--config", "configs/quickstart_cm.conf", f"database={corpus.la}", f"output_dir={out}", "mode=evaluate",
            "eval_splits=[eval]", f"cm.checkpoint={frontends.cm}", "cm.arch=AASIST-L", f"cm.model={CM_MODEL}",
            "cm.crop.policy=first", f"cm.crop.samples={CROP}", f"data.train_samples={CROP}", "train.progress=false",
            *extra]


def test_evaluate_mode_scores_as_the_cm_stage_and_caches(staged, tiny_corpus, frontends, tmp_path, capsys):
    out = tmp_path / "eval"
    rc, err = call(lambda a: run_main(main_py.main, a), _args(tiny_corpus, frontends, out), capsys)
    assert rc == 0, err
    mine, stage = (read_cm_scores(p) for p in (out / "scores" / "cm_eval.txt", staged.out / "scores" / "cm_eval.txt"))
    assert mine.utt == stage.utt and mine.key == stage.key
    np.testing.assert_allclose(mine.score, stage.score, rtol=0, atol=1e-5)
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"eval_cm_eer", "eval_cm_eer_per_attack", "provenance"}
    assert results["provenance"]["database"]["format"] == "asvspoof2019_la"
    assert not (out / "cm_model.pt").exists() and not (out / "last.pt").exists()     # nothing trained

    rc, err = call(lambda a: run_main(main_py.main, a), _args(tiny_corpus, frontends, out), capsys)
    assert rc == 0 and "is up to date, skipped" in err, err


def test_evaluate_mode_refuses_what_it_cannot_run(tiny_corpus, frontends, tmp_path, capsys):
    rc, err = call(lambda a: run_main(main_py.main, a),
                   _args(tiny_corpus, frontends, tmp_path / "a", "cm.checkpoint=null"), capsys)
    assert rc == 2
    assert_one_line_error(err, "mode evaluate", "set cm.checkpoint")
    rc, err = call(lambda a: run_main(main_py.main, a),
                   _args(tiny_corpus, frontends, tmp_path / "b", "eval_splits=[progress]"), capsys)
    assert rc == 2
    assert_one_line_error(err, "eval_splits", "'progress' is not a split of ASVspoof 2019 LA")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("layout", ["asvspoof2021_la", "asvspoof2021_df", "in_the_wild"])
def test_evaluate_mode_and_cm_stage_on_the_cm_only_sets(layout, tiny_databases, tiny_corpus, frontends, tmp_path,
                                                        capsys):
    """The evaluation sets researchers report on: main.py's evaluate mode and save_cm_score.py give the same scores,
    every key utterance scored once, and the Track 1 metrics per condition of the set."""
    from data.databases import open_database
    db, out = open_database(tiny_databases[layout]), tmp_path / "eval"
    rc, err = call(lambda a: run_main(main_py.main, a),
                   _args(tiny_corpus, frontends, out, f"database={db.root}", f"data.format={layout}"), capsys)
    assert rc == 0, err
    mine = read_cm_scores(out / "scores" / "cm_eval.txt")
    assert sorted(mine.utt) == sorted(e.utt for e in db.cm_entries("eval"))
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["database"]["format"] == layout
    assert 0 <= results["eval_cm_min_dcf"] <= 1

    stage = tmp_path / "stage"
    rc, err = call(lambda a: run_main(save_cm_score.main, a),
                   ["--config", "configs/quickstart.conf", f"database={db.root}", f"data.format={layout}",
                    f"output_dir={stage}", "splits=[eval]", f"cm.checkpoint={frontends.cm}", "cm.arch=AASIST-L",
                    f"cm.model={CM_MODEL}", "cm.crop.policy=first", f"cm.crop.samples={CROP}"], capsys)
    assert rc == 0, err
    theirs = read_cm_scores(stage / "scores" / "cm_eval.txt")
    assert theirs.utt == mine.utt
    np.testing.assert_allclose(theirs.score, mine.score, rtol=0, atol=1e-5)
