"""Score-file formats: exact round trips, both bona fide conventions, one-line errors, trial alignment."""
from __future__ import annotations

import numpy as np
import pytest

from data.score_files import (
    CMScores,
    SASVScores,
    ScoreFileError,
    align_scores,
    detect_score_format,
    read_asvspoof5_cm,
    read_asvspoof5_early,
    read_asvspoof5_sasv,
    read_cm_scores,
    read_sasv_scores,
    score_texts,
    write_asvspoof5_cm,
    write_asvspoof5_sasv,
    write_cm_scores,
    write_sasv_scores,
)

SASV_LINES = ["LA_0015 LA_E_1 bonafide target 1.5", "LA_0015 LA_E_2 bonafide nontarget -0.25",
              "LA_0016 LA_E_3 A07 spoof 0.125"]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_sasv_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    scores = SASVScores(spk=["S1", "S1", "S2"], utt=["U1", "U2", "U3"], attack=["bonafide", "bonafide", "A19"],
                        key=["target", "nontarget", "spoof"], score=rng.normal(size=3) * 1e3)
    write_sasv_scores(tmp_path / "s.txt", scores)
    back = read_sasv_scores(tmp_path / "s.txt")
    assert (back.spk, back.utt, back.attack, back.key) == (scores.spk, scores.utt, scores.attack, scores.key)
    assert np.array_equal(back.score, scores.score)
    write_sasv_scores(tmp_path / "s.txt", scores)  # re-running overwrites, never appends
    assert len(read_sasv_scores(tmp_path / "s.txt")) == 3


def test_score_texts_are_exact_and_writers_given_them_write_the_same_files(tmp_path):
    values = np.array([1.5, -0.0, 0.1 + 0.2, 1e-5, 1e16, -123456.789e-300, 5e-324, np.pi])
    texts = score_texts(values)
    back = np.array([float(t) for t in texts])
    assert np.array_equal(back, values) and np.array_equal(np.signbit(back), np.signbit(values))
    assert texts[:2] == ["1.5", "-0.0"]
    n = values.size
    trials = SASVScores(spk=["S1"] * n, utt=[f"U{i}" for i in range(n)], attack=["bonafide"] * (n - 1) + ["A07"],
                        key=["target"] * (n - 1) + ["spoof"], score=values)
    write_sasv_scores(tmp_path / "plain.txt", trials)
    write_sasv_scores(tmp_path / "texts.txt", trials, texts)
    assert (tmp_path / "plain.txt").read_bytes() == (tmp_path / "texts.txt").read_bytes()
    columns = {"sasv": trials, "cm": SASVScores(trials.spk, trials.utt, trials.attack, trials.key, values[::-1])}
    write_asvspoof5_sasv(tmp_path / "p.tsv", tmp_path / "pk.tsv", columns)
    write_asvspoof5_sasv(tmp_path / "t.tsv", tmp_path / "tk.tsv", columns, {"cm": score_texts(values[::-1])})
    assert (tmp_path / "p.tsv").read_bytes() == (tmp_path / "t.tsv").read_bytes()
    assert (tmp_path / "pk.tsv").read_bytes() == (tmp_path / "tk.tsv").read_bytes()
    assert np.array_equal(read_asvspoof5_sasv(tmp_path / "t.tsv", tmp_path / "tk.tsv")["cm"].score, values[::-1])
    with pytest.raises(ValueError, match="7 score texts for 8 trials"):
        write_sasv_scores(tmp_path / "short.txt", trials, texts[1:])
    with pytest.raises(ValueError, match="another length"):
        write_asvspoof5_sasv(tmp_path / "short.tsv", None, columns, {"cm": texts[1:]})
    assert not (tmp_path / "short.txt").exists() and not (tmp_path / "short.tsv").exists()


def test_cm_round_trip_and_both_bonafide_conventions(tmp_path):
    path = _write(tmp_path / "cm.txt", ["LA_E_1 - bonafide 1.0", "LA_E_2 bonafide bonafide 2.0", "LA_E_3 A07 spoof -3"])
    cm = read_cm_scores(path)
    assert cm.attack == ["bonafide", "bonafide", "A07"] and cm.key == ["bonafide", "bonafide", "spoof"]
    write_cm_scores(tmp_path / "out.txt", cm)
    assert (tmp_path / "out.txt").read_text().splitlines()[0] == "LA_E_1 - bonafide 1.0"
    back = read_cm_scores(tmp_path / "out.txt")
    assert back.attack == cm.attack and np.array_equal(back.score, cm.score)


@pytest.mark.parametrize("bad_line, message", [
    ("LA_0016 LA_E_9 A07 spoof", "expected 5 columns"),
    ("LA_0016 LA_E_9 A07 spoof high", "score 'high' is not a number"),
    ("LA_0016 LA_E_9 A07 spoof nan", "not a finite number"),
    ("LA_0016 LA_E_9 A07 attack 1.0", "unknown key 'attack'"),
    ("LA_0015 LA_E_1 bonafide target 2.0", "trial 'LA_0015 LA_E_1' listed twice (first on line 1)"),
    ("LA_0016 LA_E_9 bonafide spoof 1.0", "needs ATTACK an attack id"),
    ("LA_0016 LA_E_9 A07 target 1.0", "needs ATTACK bonafide"),
])
def test_sasv_read_errors_name_file_and_line(tmp_path, bad_line, message):
    path = _write(tmp_path / "bad.txt", SASV_LINES + ["", bad_line])
    with pytest.raises(ScoreFileError) as info:
        read_sasv_scores(path)
    text = str(info.value)
    assert text.startswith(f"{path}:5: ") and message in text and "\n" not in text


@pytest.mark.parametrize("bad_line, message", [
    ("LA_E_9 - bonafide", "expected 4 columns"),
    ("LA_E_9 - target 1.0", "unknown key 'target'"),
    ("LA_E_1 - bonafide 1.0", "utterance 'LA_E_1' listed twice"),
    ("LA_E_9 - spoof 1.0", "needs ATTACK an attack id"),
])
def test_cm_read_errors(tmp_path, bad_line, message):
    path = _write(tmp_path / "bad.txt", ["LA_E_1 - bonafide 1.0", bad_line])
    with pytest.raises(ScoreFileError, match=message):
        read_cm_scores(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ScoreFileError, match="does not exist"):
        read_sasv_scores(tmp_path / "nope.txt")
    with pytest.raises(ScoreFileError, match="no trials"):
        read_sasv_scores(_write(tmp_path / "empty.txt", [""]))


def test_align_reorders_and_refuses_different_trials(tmp_path):
    a = read_sasv_scores(_write(tmp_path / "a.txt", SASV_LINES))
    b = read_sasv_scores(_write(tmp_path / "b.txt", [line.replace(line.split()[-1], str(i)) for i, line in
                                                     reversed(list(enumerate(SASV_LINES)))]))
    aligned = align_scores(a, b, ("a.txt", "b.txt"))
    assert aligned.utt == a.utt and list(aligned.score) == [0.0, 1.0, 2.0]

    fewer = read_sasv_scores(_write(tmp_path / "c.txt", SASV_LINES[:2]))
    with pytest.raises(ScoreFileError, match=r"\(3 vs 2\): 'LA_0016 LA_E_3' is in a.txt but not in c.txt"):
        align_scores(a, fewer, ("a.txt", "c.txt"))
    with pytest.raises(ScoreFileError, match=r"\(2 vs 3\): 'LA_0016 LA_E_3' is in a.txt but not in c.txt"):
        align_scores(fewer, a, ("c.txt", "a.txt"))
    relabelled = read_sasv_scores(_write(tmp_path / "d.txt", [SASV_LINES[0].replace("target", "nontarget")]
                                         + SASV_LINES[1:]))
    with pytest.raises(ScoreFileError, match="'bonafide target' in a.txt but 'bonafide nontarget' in d.txt"):
        align_scores(a, relabelled, ("a.txt", "d.txt"))


# ------------------------------------------------------------------ the ASVspoof 5 evaluation package's formats

def _package_cm() -> CMScores:
    return CMScores(utt=["E_1", "E_2", "E_3"], attack=["bonafide", "A17", "A20"], key=["bonafide", "spoof", "spoof"],
                    score=np.array([1.5, -0.1 / 3, 2e-7]), codec=["-", "C01", "C11"], codec_q=["0", "3", "8"])


def test_package_track1_files_are_the_packages_format_and_round_trip(tmp_path):
    cm = _package_cm()
    write_asvspoof5_cm(tmp_path / "s.tsv", tmp_path / "k.tsv", cm)
    # the package's README: tab-separated, one header line; the key file may carry more columns
    assert (tmp_path / "s.tsv").read_text().splitlines()[:2] == ["filename\tcm-score", "E_1\t1.5"]
    assert (tmp_path / "k.tsv").read_text().splitlines()[:3] == ["filename\tcm-label\tattack\tcodec\tcodec_q",
                                                                 "E_1\tbonafide\tbonafide\t-\t0",
                                                                 "E_2\tspoof\tA17\tC01\t3"]
    assert detect_score_format(tmp_path / "s.tsv") == "asvspoof5_cm"
    assert detect_score_format(tmp_path / "k.tsv") == "asvspoof5_cm_keys"
    back = read_asvspoof5_cm(tmp_path / "s.tsv", tmp_path / "k.tsv")
    assert (back.utt, back.attack, back.key, back.codec, back.codec_q) == (cm.utt, cm.attack, cm.key, cm.codec,
                                                                           cm.codec_q)
    assert np.array_equal(back.score, cm.score)
    # the package's own key file (two columns, any order, space or tab): no attacks, no codecs
    _write(tmp_path / "k2.tsv", ["filename cm-label", "E_3 spoof", "E_1 bonafide", "E_2 spoof"])
    plain = read_asvspoof5_cm(tmp_path / "s.tsv", tmp_path / "k2.tsv")
    assert plain.attack == ["bonafide", "-", "-"] and plain.codec is None and plain.key == cm.key


def test_package_track2_files_round_trip_with_missing_columns(tmp_path):
    trials = SASVScores(spk=["S1", "S1", "S2"], utt=["U1", "U2", "U3"], attack=["bonafide", "bonafide", "A19"],
                        key=["target", "nontarget", "spoof"], score=np.array([0.5, -1.0, 0.25]),
                        codec=["-", "C02", "C02"], codec_q=["-", "1", "2"])
    asv = SASVScores(trials.spk, trials.utt, trials.attack, trials.key, np.array([3.0, 1.0, 2.0]))
    write_asvspoof5_sasv(tmp_path / "s.tsv", tmp_path / "k.tsv", {"sasv": trials, "asv": asv})
    lines = (tmp_path / "s.tsv").read_text().splitlines()
    assert lines[:2] == ["spk\tfilename\tcm-score\tasv-score\tsasv-score", "S1\tU1\t-\t3.0\t0.5"]
    assert (tmp_path / "k.tsv").read_text().splitlines()[3] == "S2\tU3\tspoof\tspoof\tA19\tC02\t2"
    back = read_asvspoof5_sasv(tmp_path / "s.tsv", tmp_path / "k.tsv")
    assert set(back) == {"sasv", "asv"}
    for name, original in (("sasv", trials), ("asv", asv)):
        got = back[name]
        assert (got.spk, got.utt, got.attack, got.key, got.codec) == (trials.spk, trials.utt, trials.attack,
                                                                       trials.key, trials.codec)
        assert np.array_equal(got.score, original.score)
    with pytest.raises(ValueError, match="different trials"):
        write_asvspoof5_sasv(tmp_path / "x.tsv", tmp_path / "y.tsv", {"sasv": trials, "cm": SASVScores(
            ["S1"], ["U1"], ["bonafide"], ["target"], np.array([1.0]))})


def test_package_header_aliases_and_the_reference_files():
    """The package renames tar_spk_anon / trial_anon; the reference vectors are package files."""
    from tests.conftest import reference_path
    columns = read_asvspoof5_sasv(reference_path("metrics", "scores.tsv"), reference_path("metrics", "keys.tsv"))
    assert set(columns) == {"cm", "asv", "sasv"} and len(columns["sasv"]) == 4800
    assert columns["cm"].score[0] == 4.022621 and columns["sasv"].key[0] == "target"


@pytest.mark.parametrize("scores, keys, message", [
    (["filename cm-score", "E_1 1.0", "E_2 x"], None, "s.tsv:3: score 'x' is not a number"),
    (["filename cm-score", "E_1 1.0", "E_1 2.0"], None, "s.tsv:3: utterance 'E_1' listed twice (first on line 2)"),
    (["filename cm-score", "E_1 1.0", "E_9 2.0"], None, "s.tsv:3: 'E_9' is not in the key file"),
    (["filename cm-score", "E_1 1.0"], None, "k.tsv:3: 'E_2' has no score in"),
    (["filename cm-score", "E_1 1.0", "E_2"], None, "s.tsv:3: expected 2 columns 'filename cm-score', got 1"),
    (["filename score", "E_1 1.0", "E_2 2.0"], None, "s.tsv: not an ASVspoof 5 package Track 1 score file: its "
                                                     "header is 'filename score', expected 'filename cm-score'"),
    (["filename cm-score", "E_1 1.0", "E_2 2.0"], ["filename cm-label", "E_1 bonafide", "E_2 genuine"],
     "k.tsv:3: unknown key 'genuine'; expected one of bonafide, spoof"),
    (["filename cm-score", "E_1 1.0", "E_2 2.0"], ["filename cm-label"], "k.tsv: no trials in key file"),
])
def test_package_track1_errors_are_one_line(tmp_path, scores, keys, message):
    _write(tmp_path / "s.tsv", scores)
    _write(tmp_path / "k.tsv", keys or ["filename cm-label", "E_1 bonafide", "E_2 spoof"])
    with pytest.raises(ScoreFileError) as info:
        read_asvspoof5_cm(tmp_path / "s.tsv", tmp_path / "k.tsv")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("scores, keys, message", [
    (["spk filename cm-score asv-score sasv-score", "S U1 - 1 2", "S U2 0.5 1 2"], None,
     "s.tsv:3: cm-score is '0.5' here but '-' on line 2; a column holds a score on every line or '-' on every line"),
    (["spk filename cm-score asv-score sasv-score", "S U1 - - -", "S U2 - - -"], None, "every score column is '-'"),
    (["spk filename cm-score asv-score sasv-score", "S U1 1 1 1", "S U1 2 2 2"], None,
     "s.tsv:3: trial 'S U1' listed twice (first on line 2)"),
    (["spk filename cm-score asv-score sasv-score", "S U1 1 1 1", "S U2 2 2 2"],
     ["spk filename cm-label asv-label", "S U1 bonafide target", "S U2 bonafide spoof"],
     "k.tsv:3: cm-label 'bonafide' and asv-label 'spoof' disagree"),
])
def test_package_track2_errors_are_one_line(tmp_path, scores, keys, message):
    _write(tmp_path / "s.tsv", scores)
    _write(tmp_path / "k.tsv", keys or ["spk filename cm-label asv-label", "S U1 bonafide target",
                                        "S U2 spoof spoof"])
    with pytest.raises(ScoreFileError) as info:
        read_asvspoof5_sasv(tmp_path / "s.tsv", tmp_path / "k.tsv")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_detection_of_every_format_and_the_early_package_forms(tmp_path):
    cases = {"sasv2022": SASV_LINES, "asvspoof2019_cm": ["LA_E_1 - bonafide 1.0"],
             "asvspoof5_sasv_keys": ["tar_spk_anon trial_anon cm-label asv-label", "S U bonafide target"],
             "asvspoof5_early": ["LA_0015 LA_E_1103494 6.960134565830231 bonafide"]}
    for expected, lines in cases.items():
        assert detect_score_format(_write(tmp_path / f"{expected}.txt", [""] + lines)) == expected
    early = _write(tmp_path / "early.txt", ["LA_0015 E_1 6.5 target", "LA_0007 E_2 -2.3 spoof"])
    sasv = read_asvspoof5_early(early, "sasv")
    assert sasv.key == ["target", "spoof"] and sasv.attack == ["bonafide", "-"] and list(sasv.score) == [6.5, -2.3]
    with pytest.raises(ScoreFileError, match="early.txt:1: unknown key 'target'; expected one of bonafide, spoof"):
        read_asvspoof5_early(early, "cm")
    asv_early = _write(tmp_path / "asv.txt", ["bonafide target 36.78691", "A01 spoof 27.07672"])
    with pytest.raises(ScoreFileError, match="'CM_LABEL SASV_LABEL SCORE' names no trials"):
        detect_score_format(asv_early)
    with pytest.raises(ScoreFileError, match=r"unrecognised score file: its first line is 'a b c d e f'; expected one"):
        detect_score_format(_write(tmp_path / "odd.txt", ["a b c d e f"]))
    with pytest.raises(ScoreFileError, match="does not exist"):
        detect_score_format(tmp_path / "missing.txt")
