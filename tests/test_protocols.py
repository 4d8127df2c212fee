"""data/asvspoof.py and data/voxceleb.py: parsers on the official ASVspoof 2019 LA protocols and on bad input."""
from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data.asvspoof import (
    LADatabase,
    MissingFilesError,
    ProtocolError,
    check_files_exist,
    read_cm_protocol,
    read_enrolment,
    read_enrolment_concat,
    read_sasv_trials,
    utterances_by_speaker,
)
from data.names import check_name, check_relative_path, name_problem, relative_path_problem
from data.voxceleb import VoxCeleb, read_train_list, read_trial_list, speaker_index
from tests.conftest import reference_path


def ref(name: str) -> Path:
    return reference_path("protocols", "ASVspoof2019_LA", name)


# ---- official protocol files ------------------------------------------------------------------
@pytest.mark.parametrize("split,target,nontarget,spoof", [("eval", 5370, 33327, 63882), ("dev", 1484, 5768, 22296)])
def test_official_sasv_trial_counts(split, target, nontarget, spoof):
    trials = read_sasv_trials(ref(f"ASVspoof2019.LA.asv.{split}.gi.trl.txt"))
    assert Counter(t.key for t in trials) == {"target": target, "nontarget": nontarget, "spoof": spoof}
    attacks = {t.attack for t in trials if t.key == "spoof"}
    assert attacks == ({f"A{k:02d}" for k in range(7, 20)} if split == "eval" else {f"A{k:02d}" for k in range(1, 7)})
    assert all(t.attack == "bonafide" for t in trials if t.key != "spoof")


def test_eval_trials_parse_within_a_small_factor_of_splitting_the_lines():
    """Parsing (checks, duplicate detection, one record per line) costs a small multiple of merely splitting the
    file's lines, timed in the same test so that a busy machine slows both (absolute figures: bench/)."""
    path = ref("ASVspoof2019.LA.asv.eval.gi.trl.txt")

    def split_only():
        return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]

    def best_of(fn, n=3):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    assert best_of(lambda: read_sasv_trials(path)) < 10 * best_of(split_only)
    trials = read_sasv_trials(path)
    assert len(trials) == 102579
    assert (trials[0].speaker, trials[0].utt, trials[0].attack, trials[0].key) == (
        "LA_0015", "LA_E_1103494", "bonafide", "target")


@pytest.mark.parametrize("split,suffix,bona,spoof,speakers,systems", [
    ("train", "train.trn", 2580, 22800, 20, range(1, 7)),
    ("dev", "dev.trl", 2548, 22296, 20, range(1, 7)),
    ("eval", "eval.trl", 7355, 63882, 67, range(7, 20)),
])
def test_official_cm_counts(split, suffix, bona, spoof, speakers, systems):
    entries = read_cm_protocol(ref(f"ASVspoof2019.LA.cm.{suffix}.txt"))
    assert Counter(e.key for e in entries) == {"bonafide": bona, "spoof": spoof}
    assert sum(e.label for e in entries) == bona
    assert {e.system for e in entries} == {"-"} | {f"A{k:02d}" for k in systems}
    assert len({e.speaker for e in entries}) == speakers
    assert len({e.utt for e in entries}) == len(entries)


def test_train_speaker_lists():
    bona, spoof = utterances_by_speaker(read_cm_protocol(ref("ASVspoof2019.LA.cm.train.trn.txt")))
    assert len(bona) == 20 and set(bona) == set(spoof)
    assert sum(map(len, bona.values())) == 2580 and sum(map(len, spoof.values())) == 22800
    assert min(map(len, bona.values())) >= 2


@pytest.mark.parametrize("split,female,male,utts", [("dev", 6, 4, 142), ("eval", 27, 21, 696)])
def test_official_enrolment_lists(split, female, male, utts):
    f = read_enrolment(ref(f"ASVspoof2019.LA.asv.{split}.female.trn.txt"))
    m = read_enrolment(ref(f"ASVspoof2019.LA.asv.{split}.male.trn.txt"))
    assert (len(f), len(m)) == (female, male)
    both = read_enrolment([ref(f"ASVspoof2019.LA.asv.{split}.female.trn.txt"),
                           ref(f"ASVspoof2019.LA.asv.{split}.male.trn.txt")])
    assert both == {**f, **m}
    assert sum(map(len, both.values())) == utts
    # enrolment utterances are not in the CM protocol; every trial speaker is enrolled
    cm_utts = {e.utt for e in read_cm_protocol(ref(f"ASVspoof2019.LA.cm.{split}.trl.txt"))}
    assert not cm_utts & {u for us in both.values() for u in us}
    trials = read_sasv_trials(ref(f"ASVspoof2019.LA.asv.{split}.gi.trl.txt"))
    assert {t.speaker for t in trials} == set(both)
    assert {t.utt for t in trials} <= cm_utts
    concat = read_enrolment_concat(ref(f"ASVspoof2019.LA.asv.{split}.gi.trn.txt"))
    assert set(concat) == set(both)
    assert all(stem == f"{spk}_{both[spk][0]}" for spk, stem in concat.items())


# ---- malformed input ----------------------------------------------------------------------------
def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("reader,text,match", [
    (read_cm_protocol, "LA_0079 LA_T_1 - - bonafide\nLA_0079 LA_T_2 - A01\n", r"list\.txt:2: expected 5 columns"),
    (read_cm_protocol, "LA_0079 LA_T_1 - - bonafide\nLA_0079 LA_T_2 - A01 fake\n", r"list\.txt:2: unknown key 'fake'"),
    (read_cm_protocol, "LA_0079 LA_T_1 - A01 bonafide\n", r"list\.txt:1: bona fide utterance LA_T_1 has system 'A01'"),
    (read_cm_protocol, "LA_0079 LA_T_1 - - spoof\n", r"list\.txt:1: spoof utterance LA_T_1 has system '-'"),
    (read_sasv_trials, "LA_0015 LA_E_1 bonafide target extra\n", r"list\.txt:1: expected 4 columns"),
    (read_sasv_trials, "LA_0015 LA_E_1 bonafide target\n\nLA_0015 LA_E_2 bonafide impostor\n",
     r"list\.txt:3: unknown key 'impostor'"),
    (read_sasv_trials, "LA_0015 LA_E_1 A07 target\n", r"list\.txt:1: key 'target' does not fit attack 'A07'"),
    (read_sasv_trials, "LA_0015 LA_E_1 bonafide spoof\n", r"list\.txt:1: key 'spoof' does not fit"),
    (read_sasv_trials, "LA_0015 LA_E_1 X99 spoof\n", r"list\.txt:1: unknown attack 'X99'"),
    (read_train_list, "id00012 id00012/a/1.wav\nid00012\n", r"list\.txt:2: expected 2 columns"),
    (read_trial_list, "1 a.wav b.wav\n1 a.wav\n", r"list\.txt:2: expected 3 columns"),
    (read_trial_list, "true a.wav b.wav\n", r"list\.txt:1: unknown label 'true'"),
])
def test_malformed_line_names_file_and_line(tmp_path, reader, text, match):
    """ASVspoof CM protocols, SASV trial lists, VoxCeleb train and trial lists."""
    with pytest.raises(ValueError, match=match):
        reader(_write(tmp_path, "list.txt", text))


def test_enrolment_errors(tmp_path):
    female = _write(tmp_path, "female.trn.txt", "LA_0001 LA_D_1,LA_D_2\nLA_0002 LA_D_3\n")
    male = _write(tmp_path, "male.trn.txt", "LA_0003 LA_D_4\nLA_0001 LA_D_5\n")
    with pytest.raises(ValueError, match=(r"male\.trn\.txt:2: speaker LA_0001 listed twice "
                                          r"\(first at .*female\.trn\.txt:1\)")):
        read_enrolment([female, male])
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected 2 columns"):
        read_enrolment(_write(tmp_path, "bad.txt", "LA_0001 LA_D_1, LA_D_2\n"))
    with pytest.raises(ValueError, match=r"comma\.txt:1: empty utterance id"):
        read_enrolment(_write(tmp_path, "comma.txt", "LA_0001 LA_D_1,,LA_D_2\n"))
    with pytest.raises(ValueError, match=r"gi\.txt:2: speaker LA_0001 listed twice"):
        read_enrolment_concat(_write(tmp_path, "gi.txt", "LA_0001 LA_0001_LA_D_1\nLA_0001 LA_0001_LA_D_2"))
    assert read_enrolment(female) == {"LA_0001": ["LA_D_1", "LA_D_2"], "LA_0002": ["LA_D_3"]}


def test_missing_protocol_is_missing_files_error(tmp_path):
    with pytest.raises(MissingFilesError, match=r"nope\.txt: protocol file does not exist"):
        read_cm_protocol(tmp_path / "nope.txt")
    with pytest.raises(ValueError):  # MissingFilesError is also a ValueError
        read_sasv_trials(tmp_path / "nope.txt")


def test_check_files_exist(tmp_path):
    present = [tmp_path / f"a{k}.flac" for k in range(3)]
    for p in present:
        p.write_bytes(b"x")
    check_files_exist(present, "test audio")
    wanted = present + [tmp_path / f"gone{k}.flac" for k in range(5)] + [tmp_path / "nodir" / "b.flac"]
    with pytest.raises(MissingFilesError) as info:
        check_files_exist(wanted, "test audio")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("test audio: 6 of 9 files missing: ") and "gone0.flac" in msg and msg.endswith(", ...")
    with pytest.raises(MissingFilesError, match=r"^test audio: 6 of 9 files missing: "):  # a generator is consumed once
        check_files_exist((str(p) for p in wanted), "test audio")
    check_files_exist(iter(present), "test audio")


def test_protocol_lines_stream_with_numbers_and_encoding_errors(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"id00012 id00012/a/1.wav\r\n\n  \nid00013 id00013/b/2.wav\n")
    assert [(e.speaker, e.path) for e in read_train_list(path)] == [("id00012", "id00012/a/1.wav"),
                                                                     ("id00013", "id00013/b/2.wav")]
    path.write_bytes(b"id00012 id00012/a/1.wav\nid00013\n")
    with pytest.raises(ValueError, match=r"list\.txt:2: expected 2 columns"):   # line numbers count blank lines
        read_train_list(path)
    path.write_bytes(b"id00012 id00012/a/1.wav\nid\xff id/b.wav\n")
    with pytest.raises(ValueError, match=r"list\.txt:2: train list is not UTF-8 text \(byte 0xff\)"):
        read_train_list(path)


def test_voxceleb_train_set_finds_a_repeated_file_without_a_dict_of_paths(tmp_path):
    """train_set checks repeats by hash in arrays (a 1.09 M-line list); same rule and message as read_train_list."""
    lines = ["id1 id1/a/1.wav", "id2 id2/b/1.wav", "", "id1 id1/a/2.wav", "id2 id2/b/1.wav", "id1 id1/a/1.wav"]
    (tmp_path / "train_list.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train_list\.txt:5: file id2/b/1\.wav listed twice \(first on line 2\)"):
        VoxCeleb(tmp_path).train_set(check=False)
    with pytest.raises(ValueError, match=r"train_list\.txt:5: file id2/b/1\.wav listed twice \(first on line 2\)"):
        read_train_list(tmp_path / "train_list.txt")
    (tmp_path / "train_list.txt").write_text("\n".join(lines[:4]) + "\n")
    paths, labels, index = VoxCeleb(tmp_path).train_set(check=False)
    assert [paths.relative(i) for i in range(len(paths))] == ["id1/a/1.wav", "id2/b/1.wav", "id1/a/2.wav"]
    assert list(labels) == [0, 1, 0] and index == {"id1": 0, "id2": 1}


# ---- LADatabase on a small tree -----------------------------------------------------------------
def _la_tree(root: Path) -> LADatabase:
    cm = root / "ASVspoof2019_LA_cm_protocols"
    asv = root / "ASVspoof2019_LA_asv_protocols"
    cm.mkdir(parents=True)
    asv.mkdir()
    (cm / "ASVspoof2019.LA.cm.train.trn.txt").write_text("LA_0079 LA_T_1 - - bonafide\nLA_0079 LA_T_2 - A01 spoof\n")
    (cm / "ASVspoof2019.LA.cm.dev.trl.txt").write_text("LA_0069 LA_D_1 - - bonafide\nLA_0070 LA_D_2 - A02 spoof\n")
    (asv / "ASVspoof2019.LA.asv.dev.gi.trl.txt").write_text("LA_0069 LA_D_1 bonafide target\n"
                                                            "LA_0069 LA_D_2 A02 spoof\n")
    (asv / "ASVspoof2019.LA.asv.dev.female.trn.txt").write_text("LA_0069 LA_D_10,LA_D_11\n")
    (asv / "ASVspoof2019.LA.asv.dev.male.trn.txt").write_text("LA_0070 LA_D_12\n")
    (asv / "ASVspoof2019.LA.asv.dev.gi.trn.txt").write_text("LA_0069 LA_0069_LA_D_10\nLA_0070 LA_0070_LA_D_12\n")
    return LADatabase(root)


def test_la_database_paths_and_check(tmp_path):
    db = _la_tree(tmp_path)
    assert db.audio("train", "LA_T_1") == tmp_path / "ASVspoof2019_LA_train" / "flac" / "LA_T_1.flac"
    assert db.enr_audio_file("dev", "LA_0069_LA_D_10") == tmp_path / "enr_audio" / "dev" / "LA_0069_LA_D_10.flac"
    assert (LADatabase(tmp_path, enr_audio=tmp_path / "x").enr_audio_file("eval", "s")
            == tmp_path / "x" / "eval" / "s.flac")
    assert db.utterances("dev") == ["LA_D_1", "LA_D_2", "LA_D_10", "LA_D_11", "LA_D_12"]
    assert db.utterances("train") == ["LA_T_1", "LA_T_2"]
    assert db.enrolment("dev") == {"LA_0069": ["LA_D_10", "LA_D_11"], "LA_0070": ["LA_D_12"]}
    assert db.enrolment_concat("dev")["LA_0070"] == "LA_0070_LA_D_12"
    assert [t.key for t in db.sasv_trials("dev")] == ["target", "spoof"]
    with pytest.raises(ValueError, match="unknown split 'test'"):
        db.audio("test", "x")
    with pytest.raises(ValueError, match="unknown split 'train'"):
        db.sasv_trials_path("train")
    with pytest.raises(MissingFilesError, match=r"dev audio .*: 5 of 5 files missing: .*LA_D_1\.flac"):
        db.check_split("dev")
    with pytest.raises(MissingFilesError, match=r"eval protocols .*: 4 of 4 files missing"):
        db.check_split("eval")
    for utt in db.utterances("dev"):
        path = db.audio("dev", utt)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(160, np.float32), 16000)
    assert db.check_split("dev") == db.utterances("dev")
    with pytest.raises(MissingFilesError, match=r"concatenated enrolment audio .*2 of 2 files missing"):
        db.check_split("dev", enr_audio=True)


# ---- VoxCeleb lists ------------------------------------------------------------------------------
def test_voxceleb_lists(tmp_path):
    (tmp_path / "train_list.txt").write_text(
        "id00012 id00012/21Uxsk56VDQ/00001.wav\nid00005 id00005/abc/00001.wav\nid00012 id00012/x/00002.wav\n")
    (tmp_path / "veri_test.txt").write_text("1 id1/v/00001.wav id1/w/00002.wav\n0 id1/v/00001.wav id2/v/00001.wav\n")
    vox = VoxCeleb(tmp_path)
    assert [e.speaker for e in vox.train_entries()] == ["id00012", "id00005", "id00012"]
    assert speaker_index(["b", "a", "b"]) == {"a": 0, "b": 1}
    with pytest.raises(MissingFilesError, match=(r"VoxCeleb train audio .*3 of 3 files missing: "
                                                 r".*wav/id00012/21Uxsk56VDQ/00001\.wav")):
        vox.train_set()
    paths, labels, index = vox.train_set(check=False)
    assert labels == [1, 0, 1] and index == {"id00005": 0, "id00012": 1}
    assert paths[0] == tmp_path / "wav" / "id00012" / "21Uxsk56VDQ" / "00001.wav"
    assert list(paths) == [tmp_path / "wav" / e.path for e in vox.train_entries()]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.txt: train list is empty"):
        VoxCeleb(tmp_path, train_list=tmp_path / "empty.txt").train_set(check=False)
    trials = vox.trials()
    assert [(t.label, t.enrol, t.test) for t in trials][1] == (0, "id1/v/00001.wav", "id2/v/00001.wav")
    assert vox.trial_files(check=False) == ["id1/v/00001.wav", "id1/w/00002.wav", "id2/v/00001.wav"]
    with pytest.raises(MissingFilesError, match="3 of 3 files missing"):
        vox.trial_files()



# ---- ids are names, not paths (data/names.py) ------------------------------------------------------
REAL_IDS = ["LA_T_1138215", "LA_0079", "id10270", "T_0000000000", "0", "spk1-utt_2:3+4@5", "LA_E_1.v2", ".hidden",
            "Ünïcödé", "话者"]
BAD_IDS = [("../../../../x", "holds a separator, '/'"), ("/abs/path/x", "holds a separator, '/'"),
           ("a\\b", "holds a separator, '\\\\'"), ("..", "names a folder"), (".", "names a folder"),
           ("LA\x00X", "control character, '\\x00'"), ("LA\x07", "control character, '\\x07'"),
           ("LA\x7f", "control character"), ("LA\x9b", "control character")]


@pytest.mark.parametrize("reader,line", [
    (read_cm_protocol, "LA_0079 {} - - bonafide"),
    (read_sasv_trials, "LA_0079 {} bonafide target"),
    (read_enrolment, "LA_0079 LA_D_1,{}"),
    (read_enrolment_concat, "LA_0079 {}"),
], ids=["cm_protocol", "sasv_trials", "enrolment", "enrolment_concat"])
def test_list_ids_are_names_not_paths(tmp_path, reader, line):
    """Every LA reader whose ids become file names refuses separators, '.', '..' and control characters, naming
    the file and line in one line; real ids of several corpora pass."""
    good = [line.format(i) for i in ("LA_D_2", *REAL_IDS)]
    path = tmp_path / "list.txt"
    path.write_text("\n".join(line.replace("LA_0079", f"LA_{k:04d}") for k, line in enumerate(good)) + "\n")
    assert len(reader(path)) == len(good)
    for bad, why in BAD_IDS:
        path.write_text(f"{good[0]}\n\n{line.format(bad).replace('LA_0079', 'LA_9999')}\n", encoding="utf-8")
        with pytest.raises(ProtocolError) as info:
            reader(path)
        message = str(info.value)
        assert message.startswith(f"{path}:3: ") and why in message and repr(bad) in message, message
        assert "\n" not in message and "not a path" in message


GOOD_PATHS = ["id10001/1zcIwhmdeo4/00001.wav", "a.wav", "id1/.hidden/x.wav", "id1/v..2/x.wav", "话者/x.wav"]
BAD_PATHS = [("/abs/x.wav", "is absolute"), ("../x.wav", "has a '..' component"),
             ("id1/../../x.wav", "has a '..' component"), ("./id1/x.wav", "has a '.' component"),
             ("id1/./x.wav", "has a '.' component"), ("id1//x.wav", "has an empty component"),
             ("id1/x/", "has an empty component"), ("id1\\x.wav", "holds a separator, '\\\\'"),
             ("id1/\x01.wav", "holds a control character, '\\x01'")]


def test_voxceleb_paths_stay_inside_wav(tmp_path):
    """Train and trial lists (both columns), streamed or not: relative paths of names, nothing else."""
    vox = VoxCeleb(tmp_path)
    good = "\n".join(f"id1 {p}" for p in GOOD_PATHS) + "\n"
    vox.train_list_path.write_text(good)
    assert [e.path for e in vox.train_entries()] == GOOD_PATHS
    assert len(vox.train_set(check=False)[0]) == len(GOOD_PATHS)
    vox.trial_list_path.write_text("".join(f"1 {p} {GOOD_PATHS[0]}\n" for p in GOOD_PATHS[1:]))
    assert len(vox.trials()) == len(GOOD_PATHS) - 1
    for bad, why in BAD_PATHS:
        vox.train_list_path.write_text(f"{good}id2 {bad}\n", encoding="utf-8")
        for parse in (vox.train_entries, lambda: vox.train_set(check=False)):
            with pytest.raises(ProtocolError) as info:
                parse()
            message = str(info.value)
            assert message.startswith(f"{vox.train_list_path}:{len(GOOD_PATHS) + 1}: path {bad!r} {why}"), message
            assert f"relative to {tmp_path / 'wav'}" in message and "\n" not in message
        for row in (f"0 {bad} {GOOD_PATHS[0]}", f"0 {GOOD_PATHS[0]} {bad}"):
            vox.trial_list_path.write_text(f"1 {GOOD_PATHS[0]} {GOOD_PATHS[1]}\n{row}\n", encoding="utf-8")
            with pytest.raises(ProtocolError, match=rf"^{re.escape(str(vox.trial_list_path))}:2: path "):
                vox.trials()


def test_name_rule_fast_path_never_passes_what_the_rule_refuses():
    """The readers' cheap first test and the exact rule agree on random strings of the risky characters: a fast
    path that let one bad id through would read a file outside the database."""
    rng = np.random.default_rng(0)
    alphabet = list("a./\\_-") + ["\x00", "\x1f", "\x7f", "\x9f", "é"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet, rng.integers(1, 7)))
        for check, problem, args in ((check_name, name_problem, ()), (check_relative_path, relative_path_problem,
                                                                    ("wav",))):
            if problem(text) is None:
                assert check(text, "list.txt", 1, *args) == text
            else:
                with pytest.raises(ProtocolError):
                    check(text, "list.txt", 1, *args)
    assert relative_path_problem("a/b/c.wav") is None and relative_path_problem("a/b/") is not None
    assert name_problem("") == "is empty" and relative_path_problem("") == "is empty"


# ---- lists with no entries ----------------------------------------------------------------------------
@pytest.mark.parametrize("reader,message", [
    (read_cm_protocol, "the CM protocol lists no utterances"),
    (read_sasv_trials, "the trial list has no trials"),
    (read_enrolment, "the enrolment list names no speakers"),
    (read_enrolment_concat, "the enrolment list names no speakers"),
    (read_train_list, "train list is empty"),
    (read_trial_list, "the trial list has no trials"),
    (lambda p: VoxCeleb(p.parent, train_list=p).train_set(check=False), "train list is empty"),
], ids=["cm_protocol", "sasv_trials", "enrolment", "enrolment_concat", "vox_train", "vox_trials", "train_set"])
@pytest.mark.parametrize("text", ["", "\n  \n\t\n"], ids=["empty", "blank_lines"])
def test_a_list_with_no_entries_is_an_error_naming_it(tmp_path, reader, message, text):
    path = _write(tmp_path, "list.txt", text)
    with pytest.raises(ProtocolError, match=rf"^{re.escape(str(path))}: {message}$"):
        reader(path)


def test_enrolment_lists_with_no_speakers_at_all_and_a_line_with_no_files(tmp_path):
    female, male = _write(tmp_path, "female.txt", ""), _write(tmp_path, "male.txt", "\n")
    with pytest.raises(ProtocolError, match=rf"^{re.escape(f'{female}, {male}')}: the enrolment lists name no "):
        read_enrolment([female, male])
    male.write_text("LA_0003 LA_D_4\n")                          # one gender only: still speakers to enrol
    assert read_enrolment([female, male]) == {"LA_0003": ["LA_D_4"]}
    male.write_text("LA_0003 LA_D_4\nLA_0004 ,\n")
    with pytest.raises(ProtocolError, match=r"male\.txt:2: empty utterance id in the list of speaker LA_0004"):
        read_enrolment([female, male])


def test_the_layout_is_detected_or_refused_in_one_line(tmp_path):
    """data.format auto: the one layout a folder fits; a folder that fits none says, per layout, what it lacks."""
    from common.errors import InputError
    from data.databases import detect_format, open_database
    from synthetic import generate_corpus

    corpus = generate_corpus(tmp_path / "corpus", "tiny", seed=0)
    assert detect_format(corpus.la) == "asvspoof2019_la"
    assert open_database(corpus.la).format == "asvspoof2019_la"
    with pytest.raises(InputError, match=r"no known layout \(asvspoof2019_la: no ASVspoof2019_LA_cm_protocols/"):
        detect_format(tmp_path)
    with pytest.raises(InputError, match="data.format must be one of auto, asvspoof2019_la"):
        open_database(corpus.la, "asvspoof2019")
