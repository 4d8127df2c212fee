"""ablate.py on score files (`scores` in the config, docs/ablation.md "Ablations of score files"): the same numbers as
the embedding-path ablation on the same trials, the grid of score-level back-ends and their options, reruns, input
digests, and bad configs refused in one line before anything is written."""
from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from common.cli import run_main
from tests.pipeline_fixtures import (
    ROOT,
    assert_one_line_error,
    call,
    files_under,
    frontends,
    sasv_args,
    staged,
    tiny_corpus,
    write_config,
)

__all__ = ["frontends", "staged", "tiny_corpus"]      # session fixtures used below

# Every score-level back-end, with options of each kind (normalisation, calibration, priors, the LLR rules' options)
GRID = [
    {"name": "asv_only", "backend": "asv_only"},
    {"name": "cm_only", "backend": "cm_only"},
    {"name": "sum", "backend": "score_sum"},
    {"name": "sum_zscore", "backend": "score_sum", "options": {"normalise": "zscore"}},
    {"name": "b1v2", "backend": "baseline1_v2"},
    {"name": "product", "backend": "product_rule"},
    {"name": "product_sigmoid", "backend": "product_rule", "options": {"calibration": "sigmoid"}},
    {"name": "lr_prior01", "backend": "lr_fusion", "options": {"prior": 0.1}},
    {"name": "llr_linear", "backend": "llr_linear"},
    {"name": "llr_nonlinear_rho05", "backend": "llr_nonlinear", "options": {"rho": 0.5, "weighting": "balanced"}},
]
LLR = {"lr_prior01", "llr_nonlinear_rho05"}          # fusion.outputs_llr (llr_linear sums two LLRs: not one)
SOURCE_COLUMNS = ("cm_score", "score_norm", "enrolment")     # what the source says about itself


def _ablate(argv, capsys) -> tuple[int, str]:
    from ablate import main
    return call(lambda a: run_main(main, a), argv, capsys)


def _csv(path: Path) -> tuple[list[str], dict[str, dict]]:
    with open(path, encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), {row["system"]: row for row in reader}


def _score_config(path: Path, out: Path, files: dict, systems=GRID, **ablation) -> Path:
    cfg = {"task": "sasv", "output_dir": str(out),
           "scores": {split: {k: str(v) for k, v in f.items()} for split, f in files.items()},
           "ablation": {"systems": systems, **ablation}}
    return write_config(path, cfg)


def _synthetic(folder: Path, shuffle_cm: bool = False) -> dict[str, dict[str, Path]]:
    """Labelled dev and eval splits as SASV 2022 ASV and CM files: targets score high on both, nontargets low on ASV,
    spoofs low on CM (the CM file in shuffled line order when asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n, seed in (("dev", 300, 0), ("eval", 240, 1)):
        rng = np.random.default_rng(seed)
        asv, cm = [], []
        for i in range(n):
            key = ("target", "nontarget", "spoof")[i % 3]
            attack = "A07" if key == "spoof" else "bonafide"
            head = f"S{i % 7} {split}_U{i:05d} {attack} {key}"
            asv.append(f"{head} {rng.normal(0.6 if key != 'nontarget' else 0.1, 0.15)!r}\n")
            cm.append(f"{head} {rng.normal(3.0 if key != 'spoof' else -2.0, 1.5)!r}\n")
        if shuffle_cm:
            random.Random(seed).shuffle(cm)
        files[split] = {"asv": folder / f"asv_{split}.txt", "cm": folder / f"cm_{split}.txt"}
        files[split]["asv"].write_text("".join(asv), encoding="utf-8")
        files[split]["cm"].write_text("".join(cm), encoding="utf-8")
    return files


# ------------------------------------------------------------------------------ the same numbers as the embeddings

def test_score_files_give_the_embedding_paths_numbers(staged, tiny_corpus, frontends, tmp_path, capsys):
    """For each score-level system: the same SASV scores line for line and the same value in every metric column of
    ablation.csv (only the columns naming the source differ); the LLR back-ends also report the actual a-DCF."""
    quick = yaml.safe_load((ROOT / "configs" / "quickstart.conf").read_text(encoding="utf-8"))
    emb_out = tmp_path / "emb"
    config = write_config(tmp_path / "emb.conf", {**quick, "ablation": {"systems": GRID, "pictures": False}})
    rc, err = _ablate(["--config", str(config), *sasv_args(tiny_corpus, frontends, emb_out)[2:],
                       f"embeddings_dir={staged.embeddings}"], capsys)
    assert rc == 0, err
    scores = staged.out / "scores"
    files = {s: {"asv": scores / f"asv_{s}.txt", "cm": scores / f"cm_trials_{s}.txt"} for s in ("dev", "eval")}
    out = tmp_path / "files"
    rc, err = _ablate(["--config", str(_score_config(tmp_path / "files.conf", out, files, pictures=False))], capsys)
    assert rc == 0, err
    header, got = _csv(out / "ablation" / "ablation.csv")
    emb_header, expected = _csv(emb_out / "ablation" / "ablation.csv")
    assert header == emb_header and set(got) == {e["name"] for e in GRID}
    for name, row in got.items():
        assert [row[c] for c in SOURCE_COLUMNS] == ["file", "-", "-"]
        assert [expected[name][c] for c in SOURCE_COLUMNS] == ["logit", "none", "lists"]
        for column in header[header.index("n_runs") + 1:]:          # every metric (and its _std) column
            if expected[name][column] == "":
                assert row[column] == "", (name, column)
            else:
                assert float(row[column]) == pytest.approx(float(expected[name][column]), rel=1e-9, abs=1e-12), \
                    (name, column)
        assert (row["eval_act_a_dcf"] != "") == (name in LLR), name
        for split in ("dev", "eval"):
            assert (out / "ablation" / name / "scores" / f"sasv_{split}.txt").read_text() == \
                (emb_out / "ablation" / name / "scores" / f"sasv_{split}.txt").read_text(), (name, split)
    metrics = header[header.index("n_runs") + 1:]
    assert metrics[-8:] == [f"{s}_{m}{std}" for s in ("dev", "eval") for m in ("act_a_dcf", "act_a_dcf_asvspoof5")
                            for std in ("", "_std")], "the LLR-only columns come last"
    assert metrics[:2] == ["dev_sasv_eer", "dev_sasv_eer_std"]


# ------------------------------------------------------------------------------------------- outputs and reruns

def test_outputs_provenance_rerun_and_force(tmp_path, capsys):
    files = _synthetic(tmp_path / "in")
    out = tmp_path / "out"
    config = _score_config(tmp_path / "a.conf", out, files, systems=GRID[2:5] + GRID[7:8])
    rc, err = _ablate(["--config", str(config)], capsys)
    assert rc == 0, err
    root = out / "ablation"
    for name in ("ablation.csv", "ablation.md", "ablation_det.png", "config.yaml"):
        assert (root / name).stat().st_size > 0, name
    md = (root / "ablation.md").read_text(encoding="utf-8")
    assert md.splitlines()[2].startswith(f"Score files (dev: ASV `{files['dev']['asv']}`, CM `{files['dev']['cm']}`")
    assert "| eval act a-DCF |" in md
    llr_row = next(line for line in md.splitlines() if line.startswith("| lr_prior01 †"))
    sum_row = next(line for line in md.splitlines() if line.startswith("| sum |"))
    assert llr_row.split("|")[12].strip() != "-" and sum_row.split("|")[12].strip() == "-"
    for name in ("sum", "lr_prior01"):
        folder = root / name
        for f in ("scores/sasv_dev.txt", "scores/sasv_eval.txt", "backend_state.json", "thresholds.json", "hist.png",
                  "det.png"):
            assert (folder / f).stat().st_size > 0, (name, f)
        assert (folder / "reliability.png").exists() == (name == "lr_prior01")
        result = json.loads((folder / "result.json").read_text())
        inputs = result["provenance"]["inputs"]
        assert set(inputs) == {f"scores.{s}.{k}" for s in ("dev", "eval") for k in ("asv", "cm")}
        for flag, entry in inputs.items():
            split, kind = flag.split(".")[1:]
            assert entry["sha256"] == hashlib.sha256(files[split][kind].read_bytes()).hexdigest()
        assert result["cm_score"] == "file" and "frontends" not in result
    from data.score_files import read_sasv_scores
    for split in ("dev", "eval"):        # the aligned inputs, once for every system, as SASV 2022 files with the keys
        for kind, name in (("asv", "asv"), ("cm", "cm_trials")):
            written = read_sasv_scores(root / "scores" / f"{name}_{split}.txt")
            given = read_sasv_scores(files[split][kind])
            assert written.trials() == given.trials() and written.key == given.key
            np.testing.assert_array_equal(written.score, given.score)
    # a rerun skips every system; --force redoes them; a changed input file redoes them
    before = {p: p.stat().st_mtime_ns for p in root.glob("*/result.json")}
    rc, err = _ablate(["--config", str(config)], capsys)
    assert rc == 0 and err.count("is up to date, skipped") == 4, err
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/result.json")} == before
    rc, err = _ablate(["--config", str(config), "--force"], capsys)
    assert rc == 0 and "skipped" not in err and err.count("(score files)") == 4, err
    text = files["eval"]["cm"].read_text().splitlines(keepends=True)
    files["eval"]["cm"].write_text("".join(text[::-1]))      # same trials and scores in another order: re-read
    rc, err = _ablate(["--config", str(config)], capsys)
    assert rc == 0 and "skipped" not in err, err


def test_line_order_does_not_change_the_table(tmp_path, capsys):
    """Trials are matched by (speaker, utterance): a CM file in shuffled order gives the same table."""
    rows = {}
    for shuffle in (False, True):
        out = tmp_path / f"out_{shuffle}"
        config = _score_config(tmp_path / f"{shuffle}.conf", out, _synthetic(tmp_path / f"in_{shuffle}", shuffle),
                               systems=GRID[7:8], pictures=False)
        rc, err = _ablate(["--config", str(config)], capsys)
        assert rc == 0, err
        rows[shuffle] = _csv(out / "ablation" / "ablation.csv")[1]["lr_prior01"]
    assert rows[False] == rows[True]


# ------------------------------------------------------------------------------------------------- bad configs

def _bad(tmp_path: Path, files: dict) -> dict:
    return {"task": "sasv", "output_dir": str(tmp_path / "out"),
            "scores": {split: {k: str(v) for k, v in f.items()} for split, f in files.items()},
            "ablation": {"systems": [{"name": "x", "backend": "lr_fusion"}]}}


def _unlabel(path: Path) -> None:
    """The file as CSV without keys (an eval split as a challenge hands it out)."""
    lines = [line.split() for line in path.read_text().splitlines()]
    path.write_text("spk,utt,score\n" + "".join(f"{s},{u},{score}\n" for s, u, _, _, score in lines))


def _drop_spoof(path: Path) -> None:
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if " spoof " not in line))


@pytest.mark.parametrize("change, message", [
    (lambda cfg, files: cfg.update(database="/corpus/LA"),
     "'scores' (score files) and 'database' (the cached embeddings of a corpus) are two sources"),
    (lambda cfg, files: cfg.pop("scores"), "no source of scores: give 'scores'"),
    (lambda cfg, files: cfg.update(asv={"arch": "ECAPA-TDNN"}), "'asv' belongs to an ablation on cached embeddings"),
    (lambda cfg, files: cfg["scores"]["dev"].update(asvv="x"), "unknown key 'scores.dev.asvv'"),
    (lambda cfg, files: cfg["scores"]["eval"].update(asv=3), "'scores.eval.asv' must be"),
    (lambda cfg, files: cfg["scores"]["eval"].pop("cm"), "missing required key 'scores.eval.cm'"),
    (lambda cfg, files: cfg["ablation"]["systems"].append({"name": "b2", "backend": "baseline2"}),
     "ablation system 'b2': baseline2 is an embedding back-end"),
    (lambda cfg, files: cfg["ablation"]["systems"][0].update(overrides={"score_norm.method": "snorm"}),
     "ablation system 'x': 'overrides' needs embeddings"),
    (lambda cfg, files: cfg["ablation"]["systems"][0].update(cm_score="posterior"),
     "ablation system 'x': 'cm_score' needs embeddings"),
    (lambda cfg, files: cfg["ablation"]["systems"][0].update(options={"prior": 2}),
     "ablation system 'x': lr_fusion: option 'prior' must be in (0, 1), got 2"),
    (lambda cfg, files: cfg["ablation"]["systems"][0].update(options={"priorr": 0.1}),
     "ablation system 'x': unknown keyword 'priorr'"),
    (lambda cfg, files: cfg["scores"]["eval"].update(cm=str(files["eval"]["cm"]) + ".missing"),
     "scores.eval.cm "),
    (lambda cfg, files: _unlabel(files["eval"]["asv"]) or _unlabel(files["eval"]["cm"]),
     "the eval split has no labels"),
    (lambda cfg, files: _drop_spoof(files["dev"]["asv"]) or _drop_spoof(files["dev"]["cm"]),
     "the dev split has no spoof trials (100 target, 100 nontarget, 0 spoof)"),
    (lambda cfg, files: cfg["ablation"].update(dir=str(Path(files["dev"]["asv"]).parent)),
     "lies in"),
])
def test_bad_configs_are_one_line_and_write_nothing(change, message, tmp_path, capsys):
    files = _synthetic(tmp_path / "in")
    cfg = _bad(tmp_path, files)
    change(cfg, files)
    before = files_under(tmp_path / "in")
    rc, err = _ablate(["--config", str(write_config(tmp_path / "bad.conf", cfg))], capsys)
    assert rc == 2
    assert_one_line_error(err, message)
    assert not (tmp_path / "out").exists()
    assert files_under(tmp_path / "in") == before
