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
                        "min_t_dcf_asvspoof5", "min_t_dcf_asvspoof5_formula", "min_t_dcf_asvspoof2019", "asv_eer",
                        "cm_eer"}
    assert_report_matches_reference(got, files["expected"])
    header, rule, row = proc.stdout.splitlines()
    assert "SASV-EER(%)" in header and "t-DCF(2019)" in header and row.startswith("sasv.txt")
    assert f"{got['sasv_eer']:.3f}" in row
    assert out_det.read_bytes()[:4] == b"\x89PNG"


def test_asv_without_cm_computes_the_rest_and_says_what_is_missing(files, tmp_path, capsys):
    out_json = tmp_path / "m.json"
    assert run_main(main, ["--sasv", str(files["sasv"]), "--asv", str(files["asv"]), "--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    got = json.loads(out_json.read_text())
    assert "asv_eer" in got and "cm_eer" not in got and "t_eer" not in got
    assert ("t_eer, min_t_dcf_asvspoof5, min_t_dcf_asvspoof5_formula, min_t_dcf_asvspoof2019 need both --asv and --cm"
            in captured.err)


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
