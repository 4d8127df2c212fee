"""Results that cannot lie: caches reused only when everything that made them is unchanged, downstream stages that
refuse outputs of other front-ends, one writer per output folder, config.yaml consistent with results.json, no
finished run replaced silently, and each user mistake as one line (exit 2) that writes nothing."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import evaluate
import main as main_py
import save_asv_embeddings
import save_cm_score
import save_sasv_score
from common.cli import run_main
from data.asvspoof import LADatabase
from data.score_files import read_cm_scores, read_sasv_scores
from tests.pipeline_fixtures import (
    ROOT,
    assert_one_line_error,
    assert_same_numbers,
    call,
    copy_corpus,
    files_under,
    finish,
    frontends,
    run_script,
    sasv_args,
    staged,
    start,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name


def main_py_main(argv):
    return run_main(main_py.main, argv)


@pytest.fixture
def corpus(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus to change."""
    return copy_corpus(tiny_corpus, tmp_path / "corpus")


def _bona_fide_trial_utt(db: LADatabase, split: str = "dev") -> str:
    targets = {t.utt for t in db.sasv_trials(split) if t.key == "target"}
    return next(e.utt for e in db.cm_entries(split) if e.utt in targets)


# ---------------------------------------------------------------------------------------------
# 1. Caches reused only when everything that made them is the same
# ---------------------------------------------------------------------------------------------
def test_skipped_audio_is_recomputed_once_fixed_or_when_skipping_is_off(corpus, frontends, tmp_path, capsys,
                                                                        one_thread):
    db = LADatabase(corpus.la)
    utt = _bona_fide_trial_utt(db)
    good = db.audio("dev", utt).read_bytes()
    db.audio("dev", utt).write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "out"
    skip = sasv_args(corpus, frontends, out, "splits=[dev]", "skip_bad_audio=true")
    for stage in (save_asv_embeddings, save_cm_score):
        rc, err = call(stage.main, skip, capsys)
        assert rc == 0 and "skipped 1 unreadable" in err, err
    # skipping off, file still broken: the cache made with skipping is not reused, the file is named
    no_skip = sasv_args(corpus, frontends, out, "splits=[dev]")
    rc, err = call(save_cm_score.main, no_skip, capsys)
    assert rc == 2 and "skip_bad_audio is now off" in err and f"{utt}.flac" in err, err
    # the file fixed: recomputed because it changed, and now complete
    db.audio("dev", utt).write_bytes(good)
    rc, err = call(save_cm_score.main, no_skip, capsys)
    assert rc == 0 and "recomputing" in err and "audio file(s) changed" in err, err
    assert utt in read_cm_scores(out / "scores" / "cm_dev.txt").utt
    rc, err = call(save_asv_embeddings.main, no_skip, capsys)
    assert rc == 0 and "trials skipped" not in err, err
    assert utt in read_sasv_scores(out / "scores" / "asv_dev.txt").utt
    assert len(read_sasv_scores(out / "scores" / "cm_trials_dev.txt")) == len(db.sasv_trials("dev"))


def test_added_utterance_and_trial_are_scored(corpus, frontends, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    args = sasv_args(corpus, frontends, out, "splits=[dev, eval]")
    for stage in (save_asv_embeddings, save_cm_score, save_sasv_score):
        assert call(stage.main, args, capsys)[0] == 0
    db = LADatabase(corpus.la)
    trial = next(t for t in db.sasv_trials("dev") if t.key == "target")
    new = "LA_D_9000001"
    db.audio("dev", new).write_bytes(db.audio("dev", trial.utt).read_bytes())
    with open(db.cm_protocol_path("dev"), "a") as f:
        f.write(f"{trial.speaker} {new} - - bonafide\n")
    with open(db.sasv_trials_path("dev"), "a") as f:
        f.write(f"{trial.speaker} {new} bonafide target\n")
    rc, err = call(save_asv_embeddings.main, args, capsys)
    assert rc == 0 and "list of items changed: 1 added" in err and "asv eval:" in err and "up to date" in err, err
    rc, err = call(save_cm_score.main, args, capsys)
    assert rc == 0 and "list of items changed: 1 added" in err, err
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 0, err
    assert new in read_sasv_scores(out / "scores" / "sasv_dev.txt").utt
    assert len(read_sasv_scores(out / "scores" / "sasv_dev.txt")) == len(LADatabase(corpus.la).sasv_trials("dev"))


def test_another_database_in_the_same_output_dir_is_recomputed(staged, corpus, frontends, tmp_path, capsys,
                                                                one_thread):
    out = tmp_path / "out"
    import shutil
    shutil.copytree(staged.out, out)
    args = sasv_args(corpus, frontends, out)          # the same ids and audio, in another folder
    rc, err = call(save_cm_score.main, args, capsys)
    assert rc == 0 and "read from another place" in err and "Traceback" not in err, err
    rc, err = call(save_sasv_score.main, args, capsys)   # the ASV cache still names the old folder
    assert_one_line_error(err, "asv_", "read from another place", "save_asv_embeddings.py")
    assert rc == 2


def test_sasv_stage_and_verify_refuse_scores_of_another_checkpoint(staged, tiny_corpus, frontends, tmp_path, capsys,
                                                                   one_thread):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(staged.out, out)
    other = tmp_path / "other_cm.pt"
    other.write_bytes(frontends.cm.read_bytes() + b"")     # same weights, another file: identity is the content
    args = sasv_args(tiny_corpus, frontends, out, f"cm.checkpoint={other}")
    assert call(save_sasv_score.main, args, capsys)[0] == 0   # same content: the cache stands
    import torch
    state = torch.load(frontends.cm, weights_only=True)
    first = next(k for k, v in state["model"].items() if v.dtype.is_floating_point)
    state["model"][first] = state["model"][first] + 0.01
    torch.save(state, other)                                 # retrained: another content
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, "cm_", "checkpoint_sha256 changed", "save_cm_score.py")
    before = (out / "results.json").read_text()
    from verify import main as verify_main
    db = LADatabase(tiny_corpus.la)
    spk, utts = next(iter(db.enrolment("dev").items()))
    rc, err = call(lambda a: run_main(verify_main, a),
                   [*args, "--enroll", str(db.audio("dev", utts[0])), "--test", str(db.audio("dev", utts[-1]))], capsys)
    assert rc == 2
    assert_one_line_error(err, "another cm front-end", "checkpoint_sha256")
    assert (out / "results.json").read_text() == before


# ---------------------------------------------------------------------------------------------
# 2. One folder, one writer
# ---------------------------------------------------------------------------------------------
HOLD = ("import sys; sys.path.insert(0, {root!r}); from common.locking import hold_folders\n"
        "with hold_folders([('output_dir', {folder!r})]):\n"
        "    print('held', flush=True); sys.stdin.read()\n")      # holds the folder until stdin closes


def _hold(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), folder=str(folder))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_on_a_folder_stops_or_waits(staged, tiny_corpus, frontends, tmp_path):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(staged.out, out)
    holder = _hold(out)
    try:
        args = sasv_args(tiny_corpus, frontends, out)
        before = (out / "config.yaml").read_text()
        result = run_script("save_sasv_score.py", args)
        assert result.returncode == 2
        assert_one_line_error(result.stderr, f"output_dir {out}", "in use by another run", f"pid {holder.pid}",
                              "--wait")
        assert (out / "config.yaml").read_text() == before
        waiting = start("save_sasv_score.py", [*args, "--wait"])
        line = waiting.stderr.readline()                 # blocks until the run reports that it waits
        assert line.startswith(f"waiting for output_dir {out}: in use by pid {holder.pid}"), line
        holder.stdin.close()                             # the first run finishes: the waiting one proceeds
        result = finish(waiting)
        assert result.returncode == 0, result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_released_by_a_killed_holder(tmp_path):
    from common.locking import hold_folders
    holder = _hold(tmp_path / "out")
    holder.kill()
    holder.wait()
    with hold_folders([("output_dir", tmp_path / "out")]):   # SIGKILL released it: no stale lock to clean up
        pass


def test_failed_validation_leaves_config_yaml_alone(staged, tiny_corpus, frontends, tmp_path, capsys):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(staged.out, out)
    before = {p: p.read_bytes() for p in files_under(out)}
    bad = sasv_args(tiny_corpus, frontends, out, f"asv.checkpoint={tmp_path / 'nope.pt'}")
    rc, err = call(save_sasv_score.main, bad, capsys)
    assert rc == 2
    assert_one_line_error(err, "asv.checkpoint", "nope.pt", "does not exist")
    assert {p: p.read_bytes() for p in files_under(out)} == before


def test_results_json_of_another_config_is_moved_aside(staged, tiny_corpus, frontends, tmp_path, capsys):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(staged.out, out)
    old = json.loads((out / "results.json").read_text())
    args = sasv_args(tiny_corpus, frontends, out, "backend.name=product_rule")
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 0 and "moved to results.previous.json" in err, err
    assert json.loads((out / "results.previous.json").read_text()) == old
    new = json.loads((out / "results.json").read_text())
    import yaml
    assert new["provenance"]["config"] == yaml.safe_load((out / "config.yaml").read_text())
    assert new["backend"] == "product_rule"


def _frozen_args(corpus, frontends, out, *extra):
    return sasv_args(corpus, frontends, out, "backend.name=baseline2", "sampling.scheme=baseline2", "train.epochs=1",
                     "backend.options={hidden: [8]}", *extra)


def test_main_refuses_to_replace_a_finished_run_and_overwrite_moves_it(staged, tiny_corpus, frontends, tmp_path, capsys,
                                                                       one_thread):
    out = tmp_path / "out"
    args = _frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}")
    rc, err = call(main_py_main, args, capsys)
    assert rc == 0, err
    finished = {p: p.read_bytes() for p in files_under(out)}
    rc, err = call(main_py_main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, "last.pt", "already holds a trained run", "--resume", "--overwrite")
    assert {p: p.read_bytes() for p in files_under(out)} == finished
    rc, err = call(main_py_main, [*args, "--overwrite"], capsys)
    assert rc == 0 and "--overwrite: the previous run" in err, err
    replaced = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert len(replaced) == 1
    for path, data in finished.items():
        assert (replaced[0] / path.relative_to(out)).read_bytes() == data
    assert (out / "backend_train" / "last.pt").exists() and (out / "results.json").exists()


def test_stale_checkpoint_temporaries_are_removed_on_resume(staged, tiny_corpus, frontends, tmp_path, capsys,
                                                            one_thread):
    out = tmp_path / "out"
    args = _frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}")
    assert call(main_py_main, args, capsys)[0] == 0
    stale = out / "backend_train" / ".last.pt.k2j4h1x9.tmp"    # what a SIGKILL during torch.save leaves
    stale.write_bytes(b"PK partial")
    rc, err = call(main_py_main, [*args, "--resume", "train.epochs=2"], capsys)
    assert rc == 0, err
    assert not stale.exists() and "temporary file(s) left by an interrupted run" in err


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_respect_the_umask(tmp_path, umask):
    import common.io as cio
    old = os.umask(umask)
    cio._MODE = None          # the mode is read once per process: a test changing the umask re-reads it
    try:
        cio.write_lines(tmp_path / "a.txt", ["x"])
        cio.save_arrays(tmp_path / "a.npz", x=np.zeros(3))
        for name in ("a.txt", "a.npz"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)
        cio._MODE = None


# ---------------------------------------------------------------------------------------------
# 3. Duplicates: one rule everywhere
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["cm", "trials"])
def test_duplicated_protocol_line_is_an_error_naming_both_lines(corpus, frontends, tmp_path, capsys, which):
    db = LADatabase(corpus.la)
    path = db.cm_protocol_path("dev") if which == "cm" else db.sasv_trials_path("dev")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[3]]) + "\n")
    out = tmp_path / "out"
    rc, err = call(save_cm_score.main, sasv_args(corpus, frontends, out, "splits=[dev]"), capsys)
    assert rc == 2
    assert_one_line_error(err, f"{path}:{len(lines) + 1}", "listed twice", "first on line 4")
    assert files_under(out) == []


def test_evaluate_rejects_duplicated_trials_like_the_stages(tmp_path, capsys):
    path = tmp_path / "s.txt"
    path.write_text("A u1 bonafide target 1.0\nA u2 bonafide nontarget 0.0\nA u1 bonafide target 1.0\n")
    rc, err = call(lambda a: run_main(evaluate.main, a), ["--sasv", str(path)], capsys)
    assert rc == 2
    assert_one_line_error(err, f"{path}:3: trial 'A u1' listed twice (first on line 1)")


# ---------------------------------------------------------------------------------------------
# 4. One line instead of a traceback
# ---------------------------------------------------------------------------------------------
def test_trial_of_a_speaker_without_enrolment(corpus, frontends, tmp_path, capsys):
    db = LADatabase(corpus.la)
    utt = db.sasv_trials("dev")[0].utt
    with open(db.sasv_trials_path("dev"), "a") as f:
        f.write(f"LA_9999 {utt} bonafide nontarget\n")
    out = tmp_path / "out"
    rc, err = call(save_asv_embeddings.main, sasv_args(corpus, frontends, out, "splits=[dev]"), capsys)
    assert rc == 2
    assert_one_line_error(err, "LA_9999", "no enrolment")
    assert files_under(out) == []


def test_byte_order_mark_is_tolerated(corpus, frontends, tmp_path, capsys, one_thread):
    db = LADatabase(corpus.la)
    for path in (db.sasv_trials_path("dev"), db.cm_protocol_path("dev"), db.enrolment_path("dev", "female")):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert db.sasv_trials("dev")[0].speaker.startswith("LA_")
    out = tmp_path / "out"
    rc, err = call(save_cm_score.main, sasv_args(corpus, frontends, out, "splits=[dev]"), capsys)
    assert rc == 0, err


def test_wrong_column_count_and_utf16_protocols(corpus, frontends, tmp_path, capsys):
    db = LADatabase(corpus.la)
    trials = db.sasv_trials_path("dev")
    text = trials.read_text()
    out = tmp_path / "out"
    trials.write_text(text + "LA_0001 LA_D_1 bonafide\n")
    rc, err = call(save_cm_score.main, sasv_args(corpus, frontends, out, "splits=[dev]"), capsys)
    assert rc == 2
    assert_one_line_error(err, f"{trials}:{len(text.splitlines()) + 1}", "expected 4 columns")
    trials.write_bytes(text.encode("utf-16"))
    rc, err = call(save_cm_score.main, sasv_args(corpus, frontends, out, "splits=[dev]"), capsys)
    assert rc == 2
    assert_one_line_error(err, str(trials), "UTF-16")
    assert files_under(out) == []


def test_missing_checkpoint_and_the_placeholder_of_baseline1(tiny_corpus, frontends, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = call(save_cm_score.main, ["--config", "configs/sasv_baseline1.conf", f"database={tiny_corpus.la}",
                                        f"output_dir={out}"], capsys)
    assert rc == 2
    assert_one_line_error(err, "checkpoint", "does not exist")
    assert not out.exists()


def test_paths_of_the_wrong_kind(tiny_corpus, frontends, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    rc, err = call(save_cm_score.main, ["--config", str(tmp_path)], capsys)
    assert rc == 2
    assert_one_line_error(err, str(tmp_path), "is a folder")
    for key in ("output_dir", "embeddings_dir"):
        rc, err = call(save_cm_score.main, sasv_args(tiny_corpus, frontends, tmp_path / "o", f"{key}={a_file}"), capsys)
        assert rc == 2
        assert_one_line_error(err, key, "is a file, not a folder")
    scores = tmp_path / "s.txt"
    scores.write_text("A u1 bonafide target 1.0\nA u2 bonafide nontarget 0.0\nA u3 A07 spoof -1\n")
    rc, err = call(lambda a: run_main(evaluate.main, a), ["--sasv", str(scores), "--json", str(tmp_path)], capsys)
    assert rc == 2
    assert_one_line_error(err, "--json", "is a folder")


def test_truncated_last_checkpoint_on_resume(staged, tiny_corpus, frontends, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    args = _frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}")
    assert call(main_py_main, args, capsys)[0] == 0
    last = out / "backend_train" / "last.pt"
    last.write_bytes(last.read_bytes()[:200])
    rc, err = call(main_py_main, [*args, "--resume", "train.epochs=2"], capsys)
    assert rc == 2
    assert_one_line_error(err, "last.pt", "not a loadable checkpoint")


def test_unreadable_training_file_with_workers_is_one_line(corpus, tmp_path, capsys):
    db = LADatabase(corpus.la)
    bad = next(e.utt for e in db.cm_entries("train") if e.is_bonafide)
    db.audio("train", bad).write_bytes(b"not audio" * 40)
    rc, err = call(main_py_main, ["--config", "configs/quickstart_cm.conf", f"database={corpus.la}",
                                  f"output_dir={tmp_path / 'cm'}", "cm.arch=LCNN", "cm.model={channels: [4, 4, 4, 4]}",
                                  "data.train_samples=4000", "train.epochs=1", "train.batch_size=8",
                                  "train.num_workers=1", "train.progress=false"], capsys)
    assert rc == 2
    assert_one_line_error(err, f"{bad}.flac")


def test_yaml_error_gives_line_and_column(tmp_path, capsys):
    conf = tmp_path / "bad.conf"
    conf.write_text("database: x\noutput_dir: y\nasv: {arch: ECAPA-TDNN\n  model: [1, 2\n")
    rc, err = call(save_cm_score.main, ["--config", str(conf)], capsys)
    assert rc == 2
    line = assert_one_line_error(err, f"{conf}:")
    assert line.split(f"{conf}:")[1].split(":")[0].isdigit() and "not valid YAML" in line


# ---------------------------------------------------------------------------------------------
# 5. Short audio, missing weights, partial metrics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage, samples, overrides", [
    (save_cm_score, 800, ["cm.arch=LCNN", "cm.model={channels: [4, 4, 4, 4]}", "cm.crop.policy=full",
                          "allow_random_weights=true", "cm.checkpoint=null"]),
    (save_asv_embeddings, 300, []),
], ids=["lcnn-0.05s", "resnet-300-samples"])
def test_audio_shorter_than_the_model_needs_is_named_and_skippable(stage, samples, overrides, corpus, frontends,
                                                                   tmp_path, capsys, one_thread):
    db = LADatabase(corpus.la)
    utt = _bona_fide_trial_utt(db)
    sf.write(db.audio("dev", utt), np.full(samples, 0.1, dtype=np.float32), 16000)
    out = tmp_path / "out"
    args = sasv_args(corpus, frontends, out, "splits=[dev]", *overrides)
    rc, err = call(stage.main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, f"{utt}.flac", f"{samples} samples", "needs at least")
    rc, err = call(stage.main, [*args, "skip_bad_audio=true"], capsys)
    assert rc == 0 and "skipped 1 unreadable" in err and utt in err, err


def test_scoring_with_random_weights_needs_to_be_asked_for(tiny_corpus, frontends, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    args = sasv_args(tiny_corpus, frontends, out, "splits=[dev]", "cm.checkpoint=null")
    rc, err = call(save_cm_score.main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, "cm.checkpoint is not set", "random weights", "allow_random_weights")
    assert not out.exists()
    rc, err = call(save_cm_score.main, [*args, "allow_random_weights=true"], capsys)
    assert rc == 0, err


def test_evaluate_without_spoof_trials_computes_what_it_can(tmp_path, capsys):
    path = tmp_path / "s.txt"
    rng = np.random.default_rng(0)
    path.write_text("".join(f"A t{i} bonafide target {rng.normal(1):.4f}\n" for i in range(20))
                    + "".join(f"B n{i} bonafide nontarget {rng.normal(-1):.4f}\n" for i in range(20)))
    out = tmp_path / "m.json"
    rc, err = call(lambda a: run_main(evaluate.main, a), ["--sasv", str(path), "--json", str(out)], capsys)
    assert rc == 0, err
    got = json.loads(out.read_text())
    assert set(got) == {"sasv_eer", "sv_eer"} and got["sasv_eer"] == got["sv_eer"]
    assert "has no spoof trials: not computed: spf_eer, min_a_dcf" in err
    only_targets = tmp_path / "t.txt"
    only_targets.write_text("A t1 bonafide target 1.0\nA t2 bonafide target 2.0\n")
    rc, err = call(lambda a: run_main(evaluate.main, a), ["--sasv", str(only_targets)], capsys)
    assert rc == 2
    assert_one_line_error(err, str(only_targets), "no metric can be computed")


# ---------------------------------------------------------------------------------------------
# Reproducible results (issue 11): what made a result is recorded, and the score files give it back
# ---------------------------------------------------------------------------------------------
def test_results_record_provenance_and_evaluate_gives_them_back(staged, tmp_path):
    results = json.loads((staged.out / "results.json").read_text())
    record = results["provenance"]
    assert len(record["git"]["commit"] or "") == 40 and isinstance(record["git"]["dirty"], bool)
    assert {"python", "torch", "torchaudio", "numpy"} <= set(record["versions"])
    assert record["device"].startswith("cpu")
    for name in ("asv", "cm"):
        entry = record["checkpoints"][name]
        import hashlib
        assert entry["sha256"] == hashlib.sha256(Path(entry["path"]).read_bytes()).hexdigest()
    assert any(p.endswith("ASVspoof2019.LA.asv.eval.gi.trl.txt") for p in record["protocols"])
    assert record["config"]["output_dir"] == str(staged.out)
    for split in ("dev", "eval"):
        scores = staged.out / "scores"
        out = tmp_path / f"{split}.json"
        llr = ["--llr"] if "act_a_dcf" in results[split] else []      # an LLR back-end's actual a-DCF
        result = run_script("evaluate.py", ["--sasv", scores / f"sasv_{split}.txt",
                                            "--asv", scores / f"asv_{split}.txt",
                                            "--cm", scores / f"cm_trials_{split}.txt", "--json", out, *llr])
        assert result.returncode == 0, result.stderr
        again = json.loads(out.read_text())
        assert "breakdown" in results[split]       # per attack (the LA test utterances carry no codec)
        assert_same_numbers(again, results[split], rel=1e-12, abs=1e-12)
