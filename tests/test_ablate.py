"""ablate.py on the tiny synthetic corpus: outputs, skipping, seeds, thresholds, calibration, config errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from common.cli import run_main
from tests.pipeline_fixtures import tiny_corpus, tiny_experiment, write_config  # noqa: F401 (fixture)

GRID = [
    {"name": "asv_snorm", "backend": "asv_only", "overrides": {"score_norm.method": "snorm"}},
    {"name": "sum_posterior", "backend": "score_sum", "options": {"normalise": "zscore"}, "cm_score": "posterior"},
    {"name": "lr", "backend": "lr_fusion"},
    {"name": "lr_concat", "backend": "lr_fusion", "overrides": {"enrolment": "concat"}},
    {"name": "b2", "backend": "baseline2", "options": {"hidden": [16, 8]}, "seeds": [0, 1]},
]


def _ablate(argv: list[str]) -> int:
    from ablate import main
    return run_main(main, argv)


@pytest.fixture(scope="module")
def setup(tiny_corpus, tmp_path_factory, one_thread):  # noqa: F811
    exp = tiny_experiment(tmp_path_factory.mktemp("ablate"), tiny_corpus)
    cfg = {**exp["cfg"], "ablation": {"systems": GRID}}
    exp["config"] = write_config(exp["root"] / "ablation.conf", cfg)
    exp["dir"] = Path(cfg["output_dir"]) / "ablation"
    assert _ablate(["--config", str(exp["config"])]) == 0
    return exp


def _csv(path: Path) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return {row["system"]: row for row in csv.DictReader(f)}


def _scores(path: Path):
    from data.score_files import read_sasv_scores
    s = read_sasv_scores(path)
    k = np.asarray(s.key)
    return s.score, {c: s.score[k == c] for c in ("target", "nontarget", "spoof")}


def test_outputs_table_and_pictures(setup):
    root = setup["dir"]
    for name in ("ablation.csv", "ablation.md", "ablation_det.png", "config.yaml"):
        assert (root / name).stat().st_size > 0, name
    rows = _csv(root / "ablation.csv")
    assert set(rows) == {e["name"] for e in GRID}
    md = (root / "ablation.md").read_text(encoding="utf-8")
    table = [line for line in md.split("## Results")[1].split("## Deployed")[0].splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip().rstrip(" †") for line in table[1:]]
    assert sorted(names) == sorted(rows)
    dev_eers = [float(rows[n]["dev_sasv_eer"]) for n in names]
    assert dev_eers == sorted(dev_eers), "ablation.md is sorted by dev SASV-EER"
    b2 = next(line for line in table if line.startswith("| b2 "))
    assert "±" in b2 and "| 0 1 |" in b2
    assert "±" not in next(line for line in table if line.startswith("| lr "))
    for name in rows:
        folder = root / name
        assert (folder / "hist.png").stat().st_size > 0 and (folder / "det.png").stat().st_size > 0
        assert (folder / "reliability.png").exists() == name.startswith("lr"), name
        assert f"({name}/hist.png)" in md and f"({name}/det.png)" in md
    assert "(lr/reliability.png)" in md
    # trained: one folder per seed with its own scores, thresholds and back-end
    for seed in (0, 1):
        for f in ("scores/sasv_dev.txt", "scores/sasv_eval.txt", "thresholds.json", "backend.pt", "run.json"):
            assert (root / "b2" / f"seed_{seed}" / f).exists(), f
    # score-level: scores, fitted state, thresholds at the system folder
    for f in ("scores/sasv_eval.txt", "backend_state.json", "thresholds.json", "scores/asv_dev.txt"):
        assert (root / "lr" / f).exists(), f


def test_multi_seed_mean_and_std(setup):
    row = _csv(setup["dir"] / "ablation.csv")["b2"]
    result = json.loads((setup["dir"] / "b2" / "result.json").read_text())
    assert row["seeds"] == "0 1" and row["n_runs"] == "2" and [r["seed"] for r in result["runs"]] == [0, 1]
    per_seed = [r["metrics"]["eval"]["sasv_eer"] for r in result["runs"]]
    assert float(row["eval_sasv_eer"]) == pytest.approx(np.mean(per_seed))
    assert float(row["eval_sasv_eer_std"]) == pytest.approx(np.std(per_seed, ddof=1))
    a, b = (_scores(setup["dir"] / "b2" / f"seed_{s}" / "scores" / "sasv_eval.txt")[0] for s in (0, 1))
    assert not np.allclose(a, b), "different seeds train different back-ends"
    assert _csv(setup["dir"] / "ablation.csv")["lr"]["eval_sasv_eer_std"] == ""


def test_metrics_match_score_files(setup):
    """Columns recomputed from the written score files: SASV-EER, thresholds on eval, Cllr."""
    from metrics.calibration import cllr, min_cllr
    from metrics.sasv import sasv_eers
    from metrics.thresholds import choose_threshold, evaluate_threshold

    rows = _csv(setup["dir"] / "ablation.csv")
    folder = setup["dir"] / "lr"
    _, dev = _scores(folder / "scores" / "sasv_dev.txt")
    ev_scores, ev = _scores(folder / "scores" / "sasv_eval.txt")
    row = rows["lr"]
    from data.score_files import read_sasv_scores
    keys = read_sasv_scores(folder / "scores" / "sasv_eval.txt").key
    assert float(row["eval_sasv_eer"]) == pytest.approx(100 * sasv_eers(ev_scores, keys)["sasv_eer"])
    for method, kw in (("eer", {"negatives": "both"}), ("min_dcf", {}), ("min_a_dcf", {}),
                       ("far", {"negatives": "both", "far": 0.01})):
        t = choose_threshold(dev, method, **kw)
        assert float(row[f"{method}_threshold"]) == pytest.approx(t)
        got = evaluate_threshold(ev, t)
        for rate in ("p_miss", "p_fa_nontarget", "p_fa_spoof", "actual_dcf", "actual_a_dcf"):
            assert float(row[f"{method}_eval_{rate}"]) == pytest.approx(got[rate]), (method, rate)
    thresholds = json.loads((folder / "thresholds.json").read_text())
    assert set(thresholds) >= {"eer", "min_dcf", "min_a_dcf", "far"}
    assert thresholds["far_target"] == 0.01 and thresholds["eer"]["eval"]["threshold"] == thresholds["eer"]["threshold"]
    neg = np.concatenate([ev["nontarget"], ev["spoof"]])
    assert float(row["eval_cllr"]) == pytest.approx(cllr(ev["target"], neg))
    assert float(row["eval_min_cllr"]) == pytest.approx(min_cllr(ev["target"], neg))
    for name, r in rows.items():  # every system has the calibration and threshold columns filled
        for col in ("dev_cllr", "eval_min_cllr", "min_a_dcf_eval_actual_a_dcf", "eval_t_eer"):
            assert np.isfinite(float(r[col])), (name, col)


def test_score_norm_and_enrolment_variants(setup):
    """The snorm system's ASV scores are S-normalised cosines (train-speaker cohort); concat enrolment has its
    own speaker-model cache beside the list one; the posterior CM score lies in [0, 1]."""
    from asv.score_norm import normalise_scores, speaker_mean_cohort
    from data.asvspoof import LADatabase
    from data.embeddings import EmbeddingTable
    from data.score_files import read_sasv_scores

    raw = read_sasv_scores(setup["dir"] / "lr" / "scores" / "asv_dev.txt")        # score_norm none: cosines
    snorm = read_sasv_scores(setup["dir"] / "asv_snorm" / "scores" / "sasv_dev.txt")
    stage = read_sasv_scores(setup["dir"] / "asv_snorm" / "scores" / "asv_dev.txt")
    assert raw.trials() == snorm.trials() and np.all(np.abs(raw.score) <= 1.0 + 1e-6)
    np.testing.assert_allclose(snorm.score, stage.score, rtol=1e-12)   # asv_only passes the normalised score
    emb = Path(setup["cfg"]["output_dir"]) / "embeddings"
    tables = {n: EmbeddingTable.load(emb / f"asv_{n}.npz") for n in ("train", "dev", "enrol_dev")}
    bona = [e for e in LADatabase(setup["corpus"].la).cm_entries("train") if e.is_bonafide]
    _, cohort = speaker_mean_cohort(np.stack([tables["train"][e.utt] for e in bona]), [e.speaker for e in bona])
    models, tests = tables["enrol_dev"], tables["dev"]
    expected = normalise_scores("snorm", models.embeddings, tests.embeddings, [models.index[s] for s in snorm.spk],
                                [tests.index[u] for u in snorm.utt], cohort_emb=cohort)
    np.testing.assert_allclose(snorm.score, expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(raw.score, snorm.score)
    emb = Path(setup["cfg"]["output_dir"]) / "embeddings"
    assert (emb / "asv_enrol_dev.npz").exists() and (emb / "asv_enrol_concat_dev.npz").exists()
    lr, concat = (read_sasv_scores(setup["dir"] / n / "scores" / "sasv_dev.txt").score for n in ("lr", "lr_concat"))
    assert not np.allclose(lr, concat)
    from common.config import load_config
    from pipeline.stages.sasv import trial_inputs
    from pipeline.tools.ablation.cm_scores import with_cm_score
    from pipeline.tools.ablation.grid import SCHEMA, parse_systems
    cfg = load_config(setup["config"], [], SCHEMA)
    system = next(s for s in parse_systems(cfg) if s.name == "sum_posterior")
    data = trial_inputs(system.cfg, "dev")
    post, odds = (with_cm_score(system.cfg, data, k).cm_scores for k in ("posterior", "log_odds"))
    assert np.all((post > 0) & (post < 1))
    np.testing.assert_allclose(post, 1 / (1 + np.exp(-odds)), rtol=1e-9)
    assert with_cm_score(system.cfg, data, "logit") is data


def test_save_asv_embeddings_with_score_norm(setup, tmp_path):
    """score_norm works through the stage script too (cached embeddings reused from a shared folder)."""
    import save_asv_embeddings

    out = tmp_path / "asnorm"
    args = ["--config", str(write_config(tmp_path / "sasv.conf", setup["cfg"])), f"output_dir={out}",
            f"embeddings_dir={Path(setup['cfg']['output_dir']) / 'embeddings'}",
            "score_norm.method=asnorm", "score_norm.top_n=3"]
    assert save_asv_embeddings.main(args) == 0
    from data.score_files import read_sasv_scores
    got = read_sasv_scores(out / "scores" / "asv_dev.txt")
    raw = read_sasv_scores(setup["dir"] / "lr" / "scores" / "asv_dev.txt")
    assert got.trials() == raw.trials() and not np.allclose(got.score, raw.score)


def test_rerun_skips_finished_systems(setup, capfd):
    before = {p: p.stat().st_mtime_ns for p in setup["dir"].glob("*/result.json")}
    csv_before = (setup["dir"] / "ablation.csv").read_text()
    assert _ablate(["--config", str(setup["config"])]) == 0
    err = capfd.readouterr().err
    for entry in GRID:
        assert f"ablation {entry['name']}: " in err and "is up to date, skipped" in err
    assert "[engine]" not in err, "nothing is trained again"
    assert {p: p.stat().st_mtime_ns for p in setup["dir"].glob("*/result.json")} == before
    assert (setup["dir"] / "ablation.csv").read_text() == csv_before


def test_seed_is_deterministic_and_new_seeds_only_train(setup, tmp_path, capfd):
    """A fresh ablation folder trains seed 1 to the same scores; adding seed 2 later trains only seed 2."""
    cfg = yaml.safe_load(setup["config"].read_text())
    cfg["ablation"] = {"dir": str(tmp_path / "abl"), "pictures": False, "systems": [{**GRID[-1], "seeds": [1]}]}
    config = write_config(tmp_path / "one.conf", cfg)
    assert _ablate(["--config", str(config)]) == 0
    ref = _scores(setup["dir"] / "b2" / "seed_1" / "scores" / "sasv_eval.txt")[0]
    np.testing.assert_array_equal(_scores(tmp_path / "abl" / "b2" / "seed_1" / "scores" / "sasv_eval.txt")[0], ref)
    capfd.readouterr()
    cfg["ablation"]["systems"][0]["seeds"] = [1, 2]
    assert _ablate(["--config", str(write_config(tmp_path / "two.conf", cfg))]) == 0
    err = capfd.readouterr().err
    assert "b2 seed 1: " in err and "seed_1/run.json is up to date, skipped" in err
    assert err.count("[engine] epoch 1/1") == 1
    assert _csv(tmp_path / "abl" / "ablation.csv")["b2"]["seeds"] == "1 2"


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "backend": "nope"}, "'backend' is 'nope'"),
    ({"name": "x", "backend": "lr_fusion", "colour": 1}, "unknown key 'colour'"),
    ({"name": "x/y", "backend": "lr_fusion"}, "folder-safe"),
    ({"name": "x", "backend": "lr_fusion", "options": {"priorr": 0.5}},
     "unknown keyword 'priorr' for fusion back-end lr_fusion"),
    ({"name": "x", "backend": "lr_fusion", "overrides": {"asv.checkpoint": "a.pt"}}, "'asv.checkpoint' is not allowed"),
    ({"name": "x", "backend": "lr_fusion", "overrides": {"score_norm.metod": "snorm"}},
     "unknown key 'score_norm.metod'"),
    ({"name": "x", "backend": "lr_fusion", "overrides": {"train.epochs": "two"}},
     "'train.epochs' must be an integer >= 1, got 'two'"),
    ({"name": "x", "backend": "lr_fusion", "overrides": {"score_norm.top_n": 1}},
     "ablation system 'x': 'score_norm.top_n' must be an integer >= 2, got 1"),
    ({"name": "x", "backend": "baseline2",
      "overrides": {"train.select_initial": True, "train.select_metric": "train_loss"}},
     "ablation system 'x': training config: 'select_initial' needs a dev select_metric"),
    ({"name": "x", "backend": "lr_fusion", "cm_score": "prob"}, "'cm_score' is 'prob'"),
    ({"name": "x", "backend": "lr_fusion", "seeds": [0]}, "'seeds' is for trained back-ends"),
    ({"name": "x", "backend": "joint_oc", "seeds": []}, "'seeds' must be a non-empty list"),
    ({"name": "x", "backend": "joint_oc", "seeds": [2**32]}, "each an integer in [0, 4294967295], got [4294967296]"),
])
def test_config_errors_are_one_line(setup, tmp_path, capsys, entry, message):
    cfg = yaml.safe_load(setup["config"].read_text())
    cfg["ablation"] = {"dir": str(tmp_path / "abl"), "systems": [entry]}
    assert _ablate(["--config", str(write_config(tmp_path / "bad.conf", cfg))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "abl" / "x").exists()


def test_duplicate_names_and_empty_grid(setup, tmp_path, capsys):
    cfg = yaml.safe_load(setup["config"].read_text())
    cfg["ablation"] = {"systems": [GRID[0], GRID[0]]}
    assert _ablate(["--config", str(write_config(tmp_path / "dup.conf", cfg))]) == 2
    assert "appears twice" in capsys.readouterr().err
    cfg["ablation"] = {"systems": []}
    assert _ablate(["--config", str(write_config(tmp_path / "empty.conf", cfg))]) == 2
    assert "ablation.systems is empty" in capsys.readouterr().err
