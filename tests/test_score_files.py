"""Score-file formats: exact round trips, both bona fide conventions, one-line errors, trial alignment."""
from __future__ import annotations

import numpy as np
import pytest

from data.score_files import (
    SASVScores,
    ScoreFileError,
    align_scores,
    read_cm_scores,
    read_sasv_scores,
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
