"""A tool moves or overwrites only what it made: output folders a run may write, --overwrite, outputs that would
replace inputs, the record a failed run leaves, resuming with other settings, and backend.checkpoint in frozen mode
(issue 22 §1, §2)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import main as main_py
import save_asv_embeddings
import save_cm_score
import save_sasv_score
from common.cli import run_main
from common.errors import InputError
from common.folders import LOCK_NAME, RUN_OUTPUTS, is_run_output, move_aside
from tests.pipeline_fixtures import (
    ROOT,
    assert_one_line_error,
    call,
    frontends,
    sasv_args,
    staged,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name


def main_py_main(argv):
    return run_main(main_py.main, argv)


def _listing(root: Path) -> dict[Path, bytes]:
    """Every file under root with its bytes (nothing may be added or changed; a lock file only by its presence: it
    notes who last held the folder)."""
    return {p: b"" if p.name == LOCK_NAME else p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _frozen_args(corpus, frontends, out, *extra):
    return sasv_args(corpus, frontends, out, "backend.name=baseline2", "sampling.scheme=baseline2", "train.epochs=1",
                     "backend.options={hidden: [8]}", *extra)


@pytest.fixture(scope="module")
def frozen_run(staged, tiny_corpus, frontends, tmp_path_factory, one_thread):
    """A finished main.py run (task sasv, frozen baseline2, one epoch) on the staged embeddings; tests copy it."""
    out = tmp_path_factory.mktemp("frozen") / "run"
    rc = main_py_main(_frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}"))
    assert rc == 0
    return out


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# Which folders a run may write, and what --overwrite may move
# ---------------------------------------------------------------------------------------------
def test_a_database_root_is_neither_written_nor_moved(tiny_corpus, frontends, staged, tmp_path, capsys):
    database = shutil.copytree(tiny_corpus.la, tmp_path / "LA")
    before = _listing(database)
    for extra in ([], ["--overwrite"]):
        rc, err = call(main_py_main, [*_frozen_args(tiny_corpus, frontends, database), *extra], capsys)
        assert rc == 2
        assert_one_line_error(err, f"output_dir {database}", "no run of this toolkit wrote", "ASVspoof2019_LA_")
    rc, err = call(save_asv_embeddings.main, sasv_args(tiny_corpus, frontends, database), capsys)
    assert rc == 2 and "no run of this toolkit wrote" in err
    assert _listing(database) == before


def test_overwrite_moves_only_a_runs_own_files(frozen_run, tiny_corpus, frontends, staged, tmp_path, capsys):
    out = _copy(frozen_run, tmp_path / "run")
    (out / "my_notes.txt").write_text("mine")
    before = _listing(out)
    args = [*_frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}"), "--overwrite"]
    rc, err = call(main_py_main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, str(out), "'my_notes.txt'", "which no run of this toolkit writes")
    assert _listing(out) == before


def test_move_aside_refuses_what_no_run_wrote(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "results.json").write_text("{}")          # no provenance: not a run's record
    with pytest.raises(InputError, match="no run of this toolkit wrote this folder"):
        move_aside(folder)
    (folder / LOCK_NAME).write_text("")
    (folder / "last.pt").write_bytes(b"x")
    moved = move_aside(folder)
    assert moved is not None and (moved / "last.pt").exists() and (moved / "results.json").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([LOCK_NAME, moved.name])


def test_every_task_writes_only_names_that_overwrite_may_move(frontends, staged, frozen_run):
    """RUN_OUTPUTS is the list --overwrite trusts: every top-level entry a task writes must be on it."""
    for folder in (frontends.asv_dir, frontends.cm_dir, staged.out, frozen_run):
        strays = [p.name for p in folder.iterdir() if not is_run_output(p.name)]
        assert strays == [], f"{folder}: {strays} not in common.folders.RUN_OUTPUTS {RUN_OUTPUTS}"


@pytest.mark.parametrize("entry", ["main", "save_asv_embeddings", "save_cm_score", "save_sasv_score", "ablate",
                                   "verify", "demo", "copy_synthesis", "generate_corpus"])
def test_an_empty_output_folder_is_an_error(entry, tiny_corpus, frontends, staged, tmp_path, monkeypatch, capsys):
    """An empty path would be the current folder: from the repository root, the repository."""
    import ablate
    import copy_synthesis
    import demo
    import generate_corpus
    import verify

    monkeypatch.chdir(tmp_path)
    sasv = [*sasv_args(tiny_corpus, frontends, "")]
    sasv[1] = str(ROOT / sasv[1])                         # --config, from the temporary working folder
    mains = {"main": (main_py.main, sasv), "save_asv_embeddings": (save_asv_embeddings.main, sasv),
             "save_cm_score": (save_cm_score.main, sasv), "save_sasv_score": (save_sasv_score.main, sasv),
             "ablate": (ablate.main, ["--config", str(ROOT / "configs/ablation_quickstart.conf"), *sasv[2:]]),
             "verify": (verify.main, [*sasv, "--enroll", str(tiny_corpus.la), "--test", str(tiny_corpus.la)]),
             "demo": (demo.main, ["--out", "", "--corpus", str(tiny_corpus.root)]),
             "copy_synthesis": (copy_synthesis.main, ["--voxceleb", str(tiny_corpus.voxceleb), "--out", ""]),
             "generate_corpus": (generate_corpus.main, ["--out", ""])}
    entry_main, argv = mains[entry]
    rc, err = call(lambda a: run_main(entry_main, a), argv, capsys)
    assert rc == 2
    assert_one_line_error(err, "empty")        # "is empty", or the schema's "must be a non-empty string"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# No output replaces an input
# ---------------------------------------------------------------------------------------------
def test_verify_out_may_not_be_its_batch_list(staged, tiny_corpus, frontends, tmp_path, capsys):
    import verify
    from data.asvspoof import LADatabase

    db = LADatabase(tiny_corpus.la)
    trial = db.sasv_trials("dev")[0]
    pairs = tmp_path / "pairs.csv"
    enrol = ";".join(str(db.audio("dev", u)) for u in db.enrolment("dev")[trial.speaker])
    pairs.write_text(f"enroll,test\n{enrol},{db.audio('dev', trial.utt)}\n")
    before = pairs.read_bytes()
    argv = [*sasv_args(tiny_corpus, frontends, staged.out), "--batch", str(pairs), "--out", str(pairs)]
    rc, err = call(lambda a: run_main(verify.main, a), argv, capsys)
    assert rc == 2
    assert_one_line_error(err, f"--out {pairs}", "is also an input", "--batch")
    assert pairs.read_bytes() == before


def test_evaluate_outputs_may_not_be_its_score_files(staged, tmp_path, capsys):
    import evaluate

    sasv = str(shutil.copy(staged.out / "scores" / "sasv_eval.txt", tmp_path / "sasv.txt"))
    before = Path(sasv).read_bytes()
    for flag in ("--json", "--det"):
        target = sasv if flag == "--json" else str(Path(sasv).with_suffix(".png"))
        if flag == "--det":
            Path(target).symlink_to(sasv)                    # another spelling of the same file
        rc, err = call(lambda a: run_main(evaluate.main, a), ["--sasv", sasv, flag, target], capsys)
        assert rc == 2
        assert_one_line_error(err, flag, "is also an input", "--sasv")
        assert Path(sasv).read_bytes() == before
    both = str(tmp_path / "out.png")
    rc, err = call(lambda a: run_main(evaluate.main, a), ["--sasv", sasv, "--json", both, "--det", both], capsys)
    assert rc == 2
    assert_one_line_error(err, "name the same file")


def test_a_run_may_not_write_over_its_own_checkpoint(frontends, tiny_corpus, tmp_path, capsys):
    from tests.pipeline_fixtures import ASV_MODEL

    out = _copy(frontends.asv_dir, tmp_path / "asv")
    before = _listing(out)
    args = ["--config", "configs/quickstart_asv.conf", f"data.voxceleb={tiny_corpus.voxceleb}", f"output_dir={out}",
            "asv.arch=ResNetSE34L", f"asv.model={ASV_MODEL}", "train.epochs=1", "train.batch_size=6",
            "train.progress=false", f"asv.checkpoint={out / 'asv_model.pt'}"]
    rc, err = call(main_py_main, [*args, "--resume"], capsys)
    assert rc == 2
    assert_one_line_error(err, "asv_model.pt", "is also an input", "asv.checkpoint")
    (out / "scores").mkdir()                              # a folder a run writes, which --overwrite moves
    start = shutil.copy(out / "asv_model.pt", out / "scores" / "start.pt")
    before = _listing(out)
    rc, err = call(main_py_main, [*args[:-1], f"asv.checkpoint={start}", "--overwrite"], capsys)
    assert rc == 2
    assert_one_line_error(err, f"asv.checkpoint {start}", "--overwrite moves into replaced-")
    assert _listing(out) == before


# ---------------------------------------------------------------------------------------------
# A run that fails leaves the previous record as it was
# ---------------------------------------------------------------------------------------------
def test_a_backend_checkpoint_that_is_not_one_is_refused_before_anything(staged, tiny_corpus, frontends, tmp_path,
                                                                         capsys):
    out = _copy(staged.out, tmp_path / "run")
    before = _listing(out)
    bogus = tmp_path / "backend.pt"
    bogus.write_text("not a checkpoint")
    args = sasv_args(tiny_corpus, frontends, out, "backend.name=baseline2", f"backend.checkpoint={bogus}")
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, f"backend.checkpoint {bogus}", "not a loadable weights-only checkpoint")
    assert _listing(out) == before


def test_a_late_failure_puts_the_previous_record_back(staged, tiny_corpus, frontends, tmp_path, capsys, monkeypatch):
    out = _copy(staged.out, tmp_path / "run")
    before = _listing(out)

    def fails(*args, **kwargs):
        raise InputError("a problem found only while scoring")

    monkeypatch.setattr("pipeline.stages.sasv.ready_backend", fails)
    rc, err = call(save_sasv_score.main, sasv_args(tiny_corpus, frontends, out, "backend.name=product_rule"), capsys)
    assert rc == 2 and "a problem found only while scoring" in err
    assert "the previous run's files are as they were" in err
    assert _listing(out) == before

    # once the failed run has written an output, the old results no longer describe the folder: they stay aside
    from data import score_files
    real = score_files.write_sasv_scores
    calls = {"n": 0}

    def fails_after_the_first_file(path, rows):
        calls["n"] += 1
        if calls["n"] > 1:
            raise InputError("disk trouble after one file")
        real(path, rows)

    monkeypatch.undo()
    monkeypatch.setattr("pipeline.stages.sasv.write_sasv_scores", fails_after_the_first_file)
    rc, err = call(save_sasv_score.main, sasv_args(tiny_corpus, frontends, out, "backend.name=product_rule"), capsys)
    assert rc == 2
    assert not (out / "results.json").exists() and (out / "results.previous.json").exists()
    assert "backend:\n  name: product_rule" in (out / "config.yaml").read_text()


def test_overwrite_that_fails_before_writing_puts_the_previous_run_back(frozen_run, staged, tiny_corpus, frontends,
                                                                       tmp_path, capsys, monkeypatch):
    out = _copy(frozen_run, tmp_path / "run")
    before = _listing(out)

    def fails(*args, **kwargs):
        raise InputError("a checkpoint that does not fit, found when the model is built")

    monkeypatch.setattr("pipeline.recipes.sasv_task.run", fails)
    args = [*_frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}"), "--overwrite"]
    rc, err = call(main_py_main, args, capsys)
    assert rc == 2 and "does not fit" in err and "the previous run's files are as they were" in err
    assert _listing(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith("replaced-")]


# ---------------------------------------------------------------------------------------------
# Resuming: what was trained stays what the record says
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, key", [("train.optimizer.lr=0.5", "train.optimizer.lr"),
                                         ("backend.options={hidden: [16]}", "backend.options.hidden"),
                                         ("sampling.trials_per_epoch=32", "sampling.trials_per_epoch")])
def test_resume_with_settings_that_change_the_training_is_refused(change, key, frozen_run, staged, tiny_corpus,
                                                                  frontends, tmp_path, capsys):
    out = _copy(frozen_run, tmp_path / "run")
    before = _listing(out)
    args = [*_frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}", change), "--resume"]
    rc, err = call(main_py_main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, "--resume with settings that change what was trained", key, "started.json")
    assert _listing(out) == before


def test_resume_with_runtime_settings_is_allowed_and_recorded(frozen_run, staged, tiny_corpus, frontends, tmp_path,
                                                              capsys):
    out = _copy(frozen_run, tmp_path / "run")
    args = [*_frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}", "train.num_workers=1",
                          "train.epochs=2"), "--resume"]
    rc, err = call(main_py_main, args, capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["resumed"][0]["after_epoch"] == 1
    assert results["resumed"][0]["changed"] == {"train.epochs": [1, 2], "train.num_workers": [0, 1]}
    assert results["provenance"]["config"]["train"]["epochs"] == 2
    started = json.loads((out / "started.json").read_text())
    assert started["config"]["train"]["epochs"] == 1          # what the run was started with stays recorded


def test_the_engine_refuses_a_changed_training_setting_on_resume(frozen_run):
    """Library users of engine.fit get the same rule as main.py, before anything is loaded."""
    from engine.checkpoint import CheckpointError, load_checkpoint, restore_last_checkpoint
    from engine.distributed import DistContext

    last = frozen_run / "backend_train" / "last.pt"
    config = load_checkpoint(last)["config"]
    changed = {**config, "optimizer": {**config["optimizer"], "lr": 0.5}}
    ctx = DistContext(0, 1, 0, torch.device("cpu"), False)
    with pytest.raises(CheckpointError, match=r"change what was trained \(train.optimizer.lr 0.001 -> 0.5\)"):
        restore_last_checkpoint(last, None, None, None, None, changed, ctx)


# ---------------------------------------------------------------------------------------------
# backend.checkpoint in frozen mode: used as documented, or refused
# ---------------------------------------------------------------------------------------------
def test_frozen_training_starts_from_backend_checkpoint(frozen_run, staged, tiny_corpus, frontends, tmp_path, capsys):
    start = frozen_run / "backend.pt"
    out = tmp_path / "from_checkpoint"
    args = _frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}",
                        f"backend.checkpoint={start}", "train.optimizer={name: sgd, lr: 0.0}")
    rc, err = call(main_py_main, args, capsys)
    assert rc == 0, err
    first, trained = (torch.load(p, weights_only=True)["state"] for p in (start, out / "backend.pt"))
    assert first.keys() == trained.keys()
    assert all(torch.equal(first[k], trained[k]) for k in first), "lr 0 from the checkpoint must keep its weights"
    record = json.loads((out / "results.json").read_text())["provenance"]["checkpoints"]
    assert record["backend"]["path"] == str(start)

    rc, err = call(main_py_main, [*args[:-1], "backend.options={hidden: [16]}"], capsys)   # options that disagree
    assert rc == 2
    assert_one_line_error(err, "backend.options", "differ from those backend.checkpoint", str(start))
    rc, err = call(main_py_main, sasv_args(tiny_corpus, frontends, tmp_path / "sum", "backend.name=score_sum",
                                           f"backend.checkpoint={start}"), capsys)
    assert rc == 2
    assert_one_line_error(err, "backend.checkpoint is set", "score-level back-end 'score_sum'")


def test_the_toolkits_data_folders_count_as_its_own(tiny_corpus, tmp_path):
    """A corpus generate_corpus.py wrote (no lock) may be locked by demo.py --corpus; the records it trusts are the
    writers' own names."""
    from common.folders import TOOL_RECORDS, check_output_folder, is_run_folder
    from data.vocoders import MANIFEST_NAME
    from synthetic.layout import _IN_PROGRESS, MANIFEST

    assert set(TOOL_RECORDS) == {MANIFEST, _IN_PROGRESS, MANIFEST_NAME}
    assert is_run_folder(tiny_corpus.root)
    check_output_folder(tiny_corpus.root, "--corpus")
    assert not is_run_folder(tiny_corpus.la)


@pytest.mark.parametrize("record, needle", [("checkpoints", "is not the file the run started from"),
                                            ("protocols", "changed since the run started")])
def test_resume_refuses_a_changed_starting_checkpoint_or_list(record, needle, frozen_run, staged, tiny_corpus,
                                                              frontends, tmp_path, capsys):
    """started.json holds the SHA-256 of what the run started from: a retrained checkpoint or an edited list at the
    same path is another run (simulated by changing the recorded digest: the shared corpus stays as it is)."""
    out = _copy(frozen_run, tmp_path / "run")
    started = json.loads((out / "started.json").read_text())
    entry = next(k for k, v in started[record].items() if v)
    if record == "checkpoints":
        started[record][entry]["sha256"] = "0" * 64
    else:
        started[record][entry] = "0" * 64
    (out / "started.json").write_text(json.dumps(started))
    before = _listing(out)
    args = [*_frozen_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}"), "--resume"]
    rc, err = call(main_py_main, args, capsys)
    assert rc == 2
    assert_one_line_error(err, "--resume", needle)
    assert _listing(out) == before
