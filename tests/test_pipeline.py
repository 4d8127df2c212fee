"""The SASV pipeline end to end on the tiny synthetic corpus: main.py tasks asv / cm / sasv (frozen and joint),
the three stage scripts, their caches, and evaluate.py agreeing with results.json.

Entry points run once each as subprocesses (the real command line); variations run in-process through the same
`main(argv)` functions to stay within the time budget.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import main as main_py
import save_asv_embeddings
import save_cm_score
import save_sasv_score
from common.cli import run_main
from common.locking import LOCK_NAME
from data.asvspoof import LADatabase
from data.score_files import read_cm_scores, read_sasv_scores
from metrics.breakdown import Conditions, cm_breakdown
from metrics.eer import det_eer
from tests.pipeline_fixtures import (
    ASV_MODEL,
    CM_MODEL,
    assert_same_numbers,
    call,
    check_ok,
    files_under,
    frontends,
    run_script,
    sasv_args,
    staged,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name

SPLITS = ("train", "dev", "eval")
EVAL_SPLITS = ("dev", "eval")
SASV_METRICS = ("sasv_eer", "sv_eer", "spf_eer", "min_a_dcf", "min_a_dcf_asvspoof5", "t_eer",
                "min_t_dcf_asvspoof5", "min_t_dcf_asvspoof5_formula", "min_t_dcf_asvspoof2019", "asv_eer", "cm_eer")
SCORE_BACKENDS = ("asv_only", "cm_only", "score_sum", "product_rule", "lr_fusion")


def call_main_py(argv, capsys) -> tuple[int, str]:
    return call(lambda a: run_main(main_py.main, a), argv, capsys)


def tree(root: Path) -> dict[str, bytes]:
    """Every output file under root (relative path -> bytes); the folder lock's holder note is not an output."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def assert_results(path: Path) -> dict:
    results = json.loads(path.read_text())
    for split in EVAL_SPLITS:
        assert set(SASV_METRICS) <= set(results[split]), (f"{path}: {split} lacks "
                                                          f"{set(SASV_METRICS) - set(results[split])}")
        for key in SASV_METRICS:
            if key == "min_t_dcf_asvspoof2019" and results[split][key] is None:
                continue  # undefined (null) when the ASV alone rejects every spoof: min(C1, C2) = 0
            assert math.isfinite(results[split][key]), f"{path}: {split} {key} = {results[split][key]}"
        for key in ("sasv_eer", "sv_eer", "spf_eer", "t_eer", "asv_eer", "cm_eer"):
            assert 0 <= results[split][key] <= 100
        assert (path.parent / f"det_{split}.png").stat().st_size > 1000
    return results


def assert_sasv_file(path: Path, db: LADatabase, split: str) -> None:
    """Every trial of the split's protocol exactly once, with its protocol labels, and a finite score."""
    scores = read_sasv_scores(path)
    protocol = {(t.speaker, t.utt): t for t in db.sasv_trials(split)}
    assert len(scores.trials()) == len(set(scores.trials())), f"{path}: duplicated trials"
    assert set(scores.trials()) == set(protocol), f"{path}: trials differ from the protocol"
    for spk, utt, attack, key in zip(scores.spk, scores.utt, scores.attack, scores.key, strict=True):
        assert (attack, key) == (protocol[spk, utt].attack, protocol[spk, utt].key)
    assert np.isfinite(scores.score).all()


# ---------------------------------------------------------------------------------------------
# main.py task asv / task cm (the session fixture trained the front-ends with them)
# ---------------------------------------------------------------------------------------------
def test_asv_task_trains_and_exports(frontends):
    results = json.loads((frontends.asv_dir / "results.json").read_text())
    assert {"eer", "min_dcf_p001", "min_dcf_p005", "best_epoch"} <= set(results)
    assert all(math.isfinite(results[k]) for k in ("eer", "min_dcf_p001", "min_dcf_p005"))
    assert 0 <= results["eer"] <= 100 and results["best_epoch"] == 1
    rows = csv_rows(frontends.asv_dir / "epoch_log.csv")
    assert [r["epoch"] for r in rows] == ["1"] and math.isfinite(float(rows[0]["eer"]))
    from pipeline.stages.frontends import build_asv
    model = build_asv({"arch": "ResNetSE34L", "checkpoint": str(frontends.asv),
                       "model": {"embedding_dim": 32, "channels": [8, 8, 16, 32]}})
    assert model.embedding_dim == 32


def test_cm_task_trains_and_exports(frontends):
    results = json.loads((frontends.cm_dir / "results.json").read_text())
    assert {"dev_cm_eer", "eval_cm_eer", "best_epoch"} <= set(results)
    assert all(math.isfinite(results[k]) and 0 <= results[k] <= 100 for k in ("dev_cm_eer", "eval_cm_eer"))
    rows = csv_rows(frontends.cm_dir / "epoch_log.csv")
    assert [r["epoch"] for r in rows] == ["1"] and math.isfinite(float(rows[0]["dev_cm_eer"]))
    per_attack = results["eval_cm_eer_per_attack"]
    assert set(per_attack) <= {f"A{i:02d}" for i in range(7, 20)} and per_attack
    assert all(0 <= v <= 100 for v in per_attack.values())
    breakdown = results["eval_cm_breakdown"]        # the ASVspoof 5 Track 1 metrics, pooled and per attack
    assert {a: cell["eer"] for a, cell in breakdown["attack"].items()} == per_attack
    assert breakdown["pooled"]["eer"] == results["eval_cm_eer"] and "codec" not in breakdown   # 2019 LA: no codecs
    assert all(0 <= results[f"eval_cm_{m}"] == breakdown["pooled"][m] for m in ("min_dcf", "act_dcf", "cllr"))
    from pipeline.stages.frontends import build_cm
    build_cm({"arch": "AASIST-L", "checkpoint": str(frontends.cm),
              "model": {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}})


def test_a_cm_trained_with_oc_softmax_is_refused_by_the_sasv_stages(tmp_path):
    """Its bona fide logit was never trained: scoring SASV trials with it would be silently meaningless."""
    import cm
    from cm.checkpoint import load_cm_state, save_cm_state
    from cm.losses import build_loss
    from pipeline.stages.frontends import build_cm
    model, loss = cm.build_model("LCNN", channels=[8, 8, 8, 8]), build_loss("OCSoftmax", 128)
    save_cm_state(tmp_path / "oc.pt", model, loss=loss, arch="LCNN", loss_name="OCSoftmax")
    restored = build_loss("OCSoftmax", 128)
    load_cm_state(cm.build_model("LCNN", channels=[8, 8, 8, 8]), tmp_path / "oc.pt", loss=restored)
    assert torch.equal(restored.center, loss.center)  # the centre is kept with the model
    with pytest.raises(ValueError, match=r"oc\.pt: this CM was trained with OCSoftmax.*train it with WeightedCE"):
        build_cm({"arch": "LCNN", "checkpoint": str(tmp_path / "oc.pt"), "model": {"channels": [8, 8, 8, 8]}})


# ---------------------------------------------------------------------------------------------
# The stage scripts
# ---------------------------------------------------------------------------------------------
def test_stage_outputs_exist_and_parse(staged, tiny_corpus):
    db, emb, scores = LADatabase(tiny_corpus.la), staged.embeddings, staged.out / "scores"
    for split in SPLITS:
        asv = load_npz(emb / f"asv_{split}.npz")
        ids = asv["ids"].tolist()
        assert len(ids) == len(set(ids)) == asv["embeddings"].shape[0]
        assert set(ids) == set(db.utterances(split))
        assert asv["embeddings"].shape[1] == 32 and np.isfinite(asv["embeddings"]).all()
        cm = load_npz(emb / f"cm_{split}.npz")
        protocol = {e.utt: e for e in db.cm_entries(split)}
        assert cm["ids"].tolist() == list(protocol)
        assert cm["embeddings"].shape[0] == cm["scores"].shape[0] == len(protocol)
        cm_file = read_cm_scores(scores / f"cm_{split}.txt")
        assert cm_file.utt == list(protocol)
        assert [protocol[u].key for u in cm_file.utt] == cm_file.key
        assert [protocol[u].system.replace("-", "bonafide") for u in cm_file.utt] == cm_file.attack
        assert all(line.split()[1] == protocol[line.split()[0]].system     # ASVspoof 2019: '-' for bona fide
                   for line in (scores / f"cm_{split}.txt").read_text().splitlines())
        np.testing.assert_allclose(cm_file.score, cm["scores"], rtol=1e-5, atol=1e-6)
    for split in EVAL_SPLITS:
        models = load_npz(emb / f"asv_enrol_{split}.npz")
        assert sorted(models["ids"].tolist()) == sorted(db.enrolment(split))
        assert models["embeddings"].shape == (len(db.enrolment(split)), 32)
        for kind in ("asv", "cm_trials", "sasv"):
            assert_sasv_file(scores / f"{kind}_{split}.txt", db, split)
        cm_score = dict(zip(load_npz(emb / f"cm_{split}.npz")["ids"].tolist(),
                            load_npz(emb / f"cm_{split}.npz")["scores"], strict=True))
        trials = read_sasv_scores(scores / f"cm_trials_{split}.txt")
        np.testing.assert_allclose(trials.score, [cm_score[u] for u in trials.utt], rtol=1e-5, atol=1e-6)
    assert_results(staged.out / "results.json")
    assert json.loads((staged.out / "backend_state.json").read_text())
    assert "ASV EER" in staged.stderr["save_asv_embeddings.py"]
    assert "CM EER" in staged.stderr["save_cm_score.py"]
    assert not list(staged.out.rglob("*.tmp"))


def test_evaluate_py_agrees_with_results_json(staged, tmp_path):
    s = staged.out / "scores"
    check_ok(run_script("evaluate.py", ["--sasv", s / "sasv_dev.txt", "--asv", s / "asv_dev.txt",
                                        "--cm", s / "cm_trials_dev.txt", "--json", tmp_path / "x.json"]))
    evaluated = json.loads((tmp_path / "x.json").read_text())
    results = json.loads((staged.out / "results.json").read_text())["dev"]
    assert set(evaluated) == set(results) and "attack" in results["breakdown"]    # both: the per-attack tables
    assert_same_numbers(evaluated, results, rel=1e-6, abs=1e-9)


def test_package_score_files_give_back_results_json_and_track1(staged, tiny_corpus, tmp_path, capsys):
    """The stages also write the ASVspoof 5 evaluation package's files (scores/asvspoof5/): evaluate.py reads them
    back to results.json's numbers, and to the Track 1 numbers of the ASVspoof 2019 CM file with the corpus's labels."""
    s, package = staged.out / "scores", staged.out / "scores" / "asvspoof5"
    assert sorted(p.name for p in package.iterdir()) == sorted(
        f"{kind}{suffix}_{split}.tsv" for kind in ("asv", "cm", "sasv") for suffix in ("", "_keys")
        for split in (SPLITS if kind == "cm" else EVAL_SPLITS))
    results = json.loads((staged.out / "results.json").read_text())["dev"]
    assert run_main(evaluate.main, ["--sasv", str(package / "sasv_dev.tsv"), "--keys",
                                    str(package / "sasv_keys_dev.tsv"), "--json", str(tmp_path / "t2.json")]) == 0
    evaluated = json.loads((tmp_path / "t2.json").read_text())
    assert set(evaluated) == set(results) and "attack" in evaluated["breakdown"]
    assert_same_numbers(evaluated, results, rel=1e-9, abs=1e-12)
    asv = read_sasv_scores(s / "asv_dev.txt")          # score_norm none: the ASV stage's scores are the final ones
    from data.score_files import read_asvspoof5_cm, read_asvspoof5_sasv
    package_asv = read_asvspoof5_sasv(package / "asv_dev.tsv", package / "asv_keys_dev.tsv")
    assert list(package_asv) == ["asv"] and package_asv["asv"].trials() == asv.trials()
    np.testing.assert_array_equal(package_asv["asv"].score, asv.score)
    cm = read_cm_scores(s / "cm_eval.txt")
    package_cm = read_asvspoof5_cm(package / "cm_eval.tsv", package / "cm_keys_eval.tsv")
    assert (package_cm.utt, package_cm.key, package_cm.attack) == (cm.utt, cm.key, cm.attack)
    np.testing.assert_array_equal(package_cm.score, cm.score)
    outputs = []
    for argv in (["--cm", str(package / "cm_eval.tsv"), "--keys", str(package / "cm_keys_eval.tsv")],
                 ["--cm", str(s / "cm_eval.txt"), "--database", str(tiny_corpus.la), "--split", "eval"],
                 ["--cm", str(package / "cm_eval.tsv"), "--database", str(tiny_corpus.la), "--split", "eval"]):
        assert run_main(evaluate.main, [*argv, "--json", str(tmp_path / "t1.json")]) == 0
        outputs.append(json.loads((tmp_path / "t1.json").read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    bonafide = cm.score[np.array(cm.key) == "bonafide"]
    assert outputs[0]["eer"] == 100 * det_eer(bonafide, cm.score[np.array(cm.key) == "spoof"]).eer
    assert set(outputs[0]["breakdown"]) == {"pooled", "attack"}      # 2019 LA: attacks, no codecs
    assert "per attack (its spoofs against all bona fide trials):" in capsys.readouterr().out


def test_rerun_skips_and_is_byte_identical(staged, tiny_corpus, frontends, tmp_path, capsys, one_thread):
    out = copy_run(staged.out, tmp_path / "run")
    before = tree(out)
    mtimes = {p: p.stat().st_mtime_ns for p in files_under(out / "embeddings")}   # the lock file aside
    args = sasv_args(tiny_corpus, frontends, out)
    rc, asv_err = call(save_asv_embeddings.main, args, capsys)
    assert rc == 0, asv_err
    rc, cm_err = call(save_cm_score.main, args, capsys)
    assert rc == 0, cm_err
    for split in SPLITS:
        assert f"asv {split}: {out / 'embeddings' / f'asv_{split}.npz'} is up to date" in asv_err
        assert f"cm {split}: {out / 'embeddings' / f'cm_{split}.npz'} is up to date" in cm_err
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 0, err
    after = tree(out)
    assert sorted(after) == sorted(before), "rerun added or removed files"
    changed = [name for name in before if before[name] != after[name] and name not in ("config.yaml", "results.json")]
    assert not changed, f"rerun changed {changed}"
    old, new = (json.loads(t["results.json"]) for t in (before, after))
    assert old.pop("provenance")["config"] == new.pop("provenance")["config"] | {"output_dir": str(staged.out)}
    assert old == new, "rerun changed the results (beyond when and where they were made)"
    assert f"output_dir: {out}" in (out / "config.yaml").read_text()   # the copy's own resolved config
    assert {p: p.stat().st_mtime_ns for p in files_under(out / "embeddings")} == mtimes, "cached embeddings rewritten"


def test_force_recomputes(staged, tiny_corpus, frontends, tmp_path, capsys, one_thread):
    out = copy_run(staged.out, tmp_path / "run")
    args = sasv_args(tiny_corpus, frontends, out, "splits=[dev]")
    path = out / "embeddings" / "cm_dev.npz"
    mtime, before = path.stat().st_mtime_ns, load_npz(path)
    rc, err = call(save_cm_score.main, [*args, "--force"], capsys)
    assert rc == 0 and "up to date" not in err and "cm dev: CM EER" in err
    assert path.stat().st_mtime_ns != mtime
    after = load_npz(path)
    assert after["ids"].tolist() == before["ids"].tolist()
    np.testing.assert_allclose(after["scores"], before["scores"], rtol=1e-4, atol=1e-5)
    rc, err = call(save_asv_embeddings.main, [*args, "--force"], capsys)
    assert rc == 0 and "up to date" not in err and "asv dev:" in err
    rc, err = call(save_asv_embeddings.main, args, capsys)
    assert rc == 0 and "up to date" in err


def test_changed_crop_or_checkpoint_invalidates_cache(staged, tiny_corpus, frontends, tmp_path, capsys, one_thread):
    import torch

    from asv.checkpoint import save_asv_state
    from cm.checkpoint import save_cm_state
    from pipeline.stages.frontends import build_asv, build_cm

    out = copy_run(staged.out, tmp_path / "run")
    cm_ckpt, asv_ckpt = tmp_path / "cm.pt", tmp_path / "asv.pt"
    shutil.copy(frontends.cm, cm_ckpt)
    shutil.copy(frontends.asv, asv_ckpt)
    args = sasv_args(tiny_corpus, frontends, out, "splits=[dev]", f"cm.checkpoint={cm_ckpt}",
                     f"asv.checkpoint={asv_ckpt}")
    cm_path, asv_path = out / "embeddings" / "cm_dev.npz", out / "embeddings" / "asv_dev.npz"
    original = load_npz(cm_path)["scores"]
    rc, err = call(save_cm_score.main, args, capsys)          # same checkpoint bytes at another path: still current
    assert rc == 0 and "up to date" in err

    rc, err = call(save_cm_score.main, [*args, "cm.crop.samples=4000"], capsys)        # crop changed
    assert rc == 0 and "up to date" not in err
    assert not np.allclose(load_npz(cm_path)["scores"], original)
    rc, err = call(save_cm_score.main, [*args, "cm.crop.samples=4000"], capsys)
    assert rc == 0 and "up to date" in err                                              # and cached again

    # a retrained checkpoint (same architecture, different weights) at the same path invalidates the cache
    cm_model = build_cm({"arch": "AASIST-L", "checkpoint": str(cm_ckpt), "model": _model(CM_MODEL)})
    asv_model = build_asv({"arch": "ResNetSE34L", "checkpoint": str(asv_ckpt), "model": _model(ASV_MODEL)})
    with torch.no_grad():
        for model in (cm_model, asv_model):
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    save_cm_state(cm_ckpt, cm_model)
    save_asv_state(asv_ckpt, asv_model)
    scores_4000 = load_npz(cm_path)["scores"]
    rc, err = call(save_cm_score.main, [*args, "cm.crop.samples=4000"], capsys)
    assert rc == 0 and "up to date" not in err
    assert not np.allclose(load_npz(cm_path)["scores"], scores_4000)
    asv_before = load_npz(asv_path)["embeddings"]
    rc, err = call(save_asv_embeddings.main, args, capsys)
    assert rc == 0 and "up to date" not in err
    assert not np.allclose(load_npz(asv_path)["embeddings"], asv_before)
    rc, err = call(save_asv_embeddings.main, [*args, "asv.crop={policy: first, samples: 8000}"], capsys)
    assert rc == 0 and "up to date" not in err                                          # ASV crop changed


def _model(text: str) -> dict:
    import yaml
    return yaml.safe_load(text)


@pytest.mark.parametrize("backend", SCORE_BACKENDS)
def test_save_sasv_score_backends(backend, staged, tiny_corpus, frontends, tmp_path, capsys):
    out = tmp_path / backend
    args = sasv_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}", f"backend.name={backend}")
    # stage 3 needs the per-trial scores only through the embeddings: the shared cache is enough
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 0, err
    results = assert_results(out / "results.json")
    assert json.loads((out / "results.json").read_text())["backend"] == backend
    db = LADatabase(tiny_corpus.la)
    for split in EVAL_SPLITS:
        assert_sasv_file(out / "scores" / f"sasv_{split}.txt", db, split)
    state = json.loads((out / "backend_state.json").read_text())
    assert state.get("backend") == backend
    # evaluate.py on the written score files reproduces results.json
    s = staged.out / "scores"
    rc, _ = call(evaluate.main, ["--sasv", str(out / "scores" / "sasv_dev.txt"), "--asv", str(s / "asv_dev.txt"),
                                 "--cm", str(s / "cm_trials_dev.txt"), "--json", str(tmp_path / "x.json")], capsys)
    assert rc in (0, None)
    evaluated = json.loads((tmp_path / "x.json").read_text())
    for key in SASV_METRICS:
        assert evaluated[key] == pytest.approx(results["dev"][key], rel=1e-6, abs=1e-9), key
    if backend == "asv_only":   # the ASV-only SASV score is the ASV score itself
        np.testing.assert_allclose(read_sasv_scores(out / "scores" / "sasv_dev.txt").score,
                                   read_sasv_scores(s / "asv_dev.txt").score, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# main.py task sasv
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend,scheme", [("baseline2", "baseline2"), ("joint_oc", "2class"), ("joint_oc", "4class")])
def test_main_frozen_trains_backend(backend, scheme, staged, tiny_corpus, frontends, tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    args = sasv_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}", "mode=frozen",
                     f"backend.name={backend}", f"sampling.scheme={scheme}")
    rc, err = call_main_py(args, capsys)
    assert rc == 0, err
    # 3 ASV and 3 CM embedding files and the dev/eval speaker models
    assert err.count("is up to date, skipped") == 8, "frozen mode should reuse the cached embeddings"
    results = assert_results(out / "results.json")
    assert results["backend"] == backend
    assert (out / "backend.pt").stat().st_size > 0
    log = out / "backend_train" / "epoch_log.csv"
    rows = csv_rows(log)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(math.isfinite(float(r["dev_sasv_eer"])) for r in rows)
    if backend == "baseline2":
        # --resume after a finished run: nothing retrained, logs not duplicated, same back-end
        backend_bytes, log_bytes = (out / "backend.pt").read_bytes(), log.read_bytes()
        rc, err = call_main_py([*args, "--resume"], capsys)
        assert rc == 0, err
        assert "[engine] epoch" not in err and "from scratch" not in err
        assert log.read_bytes() == log_bytes
        assert (out / "backend.pt").read_bytes() == backend_bytes
        # the trained back-end also scores through stage 3 from its checkpoint
        rc, err = call(save_sasv_score.main, [*args, f"backend.checkpoint={out / 'backend.pt'}",
                                              f"output_dir={tmp_path / 'stage3'}"], capsys)
        assert rc == 0, err
        assert_same_numbers(json.loads((tmp_path / "stage3" / "results.json").read_text())["dev"], results["dev"])


def test_main_frozen_holds_one_splits_inputs_at_a_time(staged, tiny_corpus, frontends, tmp_path, capsys, one_thread,
                                                       monkeypatch):
    """The dev inputs training selected on are gone before the final scoring, which scores an embedding back-end one
    split at a time: eval's tables are read after dev's are released. Otherwise the process holds dev twice, then
    dev beside eval, at its peak (~0.4 GB each at the ASVspoof 5 counts)."""
    import gc
    import weakref

    from pipeline.recipes import sasv_task
    from pipeline.stages import sasv as sasv_stage_module

    made, alive_before = [], []
    real_training_inputs, real_inputs = sasv_task.trial_inputs, sasv_stage_module.trial_inputs

    def tracked(real):
        def inputs(cfg, split):
            gc.collect()
            alive_before.append((split, sum(ref() is not None for ref in made)))
            out = real(cfg, split)
            made.append(weakref.ref(out))
            return out
        return inputs

    monkeypatch.setattr(sasv_task, "trial_inputs", tracked(real_training_inputs))
    monkeypatch.setattr(sasv_stage_module, "trial_inputs", tracked(real_inputs))
    args = sasv_args(tiny_corpus, frontends, tmp_path / "run", f"embeddings_dir={staged.embeddings}", "mode=frozen",
                     "backend.name=joint_oc", "sampling.scheme=4class", "train.epochs=1")
    rc, err = call_main_py(args, capsys)
    assert rc == 0, err
    assert alive_before == [("dev", 0), ("dev", 0), ("eval", 0)]


def test_main_joint_mode(staged, tiny_corpus, frontends, tmp_path, capsys, one_thread):
    out = tmp_path / "joint"
    shared = copy_run(staged.embeddings, tmp_path / "shared_embeddings")
    shared_before = tree(shared)
    args = sasv_args(tiny_corpus, frontends, out, f"embeddings_dir={shared}", "mode=joint", "backend.name=joint_oc",
                     "sampling.scheme=4class", "sampling.trials_per_epoch=32", "train.epochs=1",
                     "joint.aux_asv_weight=0.5", "joint.aux_cm_weight=0.5")
    rc, err = call_main_py(args, capsys)
    assert rc == 0, err
    assert_results(out / "results.json")
    for name in ("backend.pt", "asv_finetuned.pt", "cm_finetuned.pt"):
        assert (out / name).stat().st_size > 0, name
    log = out / "joint_train" / "epoch_log.csv"
    rows = csv_rows(log)
    assert [r["epoch"] for r in rows] == ["1"]
    assert math.isfinite(float(rows[0]["dev_sasv_eer"]))
    train_log = csv_rows(out / "joint_train" / "train_log.csv")
    assert train_log and {"backend_loss", "aux_cm_loss", "aux_asv_loss"} <= {k.split("/")[-1].removeprefix("train_")
                                                                              for k in train_log[0]}
    # the fine-tuned front-ends differ from the starting ones and load back into their architectures
    from pipeline.stages.frontends import build_asv, build_cm
    tuned_asv = build_asv({"arch": "ResNetSE34L", "checkpoint": str(out / "asv_finetuned.pt"),
                           "model": _model(ASV_MODEL)})
    start_asv = build_asv({"arch": "ResNetSE34L", "checkpoint": str(frontends.asv), "model": _model(ASV_MODEL)})
    assert any(not np.allclose(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(tuned_asv.parameters(), start_asv.parameters(), strict=True))
    build_cm({"arch": "AASIST-L", "checkpoint": str(out / "cm_finetuned.pt"), "model": _model(CM_MODEL)})
    # the fine-tuned embeddings belong to this experiment, not to the shared cache of the frozen front-ends
    assert tree(shared) == shared_before
    assert ({"asv_dev.npz", "asv_eval.npz", "cm_dev.npz", "cm_eval.npz"}
            <= {p.name for p in (out / "embeddings").iterdir()})
    # --resume after the run finished: no retraining, no duplicated log rows
    log_bytes = log.read_bytes()
    rc, err = call_main_py([*args, "--resume"], capsys)
    assert rc == 0, err
    assert "[engine] epoch" not in err
    assert log.read_bytes() == log_bytes
    assert_results(out / "results.json")
    assert json.loads((out / "results.json").read_text())["best_epoch"] == 1
    # a joint run can start from a trained back-end: with both learning rates 0 its weights stay those. With
    # select_initial the starting point is epoch 0 of the log and competes on dev; results.json says which won
    second = tmp_path / "joint_from_backend"
    rc, err = call_main_py([*args, f"output_dir={second}", f"backend.checkpoint={out / 'backend.pt'}",
                            "joint.frontend_lr=0.0", "train.optimizer={name: adam, lr: 0.0}",
                            "train.select_initial=true"], capsys)
    assert rc == 0, err
    before, end = (torch.load(d / "backend.pt", weights_only=True)["state"] for d in (out, second))
    learnt = [k for k in before if "running_" not in k and "num_batches" not in k]
    assert learnt and all(torch.equal(before[k], end[k]) for k in learnt)
    rows = csv_rows(second / "joint_train" / "epoch_log.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[0]["train_loss"] == ""
    dev = [float(r["dev_sasv_eer"]) for r in rows]
    results = json.loads((second / "results.json").read_text())
    assert results["best_epoch"] == (0 if dev[0] <= dev[1] else 1) and results["selected_value"] == min(dev)


def test_enrolment_concat_uses_enr_audio(staged, tiny_corpus, frontends, tmp_path, capsys, one_thread):
    db = LADatabase(tiny_corpus.la)
    shared = copy_run(staged.embeddings, tmp_path / "embeddings")
    out = tmp_path / "concat"
    args = sasv_args(tiny_corpus, frontends, out, f"embeddings_dir={shared}", "enrolment=concat", "splits=[dev, eval]")
    # enr_audio pointing nowhere fails before any compute, naming the folder
    rc, err = call(save_asv_embeddings.main, [*args, f"enr_audio={tmp_path / 'nowhere'}"], capsys)
    assert rc == 2 and "nowhere" in err and err.strip().count("\n") == 0
    rc, err = call_main_py([*args, f"enr_audio={tiny_corpus.enr_audio}"], capsys)
    assert rc == 0, err
    for split in EVAL_SPLITS:
        models = load_npz(shared / f"asv_enrol_concat_{split}.npz")
        assert sorted(models["ids"].tolist()) == sorted(db.enrolment_concat(split))
        lists = load_npz(shared / f"asv_enrol_{split}.npz")       # the lists form is kept beside it
        assert not np.allclose(models["embeddings"], lists["embeddings"][[lists["ids"].tolist().index(s)
                                                                          for s in models["ids"].tolist()]])
        assert_sasv_file(out / "scores" / f"asv_{split}.txt", db, split)
    assert_results(out / "results.json")
    assert "asv dev: " in err and "up to date" in err   # test embeddings reused from the lists run


def _tiny_training(task: str, tiny_corpus, out: Path) -> tuple[Path, list[str]]:
    """The quickstart config of task asv or cm shrunk to one epoch of a tiny model on the tiny corpus."""
    conf, data, model = {"asv": ("quickstart_asv.conf", f"data.voxceleb={tiny_corpus.voxceleb}",
                                 "asv.model={C: 32, embedding_dim: 16}"),
                         "cm": ("quickstart_cm.conf", f"database={tiny_corpus.la}",
                                "cm.model={channels: [[8, 8, 8, 8], [8, 8, 8, 8]]}")}[task]
    return Path("configs") / conf, [data, model, f"output_dir={out}", "train.epochs=1", "train.batch_size=4",
                                    "train.progress=false"]


@pytest.mark.parametrize("task", ["asv", "cm"])
def test_training_from_scratch_is_reproducible_whatever_the_global_rng_state(task, tiny_corpus, tmp_path):
    """The same config twice in one process gives the same weights: the task seeds the initial weights too,
    not only what fit() does once it starts."""
    from common.config import load_config
    from pipeline.recipes import asv_task, cm_task
    module = asv_task if task == "asv" else cm_task
    states = []
    for run in range(2):
        torch.rand(run + 1)  # a different global RNG state before each run
        conf, overrides = _tiny_training(task, tiny_corpus, tmp_path / str(run))
        module.run(load_config(conf, overrides, module.SCHEMA))
        states.append(torch.load(tmp_path / str(run) / f"{task}_model.pt", weights_only=True)["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("task", ["asv", "cm"])
def test_main_py_checks_the_inputs_once(task, tiny_corpus, tmp_path, monkeypatch, capsys, one_thread):
    """main.py hands what check(cfg) returned to run(checked=...): the training list is read and its audio
    stat'ed once per run, not again inside run()."""
    from pipeline.recipes import asv_task, cm_task
    module = asv_task if task == "asv" else cm_task
    check, calls = module.check, []
    monkeypatch.setattr(module, "check", lambda cfg: calls.append(cfg) or check(cfg))
    conf, overrides = _tiny_training(task, tiny_corpus, tmp_path / task)
    rc, err = call_main_py(["--config", str(conf), *overrides], capsys)
    assert rc == 0, err
    assert (tmp_path / task / f"{task}_model.pt").is_file()
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------
# The selected epoch's dev scores are computed once (pipeline.stages.cache.ScoreMemo)
# ---------------------------------------------------------------------------------------------
def test_weights_fingerprint_sees_every_weight_and_buffer():
    from pipeline.stages.cache import weights_fingerprint
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    base = weights_fingerprint(net)
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    assert weights_fingerprint(twin) != base
    twin.load_state_dict(net.state_dict())
    twin.eval().requires_grad_(False)        # mode and gradient flags are not weights
    assert weights_fingerprint(twin) == base
    changes = [(net[0].weight, (1, 2)), (net[0].bias, (3,)), (net[1].weight, (0,)),
               (net[1].running_mean, (2,)), (net[1].running_var, (1,)), (net[1].num_batches_tracked, ())]
    with torch.no_grad():
        for tensor, index in changes:
            old = tensor[index].clone()
            if tensor.is_floating_point():
                tensor[index] = torch.nextafter(old, torch.tensor(math.inf))   # one ulp
            else:
                tensor[index] += 1
            assert weights_fingerprint(net) != base, f"a change of {tuple(tensor.shape)}{index} is not seen"
            tensor[index] = old
            assert weights_fingerprint(net) == base
    assert weights_fingerprint(net.double()) != base                       # same values, another dtype


def test_score_memo_recomputes_for_other_weights():
    from pipeline.stages.cache import ScoreMemo
    torch.manual_seed(0)
    net, memo, calls = torch.nn.Linear(2, 2), ScoreMemo(), []

    def score(split):
        calls.append(split)
        return float(net.weight.detach().sum())

    first = memo.get_or_compute("dev", net, lambda: score("dev"))
    assert memo.get_or_compute("dev", net, lambda: score("dev")) == first and calls == ["dev"]
    memo.get_or_compute("eval", net, lambda: score("eval"))                # another key
    assert calls == ["dev", "eval"]
    old = net.weight.detach().clone()
    with torch.no_grad():
        net.weight[0, 0] += 1
    assert memo.get_or_compute("dev", net, lambda: score("dev")) != first and calls == ["dev", "eval", "dev"]
    with torch.no_grad():
        net.weight.copy_(old)                                              # back to the first weights
    assert memo.get_or_compute("dev", net, lambda: score("dev")) == first and len(calls) == 3


def test_cm_task_scores_each_evaluated_epochs_dev_once(tiny_corpus, tmp_path, monkeypatch):
    """dev is scored once per evaluated epoch: the final scoring of the selected epoch reuses its scores
    (CMTask.memo), and results.json holds what a fresh scoring of best.pt gives."""
    import cm
    from cm.losses import build_loss
    from common.config import load_config
    from engine import load_model_weights
    from pipeline.recipes import cm_task
    from pipeline.stages.experiment import resolve_device

    cm_eer, calls = cm_task.cm_eer, []
    monkeypatch.setattr(cm_task, "cm_eer", lambda net, cfg, db, split, device:
                        calls.append(split) or cm_eer(net, cfg, db, split, device))
    out = tmp_path / "cm"
    conf, overrides = _tiny_training("cm", tiny_corpus, out)
    cfg = load_config(conf, [*overrides, "train.epochs=2", "train.eval_every=1"], cm_task.SCHEMA)
    results = cm_task.run(cfg)
    assert calls == ["dev", "dev", "eval"], f"best epoch {results['best_epoch']}: scored {calls}"

    model = cm.build_model(cfg["cm"]["arch"], **cfg["cm"]["model"])
    net = cm_task.CMNet(model, build_loss(cfg["loss"]["name"], model.embedding_dim, **cfg["loss"]["options"]))
    load_model_weights(net, out / "best.pt")
    device = resolve_device(cfg["train"]["device"])
    net.to(device).eval()
    with torch.inference_mode():
        eer, entries, scores = cm_eer(net, cfg, LADatabase(cfg["database"]), "dev", device)
    written = json.loads((out / "results.json").read_text())
    assert written["dev_cm_eer"] == results["dev_cm_eer"] == eer
    breakdown = cm_breakdown([e.key for e in entries], scores, Conditions.of_entries(entries))
    assert written["dev_cm_breakdown"] == json.loads(json.dumps(breakdown))
    assert written["dev_cm_min_dcf"] == breakdown["pooled"]["min_dcf"] and breakdown["pooled"]["eer"] == eer
    bonafide = scores[[e.is_bonafide for e in entries]]
    assert written["dev_cm_eer_per_attack"] == {     # each attack's spoofs against all bona fide
        a: 100 * det_eer(bonafide, scores[[e.system == a for e in entries]]).eer
        for a in sorted({e.system for e in entries if not e.is_bonafide})}
