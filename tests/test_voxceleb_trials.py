"""VoxCeleb trial lists chosen by name (data.trial_list: O | O-clean | E | E-clean | H | H-clean | <path>) in a trial
root of their own (data.trial_root, a VoxCeleb1 folder), in task asv and task sasv_e2e: which file each name reads,
what results record, and the one-line refusals (a missing list, missing E/H audio, trial speakers the model trains
on, trial keys a run does not use, values the key's rule refuses), all before anything is written.

Built on the tiny corpus's VoxCeleb part: its 6 training speakers (id0nnnn) and 2 held-out ones (id1027n)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import main as main_py
from common.cli import run_main
from common.config import ConfigError, load_config
from common.errors import InputError
from data.voxceleb import TRIAL_LISTS, VoxCeleb
from pipeline.recipes import asv_task, sasv_e2e_task
from tests.pipeline_fixtures import ASV_MODEL, assert_one_line_error, call, tiny_corpus

__all__ = ["tiny_corpus"]   # fixtures used by name


def _main(argv):
    return run_main(main_py.main, argv)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def vox1(tiny_corpus, tmp_path) -> Path:
    """A VoxCeleb1-like trial root: the tiny audio as wav/, the O lists (held-out speakers only: O is the original
    list, O-clean drops its first trial as the cleaned list drops mislabelled ones), and E/H lists that, like the real
    ones, also pair files of speakers outside the test set (here two of the tiny training speakers)."""
    root = tmp_path / "VoxCeleb1"
    root.mkdir()
    (root / "wav").symlink_to(tiny_corpus.voxceleb / "wav")
    original = _lines(tiny_corpus.voxceleb / "veri_test.txt")
    (root / "veri_test.txt").write_text("\n".join(original) + "\n")
    (root / "veri_test2.txt").write_text("\n".join(original[1:]) + "\n")
    dev = {}
    for line in _lines(tiny_corpus.voxceleb / "train_list.txt"):
        speaker, rel = line.split()
        dev.setdefault(speaker, []).append(rel)
    a, b = sorted(dev)[-2:]
    extra = [f"1 {dev[a][0]} {dev[a][1]}", f"0 {dev[a][0]} {dev[b][0]}", f"1 {dev[b][0]} {dev[b][1]}"]
    for name in ("E", "E-clean", "H", "H-clean"):
        (root / TRIAL_LISTS[name]).write_text("\n".join(original + extra) + "\n")
    return root


@pytest.fixture
def train_list(tiny_corpus, vox1, tmp_path) -> Path:
    """The tiny train list without the two speakers the E/H lists test (as VoxCeleb2 dev has no VoxCeleb1 speaker)."""
    tested = {line.split()[1].split("/")[0] for line in _lines(vox1 / "list_test_all2.txt")}
    path = tmp_path / "train_list_without_E.txt"
    path.write_text("\n".join(line for line in _lines(tiny_corpus.voxceleb / "train_list.txt")
                              if line.split()[0] not in tested) + "\n")
    return path


def _asv(corpus, out: Path, *extra: str) -> list[str]:
    return ["--config", "configs/quickstart_asv.conf", f"data.voxceleb={corpus.voxceleb}", f"output_dir={out}",
            "asv.arch=ResNetSE34L", f"asv.model={ASV_MODEL}", "train.epochs=1", "train.batch_size=4",
            "train.eval_every=1", "train.precise_bn_batches=0", "train.progress=false", *extra]


def _asv_cfg(argv: list[str]) -> dict:
    overrides = argv[2:]
    return load_config(argv[1], overrides, asv_task.SCHEMA)


def test_each_name_reads_its_official_file_in_the_trial_root(tmp_path):
    root, vox1 = tmp_path / "VoxCeleb2", tmp_path / "VoxCeleb1"
    files = {"O": "veri_test.txt", "O-clean": "veri_test2.txt", "E": "list_test_all.txt",
             "E-clean": "list_test_all2.txt", "H": "list_test_hard.txt", "H-clean": "list_test_hard2.txt"}
    assert TRIAL_LISTS == files
    for name, file in files.items():
        vox = VoxCeleb(root, trial_list=name, trial_root=vox1)
        assert vox.trial_list_path == vox1 / file and vox.trial_list_name == name
        assert vox.trial_list_title == f"VoxCeleb1-{name} ({vox1 / file})"
        assert vox.trial_wav("id10001/v/00001.wav") == vox1 / "wav" / "id10001/v/00001.wav"
        assert vox.wav("id00012/v/00001.wav") == root / "wav" / "id00012/v/00001.wav"   # training audio stays
    default = VoxCeleb(root)                       # no key: veri_test.txt beside the training data, as before
    assert default.trial_list_path == root / "veri_test.txt" and default.trial_wav_dir == root / "wav"
    own = VoxCeleb(root, trial_list=str(tmp_path / "my_trials.txt"))
    assert own.trial_list_path == tmp_path / "my_trials.txt" and own.trial_list_name is None
    assert own.trial_list_title == f"{tmp_path / 'my_trials.txt'} (VoxCeleb trial list)"


def test_task_asv_selects_on_the_cleaned_list_and_records_it(tiny_corpus, vox1, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    rc, err = call(_main, _asv(tiny_corpus, out, "data.trial_list=O-clean", f"data.trial_root={vox1}"), capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["selected_on"] == f"VoxCeleb1-O-clean ({vox1 / 'veri_test2.txt'})"
    assert str(vox1 / "veri_test2.txt") in results["provenance"]["protocols"]
    # the list it selected on is the cleaned one: one trial fewer than veri_test.txt, audio from the trial root
    pairs = asv_task.check(_asv_cfg(_asv(tiny_corpus, out, "data.trial_list=O-clean", f"data.trial_root={vox1}")))[2]
    assert len(pairs.pairs) == len(_lines(vox1 / "veri_test.txt")) - 1
    assert {p.parent.parent.parent for p in pairs.audio.values()} == {vox1 / "wav"}


@pytest.mark.parametrize("name", ["E-clean", "H"])
def test_e_and_h_take_speakers_outside_the_test_set(name, tiny_corpus, vox1, train_list, tmp_path):
    argv = _asv(tiny_corpus, tmp_path / "out", f"data.trial_list={name}", f"data.trial_root={vox1}",
                f"data.train_list={train_list}")
    trials = asv_task.check(_asv_cfg(argv))[2]
    assert len(trials.pairs) == len(_lines(vox1 / TRIAL_LISTS[name]))
    assert {Path(rel).parts[0] for rel in trials.audio} > {"id10270", "id10271"}   # dev speakers too


def test_trial_speakers_the_model_trains_on_are_refused(tiny_corpus, vox1, tmp_path, capsys):
    """VoxCeleb1-E after training on VoxCeleb1 dev would measure voices the model learnt."""
    out = tmp_path / "out"
    rc, err = call(_main, _asv(tiny_corpus, out, "data.trial_list=E-clean", f"data.trial_root={vox1}"), capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, f"{vox1 / 'list_test_all2.txt'}: 2 of its 4 speakers (",
                          f"are training speakers of {tiny_corpus.voxceleb / 'train_list.txt'}", "VoxCeleb2 dev")


def test_a_missing_named_list_says_where_it_was_looked_for(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = call(_main, _asv(tiny_corpus, out, "data.trial_list=H-clean"), capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, f"data.trial_list H-clean: {tiny_corpus.voxceleb / 'list_test_hard2.txt'} does not "
                               f"exist", "voxceleb/meta/list_test_hard2.txt", "data.trial_root")
    rc, err = call(_main, _asv(tiny_corpus, out, "data.trial_list=O-cleaned"), capsys)   # a typo reads as a path
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, "data.trial_list O-cleaned: no such file", "O, O-clean, E, E-clean, H, H-clean")


def test_e_audio_missing_from_the_trial_root_names_the_dev_and_test_audio(tiny_corpus, vox1, train_list, tmp_path,
                                                                          capsys):
    (vox1 / "list_test_all2.txt").write_text((vox1 / "list_test_all2.txt").read_text()
                                             + "1 id10999/v/00001.wav id10270/none/00001.wav\n")
    out = tmp_path / "out"
    rc, err = call(_main, _asv(tiny_corpus, out, "data.trial_list=E-clean", f"data.trial_root={vox1}",
                               f"data.train_list={train_list}"), capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, "2 of", "files missing", "id10999", "VoxCeleb1-E needs the dev and test audio of "
                          f"VoxCeleb1 in {vox1 / 'wav'}")


@pytest.mark.parametrize("value,shown", [('""', "''"), ("3", "3"), ("[O]", "['O']")])
def test_the_rule_refuses_what_is_neither_a_name_nor_a_path(value, shown, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = call(_main, _asv(tiny_corpus, out, f"data.trial_list={value}"), capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, f"'data.trial_list' must be null or a non-empty string, got {shown}")


def _e2e(corpus, out: Path, *extra: str) -> dict:
    """Stage 1 of the single embedding on the VoxCeleb part alone, selected on its trial list (eer)."""
    return load_config("configs/quickstart_sasv2_stage1.conf",
                       [f"data.voxceleb={corpus.voxceleb}", "data.database=null", f"output_dir={out}",
                        "train.select_metric=eer", "train.batch_size=2", *extra], sasv_e2e_task.SCHEMA)


def test_sasv_e2e_selects_on_a_named_list_and_refuses_one_it_would_not_use(tiny_corpus, vox1, train_list, tmp_path):
    cfg = _e2e(tiny_corpus, tmp_path / "out", "data.trial_list=E-clean", f"data.trial_root={vox1}",
               f"data.train_list={train_list}")
    sasv_e2e_task.check(cfg)
    assert sasv_e2e_task._selection(cfg) == f"eer on VoxCeleb1-E-clean ({vox1 / 'list_test_all2.txt'})"
    with pytest.raises(InputError, match=r"2 of its 4 speakers \(id0"):         # trains on the speakers E tests
        sasv_e2e_task.check(_e2e(tiny_corpus, tmp_path / "out", "data.trial_list=E-clean", f"data.trial_root={vox1}"))
    with_la = _e2e(tiny_corpus, tmp_path / "out", "data.trial_list=O-clean", f"data.trial_root={vox1}",
                   f"data.database={tiny_corpus.la}", "train.select_metric=dev_sv_eer")
    with pytest.raises(ConfigError, match="data.trial_list and data.trial_root name the VoxCeleb trials that select "
                                          "the epoch; this run selects by dev_sv_eer on ASVspoof 2019 LA dev"):
        sasv_e2e_task.check(with_la)


def test_task_asv_on_a_database_refuses_voxceleb_trial_keys(tiny_corpus, vox1, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = call(_main, ["--config", "configs/quickstart_asv_la.conf", f"data.database={tiny_corpus.la}",
                           f"output_dir={out}", "asv.checkpoint=null", "data.trial_list=O-clean",
                           f"data.trial_root={vox1}"], capsys)
    assert rc == 2 and not out.exists(), err
    assert_one_line_error(err, "data.trial_list and data.trial_root name VoxCeleb trials", "unset them")
