"""The readers of ASVspoof 2021 LA / DF, In-the-Wild and Kaldi-style lists (data/asvspoof2021.py,
data/in_the_wild.py, data/kaldi_lists.py) on the small layouts synthetic/cm_sets.py makes from the tiny corpus:
what each column becomes, the subsets, detection among every registered layout, and bad input as one line naming
the file and line."""
from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from common.errors import InputError, MissingFilesError, ProtocolError
from data.asvspoof import LADatabase
from data.asvspoof2021 import (
    DF_COMPRESSIONS,
    LA_CODECS,
    DF2021Database,
    LA2021Database,
    read_df_cm_key,
)
from data.databases import FORMATS, detect_format, open_database
from data.in_the_wild import InTheWildDatabase
from data.kaldi_lists import ListsDatabase
from synthetic.cm_sets import LAYOUTS, write_layout
from tests.pipeline_fixtures import tiny_corpus  # noqa: F401  (session fixture)


@pytest.fixture(scope="module")
def layouts(tiny_corpus, tmp_path_factory) -> dict[str, Path]:   # noqa: F811
    """Every synthetic layout, written once for the module: name -> its `database` folder."""
    root = tmp_path_factory.mktemp("layouts")
    return {name: write_layout(name, tiny_corpus, root / name) for name in LAYOUTS}


def copy_layout(layouts, name: str, tmp_path: Path) -> Path:
    """A private copy of one layout's folder (to break it); its `database` folder in the copy."""
    src = layouts[name]
    top = src.parent if name == "in_the_wild" else src
    shutil.copytree(top, tmp_path / name)
    return tmp_path / name / src.relative_to(top)


def one_line(error: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


def key_columns(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


# ---- ASVspoof 2021 LA -----------------------------------------------------------------------------
def test_2021_la_entries_conditions_and_subsets(layouts, tiny_corpus):  # noqa: F811
    db = open_database(layouts["asvspoof2021_la"], "asvspoof2021_la")
    assert isinstance(db, LA2021Database) and db.trial_splits == () and not db.concat_enrolment
    lines = key_columns(db.cm_protocol_path("eval"))
    by_subset = Counter(f[7] for f in lines)
    assert set(by_subset) == {"eval", "progress", "hidden"}
    for split in ("eval", "progress", "hidden"):
        entries = db.cm_entries(split)
        assert [e.utt for e in entries] == [f[1] for f in lines if f[7] == split]
    assert [e.utt for e in db.cm_entries("all")] == [f[1] for f in lines]
    source = {e.utt: e for e in LADatabase(tiny_corpus.la).cm_entries("eval")}
    for f, e in zip(lines, db.cm_entries("all"), strict=True):
        assert (e.speaker, e.codec, e.codec_q, e.key) == (f[0], f[2], f[3], f[5])
        assert e.system == ("-" if f[5] == "bonafide" else f[4]) == source[e.utt].system   # the file says 'bonafide'
        assert f[4] == ("bonafide" if e.is_bonafide else e.system)
    assert {e.codec for e in db.cm_entries("all")} == set(LA_CODECS)
    assert db.audio("eval", "LA_E_1") == layouts["asvspoof2021_la"] / "ASVspoof2021_LA_eval" / "flac" / "LA_E_1.flac"
    assert db.check_split("eval") == [e.utt for e in db.cm_entries("eval")]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        db.cm_entries("dev")


def test_2021_la_has_no_sasv_trials_but_the_asv_key_and_scores_for_t_dcf(layouts):
    db = LA2021Database(layouts["asvspoof2021_la"])
    with pytest.raises(InputError) as e:
        db.sasv_trials("eval")
    one_line(e, "countermeasure-only", "asvspoof2021_la", "task cm")
    with pytest.raises(InputError, match="countermeasure-only"):
        db.enrolment("eval")
    lines = key_columns(db.asv_key_path())
    scores = [float(f[2]) for f in key_columns(db.asv_scores_path())]
    trials, got = db.asv_key_scores("eval")
    assert [(t.speaker, t.utt, t.key) for t in trials] == [(f[0], f[1], f[5]) for f in lines if f[7] == "eval"]
    assert got.tolist() == [s for f, s in zip(lines, scores, strict=True) if f[7] == "eval"]
    assert {t.key for t in trials} == {"target", "nontarget", "spoof"}
    assert trials[0].speaker.endswith(f"-{trials[0].codec}-{trials[0].transmission}")
    assert len(db.asv_key_scores("all")[1]) == len(lines)
    assert db.protocol_files(["eval", "progress"]) == [db.cm_protocol_path("eval"), db.asv_key_path(),
                                                     db.asv_scores_path()]


def test_2021_la_keys_inside_the_audio_release_folder(layouts, tmp_path):
    root = copy_layout(layouts, "asvspoof2021_la", tmp_path)
    (root / "keys").rename(root / "ASVspoof2021_LA_eval" / "keys")
    assert detect_format(root) == "asvspoof2021_la"
    db = LA2021Database(root)
    assert db.cm_protocol_path("eval") == root / "ASVspoof2021_LA_eval" / "keys" / "LA" / "CM" / "trial_metadata.txt"
    assert len(db.cm_entries("all")) == len(LA2021Database(layouts["asvspoof2021_la"]).cm_entries("all"))


def test_2021_la_keys_in_both_places_read_the_ones_beside_and_say_so(layouts, tmp_path, caplog):
    root = copy_layout(layouts, "asvspoof2021_la", tmp_path)
    shutil.copytree(root / "keys", root / "ASVspoof2021_LA_eval" / "keys")
    with caplog.at_level(logging.INFO, logger="data"):
        assert LA2021Database(root).cm_protocol_path("eval") == root / KEY_2021
    assert f"keys in both {root / 'keys'} and" in caplog.text and f"reading {root / 'keys'}" in caplog.text


def test_2021_la_asv_scores_must_pair_with_the_key_line_by_line(layouts, tmp_path):
    db = LA2021Database(copy_layout(layouts, "asvspoof2021_la", tmp_path))
    lines = db.asv_scores_path().read_text().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    db.asv_scores_path().write_text("\n".join(lines) + "\n")
    with pytest.raises(ProtocolError) as e:
        db.asv_key_scores("eval")
    one_line(e, "score.txt:3:", "trial 3 of", "line by line")
    lines[2], lines[3] = lines[3], lines[2]
    db.asv_scores_path().write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(ProtocolError, match=r"score\.txt: 5 scores for the \d+ trials"):
        db.asv_key_scores("eval")


# ---- ASVspoof 2021 DF -----------------------------------------------------------------------------
def test_2021_df_entries_conditions_and_vocoders(layouts):
    db = open_database(layouts["asvspoof2021_df"])
    assert isinstance(db, DF2021Database) and db.format == "asvspoof2021_df" and db.trial_splits == ()
    lines = key_columns(db.cm_protocol_path("eval"))
    assert all(len(f) == 13 for f in lines)
    entries = db.cm_entries("all")
    for f, e in zip(lines, entries, strict=True):
        assert (e.speaker, e.utt, e.codec, e.codec_q, e.key) == (f[0], f[1], f[2], f[3], f[5])
        assert e.system == ("-" if f[5] == "bonafide" else f[4])
        assert e.vocoder == ("-" if f[5] == "bonafide" else f[8])
    assert {e.codec for e in entries} == set(DF_COMPRESSIONS)
    assert {e.codec_q for e in entries} == {"asvspoof", "vcc2018", "vcc2020"}
    assert {"Task1-team20", "SPO-N12"} <= {e.system for e in entries}
    assert [e.utt for e in db.cm_entries("eval")] == [f[1] for f in lines if f[7] == "eval"]
    assert db.audio("hidden", "DF_E_2000001").name == "DF_E_2000001.flac"
    db.check_split("all")


def test_2021_key_parses_within_a_small_factor_of_splitting_its_lines(tmp_path):
    """30k DF key lines: the checks, interning and one record per line cost a small multiple of splitting them
    (timed together, so a busy machine slows both; absolute figures: docs/benchmarks.md)."""
    path = tmp_path / "trial_metadata.txt"
    path.write_text("".join(f"LA_00{i % 40:02d} DF_E_{2000000 + i} {DF_COMPRESSIONS[i % 9]} asvspoof "
                            f"{'bonafide' if i % 10 == 0 else 'A%02d' % (7 + i % 13)} "
                            f"{'bonafide' if i % 10 == 0 else 'spoof'} notrim {('eval', 'progress')[i % 2]} "
                            f"{'bonafide' if i % 10 == 0 else 'neural_vocoder_autoregressive'} - - - -\n"
                            for i in range(30_000)))

    def best_of(fn, n=3):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    split_only = best_of(lambda: [line.split() for line in path.read_text().splitlines()])
    assert best_of(lambda: read_df_cm_key(path)) < 10 * split_only
    key = read_df_cm_key(path)
    assert len(key.entries) == 30_000 and key.subsets[:2] == ["eval", "progress"]
    assert key.entries[1].codec is key.entries[10].codec          # condition strings interned: one object each


# ---- In-the-Wild ----------------------------------------------------------------------------------
def test_in_the_wild_entries_speakers_and_detection(layouts, tiny_corpus):  # noqa: F811
    release = layouts["in_the_wild"]
    assert release.name == "release_in_the_wild"
    assert detect_format(release) == detect_format(release.parent) == "in_the_wild"
    db = open_database(release.parent)
    assert isinstance(db, InTheWildDatabase) and db.splits == ("eval",) and db.trial_splits == ()
    assert db.audio_dir("eval") == release
    source = [e for s in ("dev", "eval") for e in LADatabase(tiny_corpus.la).cm_entries(s)]
    entries = db.cm_entries("eval")
    assert [e.utt for e in entries] == [str(i) for i in range(len(source))]
    assert [e.speaker for e in entries] == [e.speaker for e in source]          # 'LA 0005' in meta.csv: spaces -> _
    assert "LA 0005" in (release / "meta.csv").read_text()
    assert [e.key for e in entries] == [e.key for e in source]
    assert {e.system for e in entries if not e.is_bonafide} == {"unknown"}
    assert {e.system for e in entries if e.is_bonafide} == {"-"}
    assert db.audio("eval", "3") == release / "3.wav"
    assert db.check_split("eval") == [e.utt for e in entries]
    assert db.protocol_files(["eval"]) == [release / "meta.csv"]


# ---- Kaldi-style lists ----------------------------------------------------------------------------
def test_lists_splits_entries_trials_and_enrolment(layouts, tiny_corpus):  # noqa: F811
    root = layouts["lists"]
    db = open_database(root)
    la = LADatabase(tiny_corpus.la)
    assert isinstance(db, ListsDatabase)
    assert db.splits == ("train", "dev", "eval") and db.trial_splits == ("dev", "eval")
    for split in ("train", "dev", "eval"):
        got, want = db.cm_entries(split), la.cm_entries(split)
        assert [(e.speaker, e.utt, e.key) for e in got] == [(e.speaker, e.utt, e.key) for e in want]
        spoof_systems = {e.system for e in got if not e.is_bonafide}
        assert spoof_systems == ({"unknown"} if split == "dev" else {e.system for e in want if not e.is_bonafide})
        assert db.check_split(split) == la.utterances(split)
    for split in ("dev", "eval"):
        assert db.enrolment(split) == la.enrolment(split)
        trials = db.sasv_trials(split)
        assert [(t.speaker, t.utt, t.key) for t in trials] == [(t.speaker, t.utt, t.key) for t in la.sasv_trials(split)]
        assert {t.attack for t in trials if t.key != "spoof"} == {"bonafide"}
    assert [t.attack for t in db.sasv_trials("eval")] == [t.attack for t in la.sasv_trials("eval")]
    first = next(iter(db._split("train").audio))
    assert db.audio("train", first) == root / "train" / "wav dir" / f"{first}.flac"     # relative, with a space
    assert db.audio("eval", "LA_E_9727951").is_absolute()
    assert db.protocol_files(["train"]) == [root / "train" / n for n in ("wav.scp", "utt2spk", "utt2label")]
    assert len(db.protocol_files(["dev"])) == 5
    with pytest.raises(MissingFilesError) as e:
        db.sasv_trials("train")
    one_line(e, "train/trials: does not exist", "no SASV trials")


def test_lists_split_without_labels_is_not_a_cm_split(layouts, tmp_path):
    root = copy_layout(layouts, "lists", tmp_path)
    (root / "train" / "utt2label").unlink()
    db = ListsDatabase(root)
    assert db.splits == ("dev", "eval")
    with pytest.raises(MissingFilesError) as e:
        db.cm_entries("train")
    one_line(e, "train/utt2label: does not exist", "no CM labels")
    (root / "dev" / "spk2utt").unlink()
    with pytest.raises(MissingFilesError) as e:
        db.sasv_trials("dev")
    one_line(e, "dev/spk2utt: does not exist", "need its enrolment")


# ---- detection among every registered layout ------------------------------------------------------
def test_auto_detection_among_all_layouts(layouts, tiny_corpus, tmp_path):  # noqa: F811
    assert set(FORMATS) >= {"asvspoof2019_la", *LAYOUTS}
    assert detect_format(tiny_corpus.la) == "asvspoof2019_la"
    for name, folder in layouts.items():
        assert detect_format(folder) == name
        assert open_database(folder).format == name
    with pytest.raises(InputError) as e:
        detect_format(tmp_path)
    one_line(e, "matches no known layout", "asvspoof2021_la: no ASVspoof2021_LA_eval/flac/, keys/LA/CM/trial_metadata",
             "asvspoof2021_df: no ASVspoof2021_DF_eval/flac/", "in_the_wild: no meta.csv (or release_in_the_wild/",
             "lists: no train/, dev/ or eval/ holding wav.scp and utt2spk")
    both = copy_layout(layouts, "asvspoof2021_la", tmp_path)
    shutil.copytree(layouts["asvspoof2021_df"], both, dirs_exist_ok=True)      # LA and DF keys in one keys/ folder
    with pytest.raises(InputError) as e:
        detect_format(both)
    one_line(e, "fits several layouts (asvspoof2021_la, asvspoof2021_df)", "set data.format")
    assert open_database(both, "asvspoof2021_df").format == "asvspoof2021_df"
    with pytest.raises(InputError) as e:
        open_database(layouts["lists"], "lists", enr_audio=tmp_path)
    one_line(e, "enr_audio", "no concatenated enrolment")


# ---- bad input: one line naming the file and line -------------------------------------------------
def _replace_line(path: Path, number: int, text: str | None) -> None:
    """Line `number` (from 1) replaced by `text`, or removed (None), or `text` appended (number 0)."""
    lines = path.read_text().splitlines()
    if number == 0:
        lines.append(text)
    elif text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _nth(path: Path, number: int) -> list[str]:
    return path.read_text().splitlines()[number - 1].split()


KEY_2021 = "keys/LA/CM/trial_metadata.txt"


@pytest.mark.parametrize("edit,needles", [
    (lambda p: _replace_line(p, 2, " ".join(_nth(p, 2)[:7])), ["trial_metadata.txt:2:", "expected 8 columns"]),
    (lambda p: _replace_line(p, 3, " ".join(_nth(p, 3)[:5] + ["fake"] + _nth(p, 3)[6:])),
     ["trial_metadata.txt:3:", "unknown key 'fake'"]),
    (lambda p: _replace_line(p, 2, " ".join(_nth(p, 2)[:7] + ["final"])),
     ["trial_metadata.txt:2:", "unknown subset 'final'", "eval, progress, hidden"]),
    (lambda p: _replace_line(p, 1, " ".join(_nth(p, 1)[:4] + ["A07", "bonafide"] + _nth(p, 1)[6:])),
     ["trial_metadata.txt:1:", "bona fide trial", "has attack 'A07'"]),
    (lambda p: _replace_line(p, 0, " ".join(_nth(p, 4))), ["trial_metadata.txt:22:", "listed twice (first on line 4)"]),
    (lambda p: _replace_line(p, 5, " ".join(_nth(p, 5)[:1] + ["../../x"] + _nth(p, 5)[2:])),
     ["trial_metadata.txt:5:", "'../../x'", "not a path"]),
])
def test_2021_key_errors_name_file_and_line(layouts, tmp_path, edit, needles):
    root = copy_layout(layouts, "asvspoof2021_la", tmp_path)
    edit(root / KEY_2021)
    with pytest.raises(ProtocolError) as e:
        LA2021Database(root).cm_entries("eval")
    one_line(e, *needles)


def test_2021_missing_audio_names_the_key_line(layouts, tmp_path):
    root = copy_layout(layouts, "asvspoof2021_la", tmp_path)
    lines = key_columns(root / KEY_2021)
    eval_lines = [(n, f) for n, f in enumerate(lines, 1) if f[7] == "eval"]
    (n, f), (_, g) = eval_lines[2], eval_lines[5]
    for gone in (f[1], g[1]):
        (root / "ASVspoof2021_LA_eval" / "flac" / f"{gone}.flac").unlink()
    with pytest.raises(MissingFilesError) as e:
        LA2021Database(root).check_split("eval")
    one_line(e, f"trial_metadata.txt:{n}: audio", f"{f[1]}.flac does not exist", "(2 of 13 listed files missing)")


def test_2021_unknown_codec_is_accepted_and_reported(layouts, tmp_path, caplog):
    root = copy_layout(layouts, "asvspoof2021_df", tmp_path)
    with caplog.at_level(logging.WARNING, logger="data"):
        DF2021Database(root).cm_entries("all")
    assert "outside the documented set" not in caplog.text          # the documented values pass silently
    key = root / "keys" / "DF" / "CM" / "trial_metadata.txt"
    f = _nth(key, 1)
    _replace_line(key, 1, " ".join([f[0], f[1], "flac_q5", *f[3:]]))
    with caplog.at_level(logging.WARNING, logger="data"):
        entries = DF2021Database(root).cm_entries("all")
    assert entries[0].codec == "flac_q5"
    assert "compression values outside the documented set" in caplog.text and "'flac_q5' (1)" in caplog.text


@pytest.mark.parametrize("edit,needles", [
    (lambda p: p.write_text(p.read_text().replace("bona-fide", "bonafide", 1)),
     ["meta.csv:2:", "unknown label 'bonafide'", "'bona-fide' or 'spoof'"]),
    (lambda p: p.write_text(p.read_text() + "3.wav,Someone,spoof\n"), ["meta.csv:43:", "3.wav listed twice"]),
    (lambda p: p.write_text(p.read_text().replace("file,speaker,label", "name,speaker,label")),
     ["meta.csv:1:", "lacks file"]),
    (lambda p: p.write_text(p.read_text().replace("1.wav,", "1.flac,", 1)), ["meta.csv:3:", "not a .wav"]),
    (lambda p: p.write_text(p.read_text().replace("2.wav,", "2.wav,x,", 1)), ["meta.csv:4:", "expected 3"]),
])
def test_in_the_wild_errors_name_file_and_line(layouts, tmp_path, edit, needles):
    release = copy_layout(layouts, "in_the_wild", tmp_path)
    edit(release / "meta.csv")
    with pytest.raises(ProtocolError) as e:
        InTheWildDatabase(release).cm_entries("eval")
    one_line(e, *needles)


def test_in_the_wild_quoted_names_and_column_order(tmp_path):
    (tmp_path / "meta.csv").write_text('label,file,speaker\nspoof,0.wav,"Martin Luther King, Jr."\n'
                                       'bona-fide,1.wav,  Alec   Guinness \n')
    entries = InTheWildDatabase(tmp_path).cm_entries("eval")
    assert [(e.utt, e.speaker, e.key) for e in entries] == [("0", "Martin_Luther_King,_Jr.", "spoof"),
                                                            ("1", "Alec_Guinness", "bonafide")]


def test_in_the_wild_missing_audio_names_the_csv_line(layouts, tmp_path):
    release = copy_layout(layouts, "in_the_wild", tmp_path)
    (release / "7.wav").unlink()
    with pytest.raises(MissingFilesError) as e:
        InTheWildDatabase(release).check_split("eval")
    one_line(e, "meta.csv:9: audio", "7.wav does not exist")


def _lists_line(root: Path, split: str, name: str, number: int, text: str | None) -> None:
    _replace_line(root / split / name, number, text)


@pytest.mark.parametrize("split,name,number,text,needles", [
    ("eval", "wav.scp", 2, "{u} sox {p} -t wav - |", ["wav.scp:2:", "Kaldi pipe"]),
    ("eval", "wav.scp", 3, "{u} /data/feats.ark:1234", ["wav.scp:3:", "archive offset"]),
    ("eval", "wav.scp", 0, "{u1} {p}", ["wav.scp:", "listed twice"]),
    ("eval", "utt2label", 2, "{u} fake", ["utt2label:2:", "unknown label 'fake'"]),
    ("eval", "utt2label", 0, "nobody bonafide", ["utt2label:", "utterance nobody is not in", "wav.scp"]),
    ("eval", "utt2spk", 1, None, ["wav.scp:1:", "has no speaker in"]),
    ("eval", "spk2utt", 1, "{s}", ["spk2utt:1:", "has no enrolment utterances"]),
    ("eval", "trials", 0, "LA_9999 {t} target", ["trials:30:", "speaker LA_9999 has no enrolment line"]),
    ("eval", "trials", 1, "{ts} {e} target", ["trials:1:", "is an enrolment utterance", "spk2utt lists enrolment"]),
    ("eval", "trials", 1, "{ts} {t} spoof", ["trials:1:", "key spoof but", "labels", "bonafide"]),
    ("eval", "trials", 1, "{ts} {t} maybe", ["trials:1:", "unknown key 'maybe'"]),
    ("dev", "trials", 0, "{ts} {t} target", ["trials:29:", "listed twice (first on line 1)"]),
])
def test_lists_errors_name_file_and_line(layouts, tmp_path, split, name, number, text, needles):
    root = copy_layout(layouts, "lists", tmp_path)
    scp = (root / split / "wav.scp").read_text().splitlines()
    u, p = scp[number - 1 if number else 0].split(maxsplit=1)
    s, *enrolled = (root / split / "spk2utt").read_text().splitlines()[0].split()
    ts, t, _ = (root / split / "trials").read_text().splitlines()[0].split()
    if text is not None:
        text = text.format(u=u, p=p, u1=scp[1].split()[0], s=s, e=enrolled[0], ts=ts, t=t)
    _lists_line(root, split, name, number, text)
    with pytest.raises(ProtocolError) as e:
        ListsDatabase(root).check_split(split)
    one_line(e, *needles)


def test_lists_target_trial_of_another_speaker_and_nontarget_of_the_same(layouts, tmp_path):
    root = copy_layout(layouts, "lists", tmp_path)
    trials = [line.split() for line in (root / "dev" / "trials").read_text().splitlines()]
    n, (spk, utt, _) = next((n, f) for n, f in enumerate(trials, 1) if f[2] == "nontarget")
    _lists_line(root, "dev", "trials", n, f"{spk} {utt} target")
    with pytest.raises(ProtocolError) as e:
        ListsDatabase(root).sasv_trials("dev")
    one_line(e, f"trials:{n}:", f"target trial of speaker {spk}, but {utt} is of speaker")
    m, (spk2, utt2, _) = next((m, f) for m, f in enumerate(trials, 1) if f[2] == "target")
    _lists_line(root, "dev", "trials", n, " ".join(trials[n - 1]))
    _lists_line(root, "dev", "trials", m, f"{spk2} {utt2} nontarget")
    with pytest.raises(ProtocolError) as e:
        ListsDatabase(root).sasv_trials("dev")
    one_line(e, f"trials:{m}:", "nontarget trial", "of the claimed speaker")


def test_lists_missing_audio_and_a_file_in_two_splits(layouts, tmp_path):
    root = copy_layout(layouts, "lists", tmp_path)
    scp = root / "eval" / "wav.scp"
    u, _ = scp.read_text().splitlines()[4].split(maxsplit=1)
    _lists_line(root, "eval", "wav.scp", 5, f"{u} missing/{u}.flac")
    with pytest.raises(MissingFilesError) as e:
        ListsDatabase(root).check_split("eval")
    one_line(e, "eval/wav.scp:5: audio", f"missing/{u}.flac does not exist")
    train_audio = (root / "train" / "wav.scp").read_text().splitlines()[3].split(maxsplit=1)[1]
    _lists_line(root, "eval", "wav.scp", 5, f"{u} {root / 'train' / train_audio}")
    with pytest.raises(ProtocolError) as e:
        ListsDatabase(root).check_split("eval")
    one_line(e, "eval/wav.scp:5:", "is also listed in", "train/wav.scp:4 (split train)")


def test_write_layout_replaces_only_its_own_folder(tiny_corpus, tmp_path):  # noqa: F811
    dest = tmp_path / "mine"
    write_layout("in_the_wild", tiny_corpus, dest)
    (dest / "release_in_the_wild" / "extra.txt").write_text("x")
    write_layout("in_the_wild", tiny_corpus, dest)            # remade: what was added is gone
    assert not (dest / "release_in_the_wild" / "extra.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not written by the synthetic layout writer"):
        write_layout("lists", tiny_corpus, other)
    assert (other / "notes.txt").read_text() == "keep"


def test_generate_corpus_layout_flag_writes_the_layout_beside_the_corpus(tiny_corpus, tmp_path, capsys):  # noqa: F811
    """Into a private view of the session's corpus (shared by every test and xdist worker): its LA and VoxCeleb
    folders linked, its manifest copied, so the generator finds the corpus complete and only adds the layout."""
    import generate_corpus
    from synthetic import corpus_paths
    from synthetic.layout import MANIFEST
    from tests.pipeline_fixtures import call

    corpus = corpus_paths(tmp_path / "corpus")
    corpus.root.mkdir()
    for name in (tiny_corpus.la.name, tiny_corpus.voxceleb.name):
        (corpus.root / name).symlink_to(tiny_corpus.root / name, target_is_directory=True)
    shutil.copy(tiny_corpus.root / MANIFEST, corpus.root / MANIFEST)
    dest = corpus.root / "in_the_wild"
    rc, _ = call(generate_corpus.main, ["--out", str(corpus.root), "--preset", "tiny", "--layout", "in_the_wild"],
                 capsys)
    assert rc == 0
    assert detect_format(dest) == "in_the_wild"
    la = LADatabase(corpus.la)
    assert len(InTheWildDatabase(dest).cm_entries("eval")) == len(la.cm_entries("dev")) + len(la.cm_entries("eval"))
