"""Every task on the synthetic ASVspoof 5 layout (issue 23 §2): task cm (train on ASVspoof 5 train, Track 1 dev
and eval; and mode evaluate), task asv on its bona fide speakers, the three stages on Track 2 with list enrolment,
task sasv frozen and joint, and task sasv_e2e's stage 3 on ASVspoof 5 train. Tiny models, one epoch: the layout is
under test, not the accuracy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import main as main_py
import save_asv_embeddings
import save_cm_score
import save_sasv_score
import synthetic.asvspoof5 as asvspoof5
from common.cli import run_main
from data.databases import open_database
from data.score_files import read_asvspoof5_cm, read_sasv_scores
from tests.conftest import ROOT
from tests.pipeline_fixtures import ASV_MODEL, CM_MODEL, CROP, call, check_ok, run_script

pytestmark = pytest.mark.usefixtures("one_thread")


def _main(argv):
    return run_main(main_py.main, argv)


@pytest.fixture(scope="module")
def a5(tmp_path_factory) -> Path:
    """The tiny synthetic ASVspoof 5 layout (the database folder)."""
    return asvspoof5.generate(tmp_path_factory.mktemp("asvspoof5"), "tiny", seed=0).database


@pytest.fixture(scope="module")
def front_ends(a5, tmp_path_factory) -> dict[str, Path]:
    """task cm and task asv trained on ASVspoof 5 train (one epoch each, as subprocesses in parallel)."""
    root = tmp_path_factory.mktemp("a5_front_ends")
    cm = run_script("main.py", ["--config", "configs/quickstart_cm.conf", f"database={a5}", f"output_dir={root / 'cm'}",
                                "cm.arch=AASIST-L", f"cm.model={CM_MODEL}", "cm.crop.policy=first",
                                f"cm.crop.samples={CROP}", f"data.train_samples={CROP}", "train.epochs=1",
                                "train.batch_size=4", "train.progress=false"])
    check_ok(cm)
    asv = run_script("main.py", ["--config", "configs/quickstart_asv_la.conf", f"data.database={a5}",
                                 f"output_dir={root / 'asv'}", "asv.checkpoint=null", "asv.arch=ResNetSE34L",
                                 f"asv.model={ASV_MODEL}", "train.epochs=1", "train.batch_size=4",
                                 "train.progress=false"])
    check_ok(asv)
    return {"cm": root / "cm", "asv": root / "asv", "cm_stderr": cm.stderr}


def _sasv(a5, front_ends, out, *extra) -> list[str]:
    return ["--config", "configs/quickstart.conf", f"database={a5}", f"output_dir={out}",
            f"asv.checkpoint={front_ends['asv'] / 'asv_model.pt'}", "asv.arch=ResNetSE34L", f"asv.model={ASV_MODEL}",
            f"cm.checkpoint={front_ends['cm'] / 'cm_model.pt'}", "cm.arch=AASIST-L", f"cm.model={CM_MODEL}",
            "cm.crop.policy=first", f"cm.crop.samples={CROP}", f"joint.test_samples={CROP}",
            f"joint.enrol_samples={CROP}", "sampling.trials_per_epoch=16", "train.epochs=1", "train.batch_size=8",
            "train.progress=false", "det=false", *extra]


def test_cm_trains_on_asvspoof5_and_reports_track1_dev_and_eval(front_ends):
    results = json.loads((front_ends["cm"] / "results.json").read_text())
    assert {"dev_cm_eer", "eval_cm_eer", "eval_cm_eer_per_attack"} <= set(results)
    assert results["provenance"]["database"]["format"] == "asvspoof5"
    assert set(results["eval_cm_eer_per_attack"]) <= {f"A{i:02d}" for i in range(17, 33)}
    assert "read as ASVspoof 5" in front_ends["cm_stderr"]


def test_cm_evaluate_mode_on_asvspoof5(a5, front_ends, tmp_path, capsys):
    out = tmp_path / "eval"
    rc, err = call(_main, ["--config", "configs/quickstart_cm.conf", f"database={a5}", f"output_dir={out}",
                           "mode=evaluate", "eval_splits=[eval]", f"cm.checkpoint={front_ends['cm'] / 'cm_model.pt'}",
                           "cm.arch=AASIST-L", f"cm.model={CM_MODEL}", "cm.crop.policy=first",
                           f"cm.crop.samples={CROP}", f"data.train_samples={CROP}"], capsys)
    assert rc == 0, err
    entries = open_database(a5).cm_entries("eval")
    lines = (out / "scores" / "cm_eval.txt").read_text().splitlines()
    assert len(lines) == len(entries)
    package = read_asvspoof5_cm(out / "scores" / "asvspoof5" / "cm_eval.tsv",
                                out / "scores" / "asvspoof5" / "cm_keys_eval.tsv")
    assert sorted(package.utt) == sorted(e.utt for e in entries)
    assert set(package.codec) == {e.codec for e in entries}
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["eval_cm_min_dcf"] <= 1 and results["eval_cm_cllr"] > 0
    codecs = results["eval_cm_breakdown"]["codec"]     # the Track 1 metrics per codec condition, as the package
    assert len(codecs) >= 2 and set(codecs) <= {e.codec for e in entries}


def test_asv_trains_on_asvspoof5_bona_fide_speakers(a5, front_ends):
    results = json.loads((front_ends["asv"] / "results.json").read_text())
    assert "eer" in results and results["provenance"]["database"]["format"] == "asvspoof5"
    assert "ASVspoof 5 dev" in results["selected_on"]


def test_stages_score_track2_with_list_enrolment(a5, front_ends, tmp_path, capsys):
    out = tmp_path / "stages"
    for stage in (save_asv_embeddings, save_cm_score, save_sasv_score):
        rc, err = call(lambda a, s=stage: run_main(s.main, a), _sasv(a5, front_ends, out), capsys)
        assert rc == 0, err
    db = open_database(a5)
    for split in ("dev", "eval"):
        scores = read_sasv_scores(out / "scores" / f"sasv_{split}.txt")
        assert sorted(scores.trials()) == sorted((t.speaker, t.utt) for t in db.sasv_trials(split))
    results = json.loads((out / "results.json").read_text())
    assert {"sasv_eer", "min_a_dcf", "min_a_dcf_asvspoof5", "min_t_dcf_asvspoof5", "t_eer"} <= set(results["eval"])
    assert results["provenance"]["database"]["format"] == "asvspoof5"
    assert (out / "scores" / "asvspoof5" / "sasv_eval.tsv").is_file()

    from fusion import BACKENDS  # every score-level back-end on the same caches
    for name in sorted(n for n, cls in BACKENDS.items() if cls.score_level):
        rc, err = call(lambda a: run_main(save_sasv_score.main, a),
                       _sasv(a5, front_ends, tmp_path / name, f"embeddings_dir={out / 'embeddings'}",
                             f"backend.name={name}"), capsys)
        assert rc == 0, f"{name}: {err}"
        evaluated = json.loads((tmp_path / name / "results.json").read_text())["eval"]
        assert "min_a_dcf_asvspoof5" in evaluated
        # an LLR back-end's results add the actual a-DCFs at the Bayes thresholds; the others do not
        assert ("act_a_dcf" in evaluated) == ("act_a_dcf_asvspoof5" in evaluated) == BACKENDS[name].outputs_llr, name


@pytest.mark.parametrize("mode", ["frozen", "joint"])
def test_sasv_back_end_trains_on_asvspoof5(mode, a5, front_ends, tmp_path, capsys):
    out = tmp_path / mode
    extra = ["backend.name=baseline2", "sampling.scheme=baseline2", "backend.options={hidden: [8]}"] \
        if mode == "frozen" else ["backend.name=joint_oc", "mode=joint", "sampling.scheme=4class"]
    rc, err = call(_main, _sasv(a5, front_ends, out, *extra), capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert {"dev", "eval"} <= set(results) and results["provenance"]["database"]["format"] == "asvspoof5"


def test_single_embedding_stage3_on_asvspoof5_train(a5, tmp_path, capsys):
    out = tmp_path / "e2e"
    rc, err = call(_main, ["--config", "configs/quickstart_sasv2_stage3.conf", f"data.database={a5}",
                           f"output_dir={out}", "asv.checkpoint=null", "init.reset_head=false",
                           "asv.model={C: 16, embedding_dim: 16}", "train.epochs=1", "train.batch_size=2",
                           "sampler.spoof_pairs=2", "train.progress=false", "train.precise_bn_batches=0"], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert {"dev", "eval"} <= set(results) and results["provenance"]["database"]["format"] == "asvspoof5"


def test_demo_layout_asvspoof5_runs_every_step_and_prints_both_tracks(a5, tmp_path, capsys, monkeypatch):
    """python demo.py --layout asvspoof5, scaled down: the CM's Track 1 table (with minDCF per codec condition of
    the coded eval copies) and every system's Track 2 row; a rerun skips every step."""
    import demo
    monkeypatch.chdir(ROOT)
    out = tmp_path / "demo"
    argv = ["--layout", "asvspoof5", "--preset", "tiny", "--out", str(out), "--corpus", str(a5.parent),
            "train.epochs=1", "train.progress=false", "asv.model={C: 64, embedding_dim: 32}",
            "sampling.trials_per_epoch=64"]
    rc, err = call(demo.main, argv, capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert set(results["systems"]) == {label for label, _ in demo.ASVSPOOF5_SYSTEMS}
    assert results["cm"]["provenance"]["database"]["format"] == "asvspoof5"
    for r in results["systems"].values():
        assert {"min_a_dcf_asvspoof5", "min_t_dcf_asvspoof5", "t_eer"} <= set(r["eval"])
    printed = demo.track1_table(results["cm"], ["dev", "eval"]) + demo.track2_table(results["systems"])
    assert "eval minDCF per codec condition" in printed and "Score sum (Baseline1)" in printed
    rc, err = call(demo.main, argv, capsys)
    assert rc == 0 and err.count("up to date, skipped") == 2 + len(demo.ASVSPOOF5_SYSTEMS), err
