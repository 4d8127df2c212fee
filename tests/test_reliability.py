"""Bad input and interruptions in the SASV stages: one-line errors (exit 2) before any compute, named corrupt files,
skipping on request, no half-written output after Ctrl-C, unknown config keys and wrong-architecture checkpoints."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import main as main_py
import save_asv_embeddings
import save_cm_score
import save_sasv_score
from common.cli import run_main
from data.asvspoof import LADatabase
from data.score_files import read_sasv_scores
from tests.pipeline_fixtures import (
    assert_one_line_error,
    call,
    copy_corpus,
    files_under,
    frontends,
    run_script,
    sasv_args,
    staged,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name


@pytest.fixture
def broken(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus to damage."""
    return copy_corpus(tiny_corpus, tmp_path / "corpus")


def _middle_trial_utt(db: LADatabase, split: str = "dev") -> str:
    """A bona fide test utterance of a SASV trial, from the middle of the split's CM protocol."""
    trial_utts = {t.utt for t in db.sasv_trials(split) if t.key == "target"}
    utts = [e.utt for e in db.cm_entries(split) if e.utt in trial_utts]
    return utts[len(utts) // 2]


# ---------------------------------------------------------------------------------------------
# Missing audio: fail before any compute
# ---------------------------------------------------------------------------------------------
def test_missing_trial_audio_fails_before_compute(broken, frontends, tmp_path):
    db = LADatabase(broken.la)
    gone = db.audio("dev", _middle_trial_utt(db))
    gone.unlink()
    out = tmp_path / "out"
    result = run_script("save_asv_embeddings.py", sasv_args(broken, frontends, out))
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "1 of", str(gone))
    assert files_under(out / "embeddings") == [] and files_under(out / "scores") == []


@pytest.mark.parametrize("stage", [save_asv_embeddings, save_cm_score], ids=["asv", "cm"])
def test_trial_list_naming_unknown_audio_fails_before_compute(stage, broken, frontends, tmp_path, capsys, one_thread):
    """A trial whose test utterance is in no protocol and has no audio (e.g. a trial list of another corpus)."""
    db = LADatabase(broken.la)
    trials = db.sasv_trials_path("eval")
    speaker = db.sasv_trials("eval")[0].speaker
    with open(trials, "a") as f:
        f.write(f"{speaker} LA_E_9999999 bonafide target\n{speaker} LA_E_9999998 A13 spoof\n")
    out = tmp_path / "out"
    rc, err = call(stage.main, sasv_args(broken, frontends, out), capsys)
    assert rc == 2
    assert_one_line_error(err, "2 of", str(db.audio("eval", "LA_E_9999999")))
    assert files_under(out / "embeddings") == [] and files_under(out / "scores") == []


# ---------------------------------------------------------------------------------------------
# Corrupt audio: stop naming the file, or skip it on request
# ---------------------------------------------------------------------------------------------
def test_corrupt_audio_stops_naming_the_file(broken, frontends, tmp_path):
    db = LADatabase(broken.la)
    utt = _middle_trial_utt(db)
    db.audio("dev", utt).write_bytes(b"this is not a flac file" * 50)
    out = tmp_path / "out"
    result = run_script("save_cm_score.py", sasv_args(broken, frontends, out, "splits=[dev]"))
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, f"{utt}.flac")
    assert not (out / "embeddings" / "cm_dev.npz").exists()
    assert not [p for p in files_under(out) if p.name.endswith(".tmp")]


def test_skip_bad_audio_completes_and_reports(broken, frontends, tmp_path, capsys, one_thread):
    db = LADatabase(broken.la)
    utt = _middle_trial_utt(db)
    db.audio("dev", utt).write_bytes(b"\x00garbage" * 100)
    speaker, (enrol_utt, *others) = next(iter(db.enrolment("eval").items()))
    assert others, "the speaker keeps another enrolment utterance"
    db.audio("eval", enrol_utt).write_bytes(b"")                    # an empty file among the enrolment audio
    out = tmp_path / "out"
    args = sasv_args(broken, frontends, out, "splits=[dev, eval]")
    rc, err = call(save_asv_embeddings.main, args, capsys)
    assert rc == 2 and f"{utt}.flac" in err                       # stops by default
    skip = [*args, "skip_bad_audio=true"]
    rc, err = call(save_asv_embeddings.main, skip, capsys)
    assert rc == 0, err
    assert err.count("skipped 1 unreadable file(s)") == 2 and utt in err and enrol_utt in err, err
    assert "asv eval: 1 enrolment utterances skipped" in err
    rc, err = call(save_cm_score.main, skip, capsys)
    assert rc == 0, err
    assert "skipped 1 unreadable file(s)" in err and utt in err, err
    with np.load(out / "embeddings" / "asv_dev.npz", allow_pickle=False) as z:
        assert utt not in z["ids"].tolist() and len(z["ids"]) == len(db.utterances("dev")) - 1
    rc, err = call(save_sasv_score.main, skip, capsys)
    assert rc == 0, err
    dropped = [t for t in db.sasv_trials("dev") if t.utt == utt]
    assert f"{len(dropped)} trials skipped" in err
    for kind in ("asv", "cm_trials", "sasv"):
        scores = read_sasv_scores(out / "scores" / f"{kind}_dev.txt")
        assert utt not in scores.utt and len(scores) == len(db.sasv_trials("dev")) - len(dropped), kind
        assert len(read_sasv_scores(out / "scores" / f"{kind}_eval.txt")) == len(db.sasv_trials("eval"))
    assert (out / "results.json").exists()


# ---------------------------------------------------------------------------------------------
# Ctrl-C: no half-written output, and a rerun completes
# ---------------------------------------------------------------------------------------------
def test_keyboard_interrupt_mid_stage_leaves_no_partial_output(tiny_corpus, frontends, tmp_path, capsys, monkeypatch,
                                                               one_thread):
    import pipeline.stages.asv as stages

    real_frontend = stages.frontend
    calls = {"n": 0}

    def interrupting_frontend(cfg, kind, exports, device="cpu"):
        ready = real_frontend(cfg, kind, exports, device)

        def run(wave):
            calls["n"] += 1
            if calls["n"] == stop_at:  # one utterance per batch (full crops): midway through dev
                raise KeyboardInterrupt
            return ready.embed(wave)
        return dataclasses.replace(ready, embed=run)

    stop_at = (len(LADatabase(tiny_corpus.la).utterances("train"))
               + len(LADatabase(tiny_corpus.la).utterances("dev")) // 2)
    monkeypatch.setattr(stages, "frontend", interrupting_frontend)
    out = tmp_path / "out"
    args = sasv_args(tiny_corpus, frontends, out)
    rc, err = call(save_asv_embeddings.main, args, capsys)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    emb = out / "embeddings"
    assert [p.name for p in files_under(emb)] == ["asv_train.npz"]      # the finished split only
    with np.load(emb / "asv_train.npz", allow_pickle=False) as z:
        assert len(z["ids"]) == z["embeddings"].shape[0] == len(LADatabase(tiny_corpus.la).utterances("train"))
    assert not any(p.name.endswith(".tmp") for p in files_under(out))

    monkeypatch.setattr(stages, "frontend", real_frontend)
    rc, err = call(save_asv_embeddings.main, args, capsys)
    assert rc == 0, err
    assert "asv train: " in err and "is up to date" in err and "asv dev: " in err
    assert {p.name for p in files_under(emb)} == {"asv_train.npz", "asv_dev.npz", "asv_eval.npz",
                                                  "asv_enrol_dev.npz", "asv_enrol_eval.npz"}


def test_keyboard_interrupt_while_writing_leaves_no_file(staged, tiny_corpus, frontends, tmp_path, capsys, monkeypatch,
                                                         one_thread):
    out = tmp_path / "out"
    args = sasv_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}")
    real_savez = np.savez

    def interrupted_savez(file, *a, **kw):
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    # stage 3 writes text files: interrupt the second score file half-way instead
    import common.io
    real_write = common.io.write_lines
    n = {"calls": 0}

    def interrupted_write_lines(path, lines):
        n["calls"] += 1
        if n["calls"] == 2:
            with common.io.atomic_write(path) as f:
                f.write(next(iter(lines)) + "\n")      # the writers pass generators
                raise KeyboardInterrupt
        real_write(path, lines)

    monkeypatch.setattr("data.score_files.write_lines", interrupted_write_lines)
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 130
    assert [p.name for p in files_under(out / "scores")] == ["sasv_dev.txt"]
    assert not (out / "results.json").exists()
    assert not any(p.name.endswith(".tmp") for p in files_under(out))

    cm_out = tmp_path / "cm"
    monkeypatch.setattr(np, "savez", interrupted_savez)
    rc, err = call(save_cm_score.main, sasv_args(tiny_corpus, frontends, cm_out, "splits=[eval]"), capsys)
    assert rc == 130
    assert files_under(cm_out / "embeddings") == []                 # neither a partial .npz nor its temp file
    monkeypatch.setattr(np, "savez", real_savez)
    rc, err = call(save_cm_score.main, sasv_args(tiny_corpus, frontends, cm_out, "splits=[eval]"), capsys)
    assert rc == 0, err


# ---------------------------------------------------------------------------------------------
# Config and checkpoint mistakes
# ---------------------------------------------------------------------------------------------
def test_unknown_config_key_on_command_line(tiny_corpus, frontends, tmp_path, capsys):
    out = tmp_path / "out"
    result = run_script("save_cm_score.py", sasv_args(tiny_corpus, frontends, out, "cm.crop.sampels=100"))
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "cm.crop.sampels")
    rc, err = call(lambda a: run_main(main_py.main, a), sasv_args(tiny_corpus, frontends, out, "train.epoch=3"), capsys)
    assert rc == 2
    assert_one_line_error(err, "train.epoch")
    assert files_under(out) == []


def test_wrong_architecture_checkpoint(tiny_corpus, frontends, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    base = sasv_args(tiny_corpus, frontends, out, "splits=[dev]")
    # a ResNetSE34L checkpoint loaded as ECAPA-TDNN
    rc, err = call(save_asv_embeddings.main, [*base, "asv.arch=ECAPA-TDNN", "asv.model={C: 64}"], capsys)
    assert rc == 2
    assert_one_line_error(err, frontends.asv.name, "ResNetSE34L")
    # the same architecture with another size
    rc, err = call(save_asv_embeddings.main, [*base, "asv.model={embedding_dim: 64, channels: [8, 8, 16, 32]}"], capsys)
    assert rc == 2
    assert_one_line_error(err, frontends.asv.name)
    # an ASV checkpoint given as the countermeasure
    rc, err = call(save_cm_score.main, [*base, f"cm.checkpoint={frontends.asv}"], capsys)
    assert rc == 2
    assert_one_line_error(err, str(frontends.asv))
    assert files_under(out / "embeddings") == []
