"""Ids in the user's lists are names, and a list must list something: every entry point refuses a CM protocol id that
leads outside the database, or an empty trial list, in one line naming the file (exit 2) before it writes anything.

The failing runs stop in the checks that need no model, so each case costs a second (in-process calls, random
weights allowed: no front-end is trained)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ablate
import main as main_py
import save_asv_embeddings
import save_cm_score
import save_sasv_score
from common.cli import run_main
from data.asvspoof import LADatabase
from tests.pipeline_fixtures import ASV_MODEL, CM_MODEL, CROP, assert_one_line_error, call, copy_corpus, tiny_corpus

__all__ = ["tiny_corpus"]   # fixtures used by name

_RANDOM_FRONTENDS = ["asv.checkpoint=null", "cm.checkpoint=null", "allow_random_weights=true", "asv.arch=ResNetSE34L",
                     f"asv.model={ASV_MODEL}", "cm.arch=AASIST-L", f"cm.model={CM_MODEL}", "cm.crop.policy=first",
                     f"cm.crop.samples={CROP}", "device=cpu"]


def _sasv(config: str = "configs/quickstart.conf"):
    def argv(corpus, out: Path) -> list[str]:
        return ["--config", config, f"database={corpus.la}", f"output_dir={out}", *_RANDOM_FRONTENDS]
    return argv


def _ablate(corpus, out: Path) -> list[str]:
    return [*_sasv("configs/ablation_quickstart.conf")(corpus, out), f"embeddings_dir={out}/embeddings",
            f"ablation.dir={out}/ablation"]


def _cm(corpus, out: Path) -> list[str]:
    return ["--config", "configs/quickstart_cm.conf", f"database={corpus.la}", f"output_dir={out}"]


def _asv_la(corpus, out: Path) -> list[str]:
    return ["--config", "configs/quickstart_asv_la.conf", f"data.database={corpus.la}", f"output_dir={out}",
            "asv.checkpoint=null"]


def _asv_vox(corpus, out: Path) -> list[str]:
    return ["--config", "configs/quickstart_asv.conf", f"data.voxceleb={corpus.voxceleb}", f"output_dir={out}"]


def _sasv_e2e(corpus, out: Path) -> list[str]:
    return ["--config", "configs/quickstart_sasv2_stage3.conf", f"data.database={corpus.la}", f"output_dir={out}",
            "asv.checkpoint=null"]


def _main(a):
    return run_main(main_py.main, a)


def _ablate_main(a):
    return run_main(ablate.main, a)


# entry point name -> (main(argv) -> exit code, argv(corpus, out))
ENTRIES = {
    "save_asv_embeddings": (save_asv_embeddings.main, _sasv()),
    "save_cm_score": (save_cm_score.main, _sasv()),
    "save_sasv_score": (save_sasv_score.main, _sasv()),
    "main_sasv": (_main, _sasv()),
    "main_cm": (_main, _cm),
    "main_asv_la": (_main, _asv_la),
    "main_sasv_e2e": (_main, _sasv_e2e),
    "ablate": (_ablate_main, _ablate),
}
LA_DEV_READERS = list(ENTRIES)                       # every LA entry point reads the dev protocols
TRIAL_READERS = [e for e in ENTRIES if e != "main_cm"]


@pytest.fixture
def corpus(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus to damage."""
    return copy_corpus(tiny_corpus, tmp_path / "corpus")


def _refused(entry: str, corpus, tmp_path: Path, capsys, *needles: str) -> str:
    """Runs an entry point on the damaged corpus: exit 2, one line holding every needle, and nothing written
    (no config.yaml, no embeddings, not even the output folder)."""
    main, argv = ENTRIES[entry]
    out = tmp_path / "out"
    rc, err = call(main, argv(corpus, out), capsys)
    assert rc == 2, err
    line = assert_one_line_error(err, *needles)
    assert not out.exists(), sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    return line


def _append(path: Path, line: str) -> int:
    """Appends one line to a list file; returns its line number."""
    text = path.read_text(encoding="utf-8")
    text = text if text.endswith("\n") or not text else text + "\n"
    path.write_text(text + line + "\n", encoding="utf-8")
    return len(text.splitlines()) + 1


# ---------------------------------------------------------------------------------------------
# Ids are names: nothing outside the database is read
# ---------------------------------------------------------------------------------------------
def _outside_audio(db: LADatabase, tmp_path: Path) -> Path:
    """A real audio file outside the database (what the probe's `../../../../x` reached and scored)."""
    outside = tmp_path / "outside" / "x.flac"
    outside.parent.mkdir()
    shutil.copy(db.audio("dev", db.cm_entries("dev")[0].utt), outside)
    return outside


@pytest.mark.parametrize("entry", LA_DEV_READERS)
def test_a_cm_protocol_id_leading_outside_the_database_is_refused(entry, corpus, tmp_path, capsys):
    db = LADatabase(corpus.la)
    outside = _outside_audio(db, tmp_path)
    utt = "../../../../outside/x"
    assert (db.audio_dir("dev") / f"{utt}.flac").resolve() == outside      # the id does reach the file
    protocol = db.cm_protocol_path("dev")
    number = _append(protocol, f"{db.cm_entries('dev')[0].speaker} {utt} - - bonafide")
    _refused(entry, corpus, tmp_path, capsys, f"{protocol}:{number}: utterance id {utt!r} holds a separator, '/'")


@pytest.mark.parametrize("entry", ["save_cm_score", "main_sasv"])
def test_an_absolute_cm_protocol_id_is_refused(entry, corpus, tmp_path, capsys):
    db = LADatabase(corpus.la)
    utt = str(_outside_audio(db, tmp_path).with_suffix(""))
    protocol = db.cm_protocol_path("dev")
    number = _append(protocol, f"{db.cm_entries('dev')[0].speaker} {utt} - - bonafide")
    _refused(entry, corpus, tmp_path, capsys, f"{protocol}:{number}: utterance id {utt!r}", "not a path")


@pytest.mark.parametrize("which", ["trial list", "enrolment list", "concatenated enrolment list"])
def test_ids_of_the_other_la_lists_are_names(which, corpus, tmp_path, capsys):
    db = LADatabase(corpus.la)
    speaker = db.sasv_trials("eval")[0].speaker
    entry, extra = "save_asv_embeddings", []
    if which == "trial list":
        path, line, needle = db.sasv_trials_path("eval"), f"{speaker} ..\\x bonafide target", "utterance id '..\\\\x'"
    elif which == "enrolment list":
        path, line, needle = db.enrolment_path("eval", "male"), "LA_9999 LA_E_1,..", "utterance id '..'"
    else:
        path, line, needle = db.enrolment_concat_path("eval"), "LA_9999 /etc/x", "enrolment file stem '/etc/x'"
        extra = ["enrolment=concat"]
    number = _append(path, line)
    main, argv = ENTRIES[entry]
    out = tmp_path / "out"
    rc, err = call(main, argv(corpus, out) + extra, capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, f"{path}:{number}: {needle}")


@pytest.mark.parametrize("which,line,needle", [
    ("train", "id00001 ../../LA/ASVspoof2019_LA_dev/flac/x.wav", "has a '..' component"),
    ("trial", "1 /etc/x.wav {first}", "is absolute"),
])
def test_voxceleb_list_paths_stay_inside_wav(which, line, needle, corpus, tmp_path, capsys):
    path = corpus.voxceleb / ("train_list.txt" if which == "train" else "veri_test.txt")
    first = path.read_text().split()[1]
    number = _append(path, line.format(first=first))
    out = tmp_path / "out"
    rc, err = call(_main, _asv_vox(corpus, out), capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, f"{path}:{number}: path ", needle, f"relative to {corpus.voxceleb / 'wav'}")


# ---------------------------------------------------------------------------------------------
# Lists that list nothing: refused before any embedding is computed
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", TRIAL_READERS)
def test_an_empty_trial_list_is_refused_before_anything_is_computed(entry, corpus, tmp_path, capsys):
    """The probe's case: all embeddings were computed first, then came an array-shape error naming nothing."""
    trials = LADatabase(corpus.la).sasv_trials_path("dev")
    trials.write_text("\n")
    _refused(entry, corpus, tmp_path, capsys, f"{trials}: the trial list has no trials")


@pytest.mark.parametrize("entry", ["save_cm_score", "main_cm", "main_sasv_e2e"])
def test_an_empty_cm_protocol_is_refused(entry, corpus, tmp_path, capsys):
    protocol = LADatabase(corpus.la).cm_protocol_path("dev")
    protocol.write_text("")
    _refused(entry, corpus, tmp_path, capsys, f"{protocol}: the CM protocol lists no utterances")


def test_enrolment_lists_with_no_speakers_are_refused(corpus, tmp_path, capsys):
    db = LADatabase(corpus.la)
    female, male = db.enrolment_path("dev", "female"), db.enrolment_path("dev", "male")
    female.write_text("")
    male.write_text("")
    _refused("save_asv_embeddings", corpus, tmp_path, capsys, f"{female}, {male}: the enrolment lists name no speakers")


def test_an_enrolment_line_with_no_files_is_refused(corpus, tmp_path, capsys):
    female = LADatabase(corpus.la).enrolment_path("dev", "female")
    number = _append(female, "LA_9999 ,")
    _refused("main_sasv", corpus, tmp_path, capsys, f"{female}:{number}: empty utterance id in the list of speaker")


def test_a_trial_list_of_spoofs_only_cannot_select_an_asv_model(corpus, tmp_path, capsys):
    db = LADatabase(corpus.la)
    trials = db.sasv_trials_path("dev")
    lines = trials.read_text().splitlines(keepends=True)
    trials.write_text("".join(line for line in lines if line.split()[3] == "spoof"))
    _refused("main_asv_la", corpus, tmp_path, capsys, f"{trials}: no target or nontarget trials")


@pytest.mark.parametrize("which,message", [("train_list.txt", "train list is empty"),
                                           ("veri_test.txt", "the trial list has no trials")])
def test_empty_voxceleb_lists_are_refused(which, message, corpus, tmp_path, capsys):
    path = corpus.voxceleb / which
    path.write_text("")
    out = tmp_path / "out"
    rc, err = call(_main, _asv_vox(corpus, out), capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, f"{path}: {message}")


def test_trials_all_skipped_as_unreadable_is_one_line_not_a_shape_error(corpus, tmp_path, capsys, one_thread):
    """skip_bad_audio that leaves no trial of a split (every test file unreadable, the enrolment audio fine): one
    line naming the trial list instead of an array-shape error, and no score file."""
    db = LADatabase(corpus.la)
    for t in db.sasv_trials("dev"):
        db.audio("dev", t.utt).write_bytes(b"not audio")
    out = tmp_path / "out"
    rc, err = call(save_asv_embeddings.main, [*_sasv()(corpus, out), "skip_bad_audio=true", "splits=[dev]"], capsys)
    assert rc == 2
    n = len(db.sasv_trials("dev"))
    assert err.strip().splitlines()[-1].startswith(f"error: {db.sasv_trials_path('dev')}: none of its {n} trials "
                                                   f"can be scored"), err
    assert "Traceback" not in err and not (out / "scores").exists()
