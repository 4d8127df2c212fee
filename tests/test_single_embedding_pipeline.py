"""The single SASV embedding (task sasv_e2e) as the ASV front-end of the SASV pipeline: its exported
sasv_embedding.pt with `asv.enrol_mean: unit` and the asv_only back-end gives the sasv_e2e run's very scores, so
ablate.py and verify.py work on it unchanged; and the `asv.enrol_mean` key itself (speaker-model identity only,
recorded identities unchanged at its default `raw`, one-line errors)."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import main as main_py
import save_asv_embeddings
import save_sasv_score
from common.cli import run_main
from common.config import ConfigError, load_config
from data.score_files import read_sasv_scores
from tests.pipeline_fixtures import (
    CROP,
    ROOT,
    TINY_CM,
    assert_one_line_error,
    call,
    check_ok,
    flow,
    run_script,
    tiny_corpus,
    write_config,
)

__all__ = ["tiny_corpus"]   # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_thread")

E2E_MODEL = {"C": 16, "embedding_dim": 16}     # a tiny ECAPA-TDNN


@pytest.fixture(scope="module")
def e2e(tiny_corpus, tmp_path_factory) -> Path:
    """One epoch of task sasv_e2e (the quickstart stage-3 config from scratch) on the tiny corpus's LA train."""
    out = tmp_path_factory.mktemp("sasv_e2e")
    check_ok(run_script("main.py", [
        "--config", "configs/quickstart_sasv2_stage3.conf", f"data.database={tiny_corpus.la}", f"output_dir={out}",
        "asv.checkpoint=null", "init.reset_head=false", f"asv.model={flow(E2E_MODEL)}", "train.epochs=1",
        "train.batch_size=2", "sampler.spoof_pairs=2", "train.progress=false", "train.precise_bn_batches=0"]))
    assert (out / "sasv_embedding.pt").is_file()
    return out


def sasv_config(corpus, e2e: Path, out: Path) -> dict:
    """A SASV config whose ASV front-end is the run's asv section (its config.yaml: arch, model, crop and the task's
    `enrol_mean: unit`) with the exported weights, an untrained tiny CM (allow_random_weights: the CM does not
    enter asv_only scores) and the asv_only back-end."""
    run = yaml.safe_load((e2e / "config.yaml").read_text(encoding="utf-8"))
    return {"task": "sasv", "database": str(corpus.la), "output_dir": str(out), "device": "cpu",
            "allow_random_weights": True, "det": False,
            "asv": {**run["asv"], "checkpoint": str(e2e / "sasv_embedding.pt")},
            "cm": {"arch": "AASIST-L", "checkpoint": None, "model": copy.deepcopy(TINY_CM),
                   "crop": {"policy": "first", "samples": CROP}},
            "backend": {"name": "asv_only"}}


@pytest.fixture(scope="module")
def staged(tiny_corpus, e2e, tmp_path_factory) -> dict:
    """The three stage scripts (real command lines) on that config."""
    root = tmp_path_factory.mktemp("single_embedding")
    cfg = sasv_config(tiny_corpus, e2e, root / "exp")
    assert cfg["asv"]["enrol_mean"] == "unit" and cfg["asv"]["crop"]["policy"] == "full"   # task sasv_e2e's default
    config = write_config(root / "single.conf", cfg)
    for script in ("save_asv_embeddings.py", "save_cm_score.py", "save_sasv_score.py"):
        check_ok(run_script(script, ["--config", config]))
    return {"root": root, "config": config, "out": root / "exp", "cfg": cfg}


def assert_same_scores(ours: Path, theirs: Path) -> None:
    a, b = read_sasv_scores(ours), read_sasv_scores(theirs)
    assert list(zip(a.spk, a.utt, a.attack, a.key, strict=True)) == list(zip(b.spk, b.utt, b.attack, b.key,
                                                                              strict=True))
    assert a.score == pytest.approx(b.score, abs=1e-5)


# ------------------------------------------------------------------------------------------------
# The exported embedding in the SASV pipeline
# ------------------------------------------------------------------------------------------------
def test_asv_only_reproduces_the_single_embedding_scores(staged, e2e):
    for split in ("dev", "eval"):
        assert_same_scores(staged["out"] / "scores" / f"sasv_{split}.txt", e2e / "scores" / f"sasv_{split}.txt")
        assert_same_scores(staged["out"] / "scores" / f"asv_{split}.txt", e2e / "scores" / f"sasv_{split}.txt")
    results = json.loads((staged["out"] / "results.json").read_text())
    e2e_results = json.loads((e2e / "results.json").read_text())
    assert results["eval"]["sasv_eer"] == pytest.approx(e2e_results["eval"]["sasv_eer"])
    assert results["frontends"]["asv"]["enrol_mean"] == "unit"
    assert e2e_results["frontends"]["asv"] == results["frontends"]["asv"]   # the same front-end, recorded alike


def test_raw_enrolment_means_give_other_scores(staged, e2e, tmp_path, capsys):
    """Changing asv.enrol_mean recomputes the speaker models and the ASV scores (saying why), reuses the
    per-utterance embeddings, and the SASV stage refuses speaker models made with the other value."""
    out = tmp_path / "exp"
    shutil.copytree(staged["out"], out)
    argv = ["--config", str(staged["config"]), f"output_dir={out}"]
    rc, err = call(lambda a: run_main(save_asv_embeddings.main, a), [*argv, "asv.enrol_mean=raw"], capsys)
    assert rc == 0, err
    for split in ("train", "dev", "eval"):
        assert f"asv {split}: {out / 'embeddings' / f'asv_{split}.npz'} is up to date, skipped" in err
    for split in ("dev", "eval"):
        assert (f"asv {split} speaker models: recomputing {out / 'embeddings' / f'asv_enrol_{split}.npz'}: made by "
                f"something else: enrol_mean changed") in err
    raw, unit = read_sasv_scores(out / "scores" / "asv_eval.txt"), read_sasv_scores(e2e / "scores" / "sasv_eval.txt")
    assert raw.trials() == unit.trials() and max(abs(raw.score - unit.score)) > 1e-4
    rc, err = call(lambda a: run_main(save_sasv_score.main, a), argv, capsys)        # unit again: stale models
    assert rc == 2
    assert_one_line_error(err, "asv_enrol_", "enrol_mean changed", "save_asv_embeddings.py")


def test_verify_uses_it(staged, e2e, capsys):
    """verify.py with the experiment reproduces the single-embedding SASV score of a corpus trial, and refuses
    speaker models averaged otherwise than its scores were."""
    from data.asvspoof import LADatabase
    from data.embeddings import EmbeddingTable
    from pipeline.stages.enrolment import mean_embedding
    from verify import main

    db = LADatabase(staged["cfg"]["database"])
    expected = read_sasv_scores(e2e / "scores" / "sasv_dev.txt")
    table = EmbeddingTable.load(staged["out"] / "embeddings" / "asv_dev.npz")

    def raw_cosine(t) -> float:
        model = mean_embedding([table[u] for u in db.enrolment("dev")[t.speaker]], "raw")
        return float(model @ table[t.utt] / np.linalg.norm(model) / np.linalg.norm(table[t.utt]))

    score = dict(zip(expected.trials(), expected.score, strict=True))
    # the trial whose score the raw mean would change most: verify.py must average as the stages did
    trial = max(db.sasv_trials("dev"), key=lambda t: abs(raw_cosine(t) - score[t.speaker, t.utt]))
    score = score[trial.speaker, trial.utt]
    assert abs(raw_cosine(trial) - score) > 1e-4
    enrol = [str(db.audio("dev", u)) for u in db.enrolment("dev")[trial.speaker]]
    capsys.readouterr()
    assert run_main(main, ["--config", str(staged["config"]), "--enroll", *enrol,
                           "--test", str(db.audio("dev", trial.utt))]) == 0
    printed = {line.split(":", 1)[0]: line.split(":", 1)[1].split()[0]
               for line in capsys.readouterr().out.splitlines() if ":" in line}
    assert float(printed["SASV score"]) == pytest.approx(score, abs=1e-5)
    assert float(printed["ASV score"]) == pytest.approx(score, abs=1e-5)
    rc, err = call(lambda a: run_main(main, a), ["--config", str(staged["config"]), "asv.enrol_mean=raw",
                                                 "--enroll", *enrol, "--test", str(db.audio("dev", trial.utt))], capsys)
    assert rc == 2
    assert_one_line_error(err, "results.json", "enrol_mean differ")


def test_ablate_compares_it_with_fusions(staged, e2e, tmp_path):
    from ablate import main

    systems = [{"name": "single_embedding", "backend": "asv_only"},
               {"name": "score_sum_zscore", "backend": "score_sum", "options": {"normalise": "zscore"}},
               {"name": "lr_fusion", "backend": "lr_fusion"}]
    cfg = {**staged["cfg"], "output_dir": str(tmp_path / "base"), "embeddings_dir": str(staged["out"] / "embeddings"),
           "ablation": {"dir": str(tmp_path / "ablation"), "pictures": False, "systems": systems}}
    assert run_main(main, ["--config", str(write_config(tmp_path / "ablation.conf", cfg))]) == 0
    assert_same_scores(tmp_path / "ablation" / "single_embedding" / "scores" / "sasv_eval.txt",
                       e2e / "scores" / "sasv_eval.txt")
    csv_text = (tmp_path / "ablation" / "ablation.csv").read_text()
    assert all(s["name"] in csv_text for s in systems)


# ------------------------------------------------------------------------------------------------
# The key: what it is part of, and its errors
# ------------------------------------------------------------------------------------------------
def _sasv_cfg(corpus, tmp_path, *overrides: str) -> dict:
    from pipeline.recipes import sasv_task
    return load_config(ROOT / "configs" / "quickstart.conf",
                       [f"database={corpus.la}", f"output_dir={tmp_path}", "asv.checkpoint=null",
                        "cm.checkpoint=null", *overrides], sasv_task.SCHEMA)


def test_enrol_mean_is_part_of_the_speaker_models_identity_only(tiny_corpus, tmp_path):
    from pipeline.stages.frontends import frontend_identity, frontends_record
    from pipeline.stages.outputs import asv_embeddings_spec, cm_embeddings_spec, speaker_models_spec

    raw, unit = _sasv_cfg(tiny_corpus, tmp_path), _sasv_cfg(tiny_corpus, tmp_path, "asv.enrol_mean=unit")
    assert raw["asv"]["enrol_mean"] == "raw"            # the SASV default (SASV 2022 baseline speaker models)
    for split in ("train", "dev", "eval"):
        assert asv_embeddings_spec(raw, split).made_by == asv_embeddings_spec(unit, split).made_by
        assert cm_embeddings_spec(raw, split).made_by == cm_embeddings_spec(unit, split).made_by
    for split in ("dev", "eval"):
        a, b = speaker_models_spec(raw, split), speaker_models_spec(unit, split)
        assert a.path == b.path and a.made_by != b.made_by and b.made_by["enrol_mean"] == "unit"
        # at the default, the identity is the one written before the key existed: current caches stay current
        assert set(a.made_by) == {*frontend_identity(raw["asv"], "asv"), "enrolment", "lists_sha256"}
        assert {k: v for k, v in b.made_by.items() if k != "enrol_mean"} == a.made_by
        # concatenated enrolment averages nothing: the key does not apply
        concat = [speaker_models_spec(_sasv_cfg(tiny_corpus, tmp_path, "enrolment=concat", f"asv.enrol_mean={m}"),
                                      split).made_by for m in ("raw", "unit")]
        assert concat[0] == concat[1] and "enrol_mean" not in concat[0]
    assert "enrol_mean" not in frontends_record(raw)["asv"] and frontends_record(unit)["asv"]["enrol_mean"] == "unit"


def test_runs_recorded_before_the_key_stay_current(tiny_corpus, tmp_path):
    """A run config recorded before asv.enrol_mean existed is the same config as today's at what the task did then
    (`raw`; task sasv_e2e `unit`): demo steps and ablation systems are not redone; at the other value it is another
    config."""
    from common.runs import made_by_config, resumable
    from pipeline.recipes import sasv_e2e_task

    raw, unit = _sasv_cfg(tiny_corpus, tmp_path), _sasv_cfg(tiny_corpus, tmp_path, "asv.enrol_mean=unit")
    old = json.loads(json.dumps(raw))
    del old["asv"]["enrol_mean"]
    assert made_by_config({"provenance": {"config": old}}, raw)
    assert made_by_config({"provenance": {"config": raw}}, raw)
    assert not made_by_config({"provenance": {"config": old}}, unit)
    assert not made_by_config({"provenance": {"config": raw}}, unit)
    (tmp_path / "started.json").write_text(json.dumps({"config": old, "checkpoints": {}, "protocols": {}}))
    assert resumable(tmp_path, raw, {}, {}) and not resumable(tmp_path, unit, {}, {})
    # task sasv_e2e averaged unit vectors before the key existed: its earlier runs match it at `unit`
    e2e = load_config(ROOT / "configs" / "quickstart_sasv2_stage3.conf",
                      [f"data.database={tiny_corpus.la}", f"output_dir={tmp_path}"], sasv_e2e_task.SCHEMA)
    old = json.loads(json.dumps(e2e))
    del old["asv"]["enrol_mean"]
    assert made_by_config({"provenance": {"config": old}}, e2e)
    assert not made_by_config({"provenance": {"config": old}}, {**e2e, "asv": {**e2e["asv"], "enrol_mean": "raw"}})


def test_task_defaults_and_bad_values(tiny_corpus, tmp_path, capsys):
    from pipeline.recipes import sasv_e2e_task

    e2e_overrides = [f"data.database={tiny_corpus.la}", f"output_dir={tmp_path / 'e2e'}", "asv.checkpoint=null",
                     "train.batch_size=2"]
    e2e_cfg = load_config(ROOT / "configs" / "quickstart_sasv2_stage3.conf", e2e_overrides, sasv_e2e_task.SCHEMA)
    assert e2e_cfg["asv"]["enrol_mean"] == "unit"       # SASV2: the mean of unit vectors
    with pytest.raises(ConfigError, match=r"^task sasv_e2e config: 'asv\.enrol_mean' must be one of raw, unit, "
                                          r"got 'mean'$"):
        sasv_e2e_task.check({**e2e_cfg, "asv": {**e2e_cfg["asv"], "enrol_mean": "mean"}})
    rc, err = call(lambda a: run_main(main_py.main, a),
                   ["--config", "configs/quickstart_sasv2_stage3.conf", *e2e_overrides, "asv.enrol_mean=Unit"], capsys)
    assert rc == 2
    assert_one_line_error(err, "asv.enrol_mean", "'Unit'")
    assert not (tmp_path / "e2e").exists()                # refused before anything is written
    rc, err = call(lambda a: run_main(save_asv_embeddings.main, a),
                   ["--config", "configs/quickstart.conf", f"database={tiny_corpus.la}",
                    f"output_dir={tmp_path / 'sasv'}", "allow_random_weights=true", "asv.checkpoint=null",
                    "asv.enrol_mean=normalised"], capsys)
    assert rc == 2
    assert_one_line_error(err, "asv.enrol_mean", "raw, unit", "'normalised'")
    assert not (tmp_path / "sasv").exists()
