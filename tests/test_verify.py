"""verify.py: single and batch trials from audio files reproduce the stage scores; resampling; errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common.cli import run_main
from tests.pipeline_fixtures import staged_tiny_experiment, tiny_corpus  # noqa: F401 (fixture)


def _verify(argv: list[str]) -> int:
    from verify import main
    return run_main(main, [str(a) for a in argv])


@pytest.fixture(scope="module")
def setup(tiny_corpus, tmp_path_factory, one_thread):  # noqa: F811
    """A staged tiny experiment with score_sum (fitted on dev), and a baseline2 back-end trained beside it."""
    from common.config import load_config
    from pipeline.recipes import sasv_task
    from pipeline.stages.sasv import score_splits

    exp, cfg = staged_tiny_experiment(tmp_path_factory.mktemp("verify"), tiny_corpus)
    score_splits(cfg)
    exp["out"] = Path(cfg["output_dir"])
    exp["b2_out"] = exp["root"] / "b2"
    exp["b2_overrides"] = [f"output_dir={exp['b2_out']}", f"embeddings_dir={exp['out'] / 'embeddings'}",
                           "backend.name=baseline2", "backend.options={hidden: [16, 8]}"]
    sasv_task.run(load_config(exp["config"], exp["b2_overrides"], sasv_task.SCHEMA))
    return exp


def _trial(setup, split: str = "dev", key: str = "spoof"):
    """A corpus trial: (enrolment files, test file, {kind: score written by the stages})."""
    from data.asvspoof import LADatabase
    from data.score_files import read_sasv_scores

    db = LADatabase(setup["corpus"].la)
    files = {}
    for kind in ("asv", "cm_trials", "sasv"):
        s = read_sasv_scores(setup["out"] / "scores" / f"{kind}_{split}.txt")
        files[kind] = {(a, b): v for a, b, v in zip(s.spk, s.utt, s.score, strict=True)}
    trial = next(t for t in db.sasv_trials(split) if t.key == key)
    enrol = [db.audio(split, u) for u in db.enrolment(split)[trial.speaker]]
    scores = {k: v[trial.speaker, trial.utt] for k, v in files.items()}
    return enrol, db.audio(split, trial.utt), scores


def _printed(text: str) -> dict[str, str]:
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in text.splitlines() if ":" in line}


def test_single_trial_reproduces_stage_scores(setup, capsys):
    enrol, test, expected = _trial(setup)
    assert _verify(["--config", setup["config"], "--enroll", *enrol, "--test", test]) == 0
    out = _printed(capsys.readouterr().out)
    assert float(out["ASV score"].split()[0]) == pytest.approx(expected["asv"], abs=1e-5)
    assert float(out["CM score"].split()[0]) == pytest.approx(expected["cm_trials"], abs=1e-4)
    sasv = float(out["SASV score"].split()[0])
    assert sasv == pytest.approx(expected["sasv"], abs=1e-4)
    from data.score_files import read_sasv_scores
    from metrics.thresholds import choose_threshold
    dev = read_sasv_scores(setup["out"] / "scores" / "sasv_dev.txt")
    keys = np.asarray(dev.key)
    t = choose_threshold({k: dev.score[keys == k] for k in ("target", "nontarget", "spoof")}, "eer", negatives="both")
    assert float(out["threshold"].split()[0]) == pytest.approx(t, rel=1e-5)
    assert "SASV-EER point" in out["threshold"] and "sasv_dev.txt" in out["threshold"]
    assert out["decision"].startswith("ACCEPT" if sasv >= t else "REJECT")


def test_threshold_option_decides(setup, capsys):
    enrol, test, expected = _trial(setup)
    for threshold, decision in ((expected["sasv"] - 0.5, "ACCEPT"), (expected["sasv"] + 0.5, "REJECT")):
        assert _verify(["--config", setup["config"], "--enroll", *enrol, "--test", test,
                        "--threshold", repr(float(threshold))]) == 0
        out = _printed(capsys.readouterr().out)
        assert out["decision"].startswith(decision) and "given with --threshold" in out["threshold"]
    assert _verify(["--config", setup["config"], "--enroll", *enrol, "--test", test,
                    "--threshold-method", "far", "--far", "0.001"]) == 0
    assert "FAR 0.1 % point" in capsys.readouterr().out


def test_resampled_stereo_wav(setup, tmp_path, capsys):
    """A 22.05 kHz stereo WAV scores like its own 16 kHz mono mix-down (data.audio.load_audio)."""
    from data.audio import load_audio

    enrol, _, _ = _trial(setup)
    t = np.arange(int(1.4 * 22050)) / 22050
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t),
                       0.2 * np.sin(2 * np.pi * 420 * t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "stereo.wav", stereo, 22050, subtype="FLOAT")
    sf.write(tmp_path / "mono16k.wav", load_audio(tmp_path / "stereo.wav"), 16000, subtype="FLOAT")
    assert sf.info(str(tmp_path / "stereo.wav")).channels == 2
    results = []
    for name in ("stereo.wav", "mono16k.wav"):
        assert _verify(["--config", setup["config"], "--enroll", enrol[0], tmp_path / name,
                        "--test", tmp_path / name]) == 0
        results.append(_printed(capsys.readouterr().out))
    for key in ("ASV score", "CM score", "SASV score"):
        assert float(results[0][key].split()[0]) == pytest.approx(float(results[1][key].split()[0]), abs=1e-4)


def test_batch_matches_single_and_writes_csv(setup, tmp_path, capsys):
    enrol, test, expected = _trial(setup)
    enrol2, test2, expected2 = _trial(setup, "eval", "target")
    folder = tmp_path / "batch"
    folder.mkdir()
    pairs = folder / "pairs.csv"
    with open(pairs, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["enroll", "test"])
        w.writerow([";".join(map(str, enrol)), str(test)])
        w.writerow([";".join(map(str, enrol2)), str(test2)])
        w.writerow([str(enrol[0]), str(test2)])
    out = folder / "results.csv"
    assert _verify(["--config", setup["config"], "--batch", pairs, "--out", out]) == 0
    assert "3 trials" in capsys.readouterr().out
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["enroll", "test", "asv_score", "cm_score", "sasv_score", "threshold", "decision"]
    assert len(rows) == 3 and rows[0]["enroll"] == ";".join(map(str, enrol))
    for row, exp in ((rows[0], expected), (rows[1], expected2)):
        assert float(row["asv_score"]) == pytest.approx(exp["asv"], abs=1e-5)
        assert float(row["sasv_score"]) == pytest.approx(exp["sasv"], abs=1e-4)
        assert row["decision"] == ("accept" if float(row["sasv_score"]) >= float(row["threshold"]) else "reject")
    assert sorted(p.name for p in folder.iterdir()) == ["pairs.csv", "results.csv"]   # no temporary files left


def test_relative_paths_in_batch_file(setup, tmp_path):
    enrol, test, _ = _trial(setup)
    for p in (*enrol, test):
        (tmp_path / Path(p).name).write_bytes(Path(p).read_bytes())
    (tmp_path / "pairs.csv").write_text(f"enroll,test\n{';'.join(Path(p).name for p in enrol)},{Path(test).name}\n")
    assert _verify(["--config", setup["config"], "--batch", tmp_path / "pairs.csv", "--out", tmp_path / "r.csv"]) == 0


def test_embedding_backend(setup, capsys):
    """baseline2 trained by main.py's frozen task: the default checkpoint <output_dir>/backend.pt is used."""
    from data.score_files import read_sasv_scores

    enrol, test, _ = _trial(setup)
    assert _verify(["--config", setup["config"], *setup["b2_overrides"], "--enroll", *enrol, "--test", test]) == 0
    out = _printed(capsys.readouterr().out)
    scores = read_sasv_scores(setup["b2_out"] / "scores" / "sasv_dev.txt")
    from data.asvspoof import LADatabase
    trial = next(t for t in LADatabase(setup["corpus"].la).sasv_trials("dev") if t.key == "spoof")
    expected = dict(zip(scores.trials(), scores.score, strict=True))[trial.speaker, trial.utt]
    assert float(out["SASV score"].split()[0]) == pytest.approx(expected, abs=1e-4)
    assert "(baseline2)" in out["SASV score"]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_errors_are_one_line(setup, tmp_path, capsys):
    enrol, test, _ = _trial(setup)
    cfg = ["--config", setup["config"]]
    assert _verify([*cfg, "--enroll", tmp_path / "missing.wav", "--test", test]) == 2
    assert "missing.wav: audio file does not exist" in _error(capsys)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really audio")
    assert _verify([*cfg, "--enroll", *enrol, "--test", tmp_path / "junk.wav"]) == 2
    assert "junk.wav: cannot read audio" in _error(capsys)
    assert _verify([*cfg, f"output_dir={tmp_path / 'empty'}", "--enroll", *enrol, "--test", test]) == 2
    assert "backend_state.json: no fitted 'score_sum' back-end; run save_sasv_score.py" in _error(capsys)
    assert _verify([*cfg, "backend.name=lr_fusion", "--enroll", *enrol, "--test", test]) == 2
    assert "holds back-end 'score_sum'" in _error(capsys)
    assert _verify([*cfg, "backend.name=joint_oc", "--enroll", *enrol, "--test", test]) == 2
    assert "backend.pt: no fitted 'joint_oc' back-end" in _error(capsys)
    (tmp_path / "pairs.csv").write_text("enrol,test\na.wav,b.wav\n")
    assert _verify([*cfg, "--batch", tmp_path / "pairs.csv", "--out", tmp_path / "r.csv"]) == 2
    assert "missing column(s) enroll" in _error(capsys)
    (tmp_path / "pairs.csv").write_text(f"enroll,test\n{enrol[0]},{tmp_path / 'nope.flac'}\n")
    assert _verify([*cfg, "--batch", tmp_path / "pairs.csv", "--out", tmp_path / "r.csv"]) == 2
    err = _error(capsys)
    assert "nope.flac: audio file does not exist" in err and "pairs.csv line 2" in err
    assert not (tmp_path / "r.csv").exists()


def test_missing_dev_scores_need_a_threshold(setup, tmp_path, capsys):
    """Without scores/sasv_dev.txt there is no dev threshold unless --threshold gives one."""
    out = tmp_path / "exp"
    (out / "scores").mkdir(parents=True)
    for name in ("backend_state.json", "results.json"):
        (out / name).write_text((setup["out"] / name).read_text())
    enrol, test, _ = _trial(setup)
    args = ["--config", setup["config"], f"output_dir={out}", f"embeddings_dir={setup['out'] / 'embeddings'}",
            "--enroll", *enrol, "--test", test]
    assert _verify(args) == 2
    assert "sasv_dev.txt: no dev SASV scores" in _error(capsys)
    assert _verify([*args, "--threshold", "0.5"]) == 0
    assert "decision:" in capsys.readouterr().out


def test_usage_errors(setup, capsys):
    with pytest.raises(SystemExit) as e:
        _verify(["--config", setup["config"], "--enroll", "a.wav"])
    assert e.value.code == 2 and "--test" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _verify(["--config", setup["config"], "--batch", "p.csv"])
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, allowed", [("--threshold", "nan", "a finite number"),
                                                   ("--threshold", "inf", "a finite number"),
                                                   ("--threshold", "-inf", "a finite number"),
                                                   ("--threshold", "high", "a finite number"),
                                                   ("--far", "0", "a finite number in (0, 1)"),
                                                   ("--far", "1.5", "a finite number in (0, 1)"),
                                                   ("--far", "nan", "a finite number in (0, 1)")])
def test_numeric_options_are_checked_before_anything(setup, capsys, flag, value, allowed):
    """`--threshold nan` once rejected every trial with exit 0: a flag's value is checked by the rule a config key
    has, before the config is read; argparse's one error line names the flag, the value and what is allowed."""
    enrol, test, _ = _trial(setup)
    with pytest.raises(SystemExit) as e:
        _verify(["--config", setup["config"], "--enroll", *enrol, "--test", test, f"{flag}={value}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"error: argument {flag}: must be {allowed}, got {value}"), err


def test_refuses_ablation_system_with_other_cm_score(setup, tmp_path, capsys):
    out = tmp_path / "sys"
    out.mkdir()
    (out / "backend_state.json").write_text((setup["out"] / "backend_state.json").read_text())
    frontends = json.loads((setup["out"] / "results.json").read_text())["frontends"]
    (out / "result.json").write_text(json.dumps({"cm_score": "posterior", "frontends": frontends}))
    enrol, test, _ = _trial(setup)
    assert _verify(["--config", setup["config"], f"output_dir={out}", "--threshold", "0",
                    "--enroll", *enrol, "--test", test]) == 2
    assert "fuses the CM posterior" in _error(capsys)
