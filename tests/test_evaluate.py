"""evaluate.py end to end on score files built from the reference trials, and its error behaviour."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.cli import run_main
from evaluate import main
from tests.conftest import ROOT, assert_report_matches_reference, reference_metric_trials


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """SASV / ASV / CM score files (SASV 2022 format) of the reference trials, in different trial orders."""
    scores, keys, expected = reference_metric_trials()
    folder = tmp_path_factory.mktemp("scores")
    out = {"expected": expected, "dir": folder}
    for column, name, step in (("sasv-score", "sasv", 1), ("asv-score", "asv", -1), ("cm-score", "cm", 1)):
        lines = [f"{s['spk']} {s['filename']} {'A07' if k['asv-label'] == 'spoof' else 'bonafide'} "
                 f"{k['asv-label']} {s[column]}" for s, k in zip(scores, keys, strict=True)][::step]
        out[name] = folder / f"{name}.txt"
        out[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
        out[name + "_lines"] = lines
    return out


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_end_to_end_matches_reference(files, tmp_path):
    out_json, out_det = tmp_path / "m.json", tmp_path / "det.png"
    proc = _run("--sasv", files["sasv"], "--asv", files["asv"], "--cm", files["cm"], "--json", out_json,
                "--det", out_det)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out_json.read_text())
    assert set(got) == {"sasv_eer", "sv_eer", "spf_eer", "min_a_dcf", "min_a_dcf_asvspoof5", "t_eer",
                        "min_t_dcf_asvspoof5", "min_t_dcf_asvspoof5_formula", "min_t_dcf_asvspoof5_org_asv",
                        "min_t_dcf_asvspoof2019", "asv_eer", "cm_eer", "breakdown"}
    assert_report_matches_reference(got, files["expected"])
    header, rule, row = proc.stdout.splitlines()[:3]
    assert "SASV-EER(%)" in header and "t-DCF(2019)" in header and row.startswith("sasv.txt")
    assert f"{got['sasv_eer']:.3f}" in row
    assert out_det.read_bytes()[:4] == b"\x89PNG"
    # every spoof is labelled A07: a per-attack table (one attack, so equal to the pooled numbers), no codec tables
    assert set(got["breakdown"]) == {"pooled", "attack"} and list(got["breakdown"]["attack"]) == ["A07"]
    assert got["breakdown"]["attack"]["A07"]["t_eer"] == got["t_eer"]
    assert "per attack (its spoofs against all bona fide trials):" in proc.stdout


def test_asv_without_cm_computes_the_rest_and_says_what_is_missing(files, tmp_path, capsys):
    out_json = tmp_path / "m.json"
    assert run_main(main, ["--sasv", str(files["sasv"]), "--asv", str(files["asv"]), "--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    got = json.loads(out_json.read_text())
    assert "asv_eer" in got and "cm_eer" not in got and "t_eer" not in got
    assert ("t_eer, min_t_dcf_asvspoof5, min_t_dcf_asvspoof5_formula, min_t_dcf_asvspoof2019 need both --asv and --cm"
            in captured.err)
    assert "min_t_dcf_asvspoof5_org_asv" not in got      # it needs the CM scores (only)


def _expect_error(capsys, argv: list[str], message: str) -> None:
    assert run_main(main, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err


def test_unknown_key_fails_cleanly_without_traceback(files, tmp_path):
    bad = tmp_path / "bad.txt"
    lines = list(files["sasv_lines"])
    lines[7] = lines[7].replace("target", "genuine")
    bad.write_text("\n".join(lines) + "\n")
    proc = _run("--sasv", bad)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {bad}:8: unknown key 'genuine'; expected one of target, nontarget, spoof"


def test_duplicated_trial(files, tmp_path, capsys):
    bad = tmp_path / "dup.txt"
    bad.write_text("\n".join(files["sasv_lines"] + files["sasv_lines"][:1]) + "\n")
    _expect_error(capsys, ["--sasv", str(bad)], f"{bad}:4801: trial")


def test_files_disagreeing_on_trials(files, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("\n".join(files["sasv_lines"][:-1]) + "\n")
    _expect_error(capsys, ["--sasv", str(files["sasv"]), "--cm", str(short)], "disagree on trials (4800 vs 4799)")


def test_bad_det_suffix_is_refused_before_any_work(files, capsys):
    _expect_error(capsys, ["--sasv", str(files["sasv"]), "--det", "curves.bmp"], "unknown image type")


# ------------------------------------------------------------------ ASVspoof 5 package files and Track 1

def test_package_track2_files_as_the_package_reads_them(capsys, tmp_path):
    """scores.tsv / keys.tsv are the package's own Track 2 files (tab-separated, header): read as they are, their three
    score columns give the whole report, with the package's values."""
    from tests.conftest import reference_path
    scores, keys = reference_path("metrics", "scores.tsv"), reference_path("metrics", "keys.tsv")
    out_json = tmp_path / "m.json"
    assert run_main(main, ["--sasv", str(scores), "--keys", str(keys), "--json", str(out_json)]) == 0
    got = json.loads(out_json.read_text())
    assert_report_matches_reference(got, reference_metric_trials()[2])
    assert "breakdown" not in got            # the package's keys name no attack and no codec
    assert capsys.readouterr().out.splitlines()[2].startswith("scores.tsv")
    _expect_error(capsys, ["--sasv", str(scores)], "its labels in a key file: give it with --keys")
    _expect_error(capsys, ["--sasv", str(scores), "--keys", str(keys), "--cm", str(scores)],
                  "the cm scores are already in the cm-score column of --sasv")


@pytest.fixture(scope="module")
def track1(tmp_path_factory) -> dict:
    """The reference CM scores as Track 1 files: ASVspoof 2019 CM format (attacks A11-A16), and the package's
    score + key files written by data.score_files with codec conditions."""
    from data.score_files import CMScores, write_asvspoof5_cm, write_cm_scores
    scores, keys, _ = reference_metric_trials()
    folder = tmp_path_factory.mktemp("track1")
    n = len(scores)
    cm = CMScores([s["filename"] for s in scores],
                  [f"A{11 + (i // 4) % 6}" if k["cm-label"] == "spoof" else "bonafide" for i, k in enumerate(keys)],
                  [k["cm-label"] for k in keys], [float(s["cm-score"]) for s in scores],
                  [("-", "C01", "C02", "C03")[i % 4] for i in range(n)], ["-" if i % 4 == 0 else "1" for i in range(n)])
    write_cm_scores(folder / "cm_2019.txt", cm)
    write_asvspoof5_cm(folder / "track1.tsv", folder / "track1_keys.tsv", cm)
    return {"dir": folder, "cm": cm}


def test_track1_from_a_2019_cm_file_is_the_packages(track1, tmp_path, capsys):
    from tests.test_metrics import PACKAGE_TRACK1
    out_json = tmp_path / "t1.json"
    assert run_main(main, ["--cm", str(track1["dir"] / "cm_2019.txt"), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    got = json.loads(out_json.read_text())
    assert set(got) == {"min_dcf", "eer", "cllr", "act_dcf", "breakdown"}
    for name, value in PACKAGE_TRACK1.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
    assert set(got["breakdown"]) == {"pooled", "attack"} and len(got["breakdown"]["attack"]) == 6
    header, _, row = out.splitlines()[:3]
    assert header.split() == ["system", "minDCF", "EER(%)", "Cllr(bits)", "actDCF"]
    assert row.split() == ["cm_2019.txt", "0.05167", "1.956", "0.14471", "0.05344"]


def test_track1_package_files_with_conditions(track1, tmp_path, capsys):
    from metrics.breakdown import Conditions, cm_breakdown
    cm, out_json = track1["cm"], tmp_path / "t1.json"
    argv = ["--cm", str(track1["dir"] / "track1.tsv"), "--keys", str(track1["dir"] / "track1_keys.tsv")]
    assert run_main(main, [*argv, "--json", str(out_json)]) == 0
    got = json.loads(out_json.read_text())
    expected = cm_breakdown(cm.key, cm.score, Conditions(cm.attack, cm.codec, cm.codec_q))
    assert got["breakdown"] == json.loads(json.dumps(expected))
    assert set(got["breakdown"]) == {"pooled", "attack", "codec", "codec_q", "attack_by_codec"}
    assert "minDCF per attack (rows) and codec condition (columns):" in capsys.readouterr().out
    _expect_error(capsys, ["--cm", str(track1["dir"] / "track1.tsv"), "--keys", str(track1["dir"] / "track1.tsv")],
                  "not an ASVspoof 5 package Track 1 key file: its header is 'filename cm-score', "
                  "expected 'filename cm-label ...'")
    _expect_error(capsys, ["--cm", str(track1["dir"] / "cm_2019.txt"), "--keys", str(track1["dir"] / "track1.tsv")],
                  "cm_2019.txt holds its own labels")
    _expect_error(capsys, ["--cm", str(track1["dir"] / "cm_2019.txt"), "--det", str(tmp_path / "d.png")],
                  "--det needs --sasv")


class _Corpus:
    """A stand-in corpus (the Database interface's CM and trial parts) whose protocol carries ASVspoof 5 style
    conditions."""
    format, title, splits = "fake", "fake corpus", ("eval",)

    def __init__(self, entries, trials=()):
        self.entries, self.trials = entries, list(trials)

    def cm_entries(self, split):
        return self.entries

    def cm_protocol_path(self, split):
        return "protocol.tsv"

    def sasv_trials(self, split):
        return self.trials

    def sasv_trials_path(self, split):
        return "trials.tsv"


def test_track1_keys_and_conditions_from_the_corpus(track1, tmp_path, capsys, monkeypatch):
    """A package score file with no key file (what the organisers' baseline writes) and the corpus: keys, attacks and
    codecs come from its CM protocol; a score file that disagrees with the protocol is one line."""
    import evaluate
    from data.asvspoof import CMEntry
    cm = track1["cm"]
    entries = [CMEntry("S", u, a if k == "spoof" else "-", k, c, q)
               for u, a, k, c, q in zip(cm.utt, cm.attack, cm.key, cm.codec, cm.codec_q, strict=True)]
    monkeypatch.setattr(evaluate, "open_database", lambda root, fmt: _Corpus(entries))
    out_json = tmp_path / "t1.json"
    corpus = ["--database", str(tmp_path), "--split", "eval"]
    assert run_main(main, ["--cm", str(track1["dir"] / "track1.tsv"), *corpus, "--json", str(out_json)]) == 0
    from_corpus = json.loads(out_json.read_text())
    assert run_main(main, ["--cm", str(track1["dir"] / "track1.tsv"), "--keys", str(track1["dir"] / "track1_keys.tsv"),
                           "--json", str(out_json)]) == 0
    assert from_corpus == json.loads(out_json.read_text())
    # a 2019 CM file carries keys and attacks; the corpus adds the codecs
    assert run_main(main, ["--cm", str(track1["dir"] / "cm_2019.txt"), *corpus, "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text()) == from_corpus
    capsys.readouterr()
    monkeypatch.setattr(evaluate, "open_database", lambda root, fmt: _Corpus(entries[:-1]))
    _expect_error(capsys, ["--cm", str(track1["dir"] / "cm_2019.txt"), *corpus],
                  f"utterance '{cm.utt[-1]}' is not in the eval CM protocol protocol.tsv")
    _expect_error(capsys, ["--cm", str(track1["dir"] / "track1.tsv"), *corpus],
                  f"track1.tsv:4801: '{cm.utt[-1]}' is not in the eval CM protocol protocol.tsv")
    flipped = [e._replace(key="spoof" if e.key == "bonafide" else "bonafide") if i == 0 else e
               for i, e in enumerate(entries)]
    monkeypatch.setattr(evaluate, "open_database", lambda root, fmt: _Corpus(flipped))
    _expect_error(capsys, ["--cm", str(track1["dir"] / "cm_2019.txt"), *corpus],
                  f"utterance '{cm.utt[0]}' is 'bonafide' there but 'spoof' in protocol.tsv")
    _expect_error(capsys, ["--cm", str(track1["dir"] / "cm_2019.txt"), "--database", str(tmp_path)],
                  "--database and --split go together")
    _expect_error(capsys, ["--cm", str(track1["dir"] / "cm_2019.txt"), "--database", str(tmp_path), "--split", "dev"],
                  "--split dev: fake corpus has the splits eval")


def test_track1_needs_both_classes_and_a_score_file(tmp_path, capsys):
    only_bonafide = tmp_path / "cm.txt"
    only_bonafide.write_text("U1 - bonafide 1.0\nU2 - bonafide 2.0\n", encoding="utf-8")
    _expect_error(capsys, ["--cm", str(only_bonafide)], "Track 1 metrics need bona fide and spoof utterances "
                                                        "(got 2 bona fide and 0 spoof)")
    _expect_error(capsys, [], "give --sasv (a SASV system, Track 2) or --cm alone")
    other = tmp_path / "x.csv"
    other.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    _expect_error(capsys, ["--cm", str(other)], f"{other}: unrecognised score file: its first line is 'a,b,c'; "
                                                "expected one of: SASV 2022 'SPK UTT ATTACK KEY SCORE';")


def test_track2_package_file_with_keys_and_codecs_from_the_corpus(tmp_path, capsys, monkeypatch):
    """The reference Track 2 file without its key file: trial keys from the corpus's trial list, codecs of the test
    utterances from its CM protocol; the same numbers as with the key file, plus the per-codec tables."""
    import evaluate
    from data.asvspoof import CMEntry, SASVTrial
    from tests.conftest import reference_path
    scores, keys, _ = reference_metric_trials()
    trials = [SASVTrial(k["spk"], k["filename"], "A01" if k["asv-label"] == "spoof" else "bonafide", k["asv-label"])
              for k in keys]
    entries = [CMEntry("S", k["filename"], "A01" if k["cm-label"] == "spoof" else "-", k["cm-label"],
                       ("-", "C01")[i % 2], ("-", "4")[i % 2]) for i, k in enumerate(keys)]
    monkeypatch.setattr(evaluate, "open_database", lambda root, fmt: _Corpus(entries, trials))
    package = str(reference_path("metrics", "scores.tsv"))
    out_json = tmp_path / "t2.json"
    assert run_main(main, ["--sasv", package, "--database", str(tmp_path), "--split", "eval",
                           "--json", str(out_json)]) == 0
    got = json.loads(out_json.read_text())
    assert_report_matches_reference(got, reference_metric_trials()[2])
    assert set(got["breakdown"]) == {"pooled", "attack", "codec", "codec_q", "attack_by_codec"}
    assert got["breakdown"]["codec"]["C01"]["target"] == sum(k["asv-label"] == "target" for k in keys[1::2])
    assert "a-DCF(AS5) per attack (rows) and codec condition (columns):" in capsys.readouterr().out
    monkeypatch.setattr(evaluate, "open_database", lambda root, fmt: _Corpus(entries, trials[1:]))
    _expect_error(capsys, ["--sasv", package, "--database", str(tmp_path), "--split", "eval"],
                  f"scores.tsv:2: '{keys[0]['spk']} {keys[0]['filename']}' is not in the eval trial list trials.tsv")
