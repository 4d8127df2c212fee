"""fuse.py: other systems' ASV and CM score files fused by the score-level back-ends (docs/backends.md, "Fusing score
files from other systems"): any format, trials matched by id, labels checked, one-line errors writing nothing, and the
demo's score-level systems reproduced from the stage score files."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

import fuse
import save_sasv_score
from common.cli import run_main
from data.score_files import read_asvspoof5_sasv, read_sasv_scores
from fusion import build_backend
from metrics.report import evaluate_trials
from tests.pipeline_fixtures import assert_one_line_error, call, files_under, frontends, sasv_args, staged, tiny_corpus

__all__ = ["frontends", "staged", "tiny_corpus"]      # session fixtures used below

ATTACKS = ("A07", "A08", "A09")


def _trials(split: str, n: int, seed: int) -> list[tuple]:
    """(spk, utt, attack, key, asv, cm) of n synthetic trials: targets score high on both, nontargets low on ASV,
    spoofs low on CM; a few utterances are tested by two speakers (as in the real lists)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        key = ("target", "nontarget", "spoof")[i % 3]
        shared = key == "nontarget" and (i // 3) % 2 == 1      # tests the utterance of nontarget trial i - 3
        utt = f"{split}_U{i - 3 if shared else i:05d}"
        spk = f"S{((i - 3) % 7 + 1) % 7}" if shared else f"S{i % 7}"
        attack = ATTACKS[i % len(ATTACKS)] if key == "spoof" else "bonafide"
        asv = rng.normal(0.6 if key != "nontarget" else 0.1, 0.15)
        cm = rng.normal(3.0 if key != "spoof" else -2.0, 1.5)
        rows.append((spk, utt, attack, key, float(asv), float(cm)))
    # nontargets share test utterances pairwise: give a shared utterance one CM score
    cm_of = {}
    return [(s, u, a, k, asv, cm_of.setdefault(u, cm)) for s, u, a, k, asv, cm in rows]


def _write(path: Path, lines) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _files(folder: Path, split: str, rows, shuffle: int | None = None) -> dict[str, Path]:
    """The split as an ASV SASV 2022 file, a trial-level CM SASV 2022 file, a per-utterance 2019 CM file and a
    2019 trial list; the CM files in shuffled order when `shuffle` is a seed."""
    folder.mkdir(parents=True, exist_ok=True)
    cm_rows = list(rows)
    utts = list(dict.fromkeys((u, a, k) for _, u, a, k, _, _ in rows))
    cm_of = {u: c for _, u, _, _, _, c in rows}
    if shuffle is not None:
        random.Random(shuffle).shuffle(cm_rows)
        random.Random(shuffle).shuffle(utts)
    return {
        "asv": _write(folder / f"asv_{split}.txt", [f"{s} {u} {a} {k} {v!r}" for s, u, a, k, v, _ in rows]),
        "cm": _write(folder / f"cm_trials_{split}.txt", [f"{s} {u} {a} {k} {c!r}" for s, u, a, k, _, c in cm_rows]),
        "cm_utt": _write(folder / f"cm_{split}.txt",
                         [f"{u} {'-' if k != 'spoof' else a} {'spoof' if k == 'spoof' else 'bonafide'} {cm_of[u]!r}"
                          for u, a, k in utts]),
        "trials": _write(folder / f"trials_{split}.txt", [f"{s} {u} {a} {k}" for s, u, a, k, _, _ in rows]),
    }


@pytest.fixture
def files(tmp_path):
    rows = {"dev": _trials("dev", 300, 0), "eval": _trials("eval", 240, 1)}
    return {split: _files(tmp_path / "in", split, r) for split, r in rows.items()} | {"rows": rows}


def _args(files, out: Path, asv="asv", cm="cm", trials: bool = False, backends=("score_sum", "lr_fusion"),
          det: bool = False, **swap):
    argv = []
    for split in ("dev", "eval"):
        f = {**files[split], **swap.get(split, {})}
        argv += [f"--asv-{split}", f[asv], f"--cm-{split}", f[cm]]
        if trials:
            argv += [f"--trials-{split}", f["trials"]]
    return [*map(str, argv), "--backends", *backends, "--out", str(out), *([] if det else ["--no-det"])]


def _fuse(argv, capsys) -> tuple[int, str]:
    return call(lambda a: run_main(fuse.main, a), argv, capsys)


def _expected(files, name: str, **options):
    """What the back-end gives when fitted on dev by hand: {split: scores}, and its eval metrics."""
    rows = files["rows"]
    backend = build_backend(name, **options)
    dev = rows["dev"]
    backend.fit(np.array([r[4] for r in dev]), np.array([r[5] for r in dev]), [r[3] for r in dev])
    scores = {s: backend.score(np.array([r[4] for r in r_]), np.array([r[5] for r in r_])) for s, r_ in rows.items()}
    ev = rows["eval"]
    metrics = evaluate_trials([r[3] for r in ev], scores["eval"], np.array([r[4] for r in ev]),
                              np.array([r[5] for r in ev]), llr=backend.outputs_llr)     # act a-DCF of an LLR
    return scores, metrics


def test_fuses_score_files_into_the_community_formats(files, tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    rc = run_main(fuse.main, [*_args(files, out, backends=("score_sum", "lr_fusion:prior=0.1"), det=True),
                              "--breakdown"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    results = json.loads((out / "results.json").read_text())
    assert set(results["rules"]) == {"score_sum", "lr_fusion_prior-0.1"}
    for label, name, options in (("score_sum", "score_sum", {}), ("lr_fusion_prior-0.1", "lr_fusion", {"prior": 0.1})):
        scores, metrics = _expected(files, name, **options)
        for split in ("dev", "eval"):
            written = read_sasv_scores(out / label / f"sasv_{split}.txt")
            assert written.trials() == [(r[0], r[1]) for r in files["rows"][split]]     # the ASV file's order
            assert np.array_equal(written.score, scores[split])
            package = read_asvspoof5_sasv(out / label / "asvspoof5" / f"sasv_{split}.tsv",
                                          out / label / "asvspoof5" / f"sasv_keys_{split}.tsv")
            assert np.array_equal(package["sasv"].score, scores[split]) and set(package) == {"sasv", "asv", "cm"}
        written = dict(results["rules"][label]["eval"])
        assert "attack" in written.pop("breakdown")        # --breakdown: per-attack tables, as evaluate.py
        assert written == pytest.approx(metrics)
        assert list(written.items()) == list(metrics.items())     # the same numbers exactly, in evaluate.py's order
        assert {"min_a_dcf", "min_a_dcf_asvspoof5", "t_eer", "sasv_eer"} <= set(results["rules"][label]["eval"])
        assert results["rules"][label]["state"]["backend"] == name
    for split in ("dev", "eval"):      # each rule's key file: the trials' labels, written once and copied
        keys = [(out / label / "asvspoof5" / f"sasv_keys_{split}.tsv").read_bytes() for label in results["rules"]]
        assert keys[0] == keys[1] and keys[0].count(b"\n") == len(files["rows"][split]) + 1
    assert (out / "det_eval.png").stat().st_size > 0 and (out / "det_dev.png").is_file()
    inputs = results["inputs"]
    assert set(inputs) == {"--asv-dev", "--cm-dev", "--asv-eval", "--cm-eval"}
    assert len(inputs["--cm-eval"]["sha256"]) == 64 and results["provenance"]["git"]
    table = (out / "table.txt").read_text()
    assert "lr_fusion_prior-0.1 (eval)" in table and table.strip() in printed.out


def test_line_order_and_format_do_not_change_the_fused_scores(files, tmp_path, capsys):
    """The same trials as shuffled trial-level CM files, per-utterance 2019 CM files joined to the trial list, CSV,
    and package Track 2 files with their key files as trial lists: the same fused scores, in one order."""
    rc, err = _fuse(_args(files, tmp_path / "ref"), capsys)
    assert rc == 0, err
    reference = read_sasv_scores(tmp_path / "ref" / "lr_fusion" / "sasv_eval.txt")
    variants = {}
    shuffled = {s: _files(tmp_path / "shuffled", s, files["rows"][s], shuffle=3) for s in ("dev", "eval")}
    variants["shuffled"] = _args(files, tmp_path / "shuffled_out", dev=shuffled["dev"], eval=shuffled["eval"])
    variants["per_utterance"] = _args(files, tmp_path / "utt_out", cm="cm_utt", trials=True)
    variants["per_utterance_no_list"] = _args(files, tmp_path / "utt_out2", cm="cm_utt")
    for split in ("dev", "eval"):      # eval reversed (dev kept: a fit's last bits depend on the trials' order)
        rows = files["rows"][split]
        shown = rows[::-1] if split == "eval" else rows
        with open(tmp_path / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["Speaker", "utt", "asv_score", "cm_score", "key", "attack"])
            writer.writerows([[s, u, repr(asv), repr(c), k, a] for s, u, a, k, asv, c in shown])
        files[split]["csv"] = tmp_path / f"{split}.csv"
        _write(tmp_path / f"{split}.tsv", ["spk\tfilename\tcm-score\tasv-score\tsasv-score"]
               + [f"{s}\t{u}\t{c!r}\t{asv!r}\t-" for s, u, _, _, asv, c in shown])
        _write(tmp_path / f"{split}_keys.tsv", ["spk\tfilename\tcm-label\tasv-label"]
               + [f"{s}\t{u}\t{'spoof' if k == 'spoof' else 'bonafide'}\t{k}" for s, u, _, k, _, _ in rows])
        files[split]["package"] = tmp_path / f"{split}.tsv"
        files[split]["package_keys"] = tmp_path / f"{split}_keys.tsv"
    variants["csv"] = _args(files, tmp_path / "csv_out", asv="csv", cm="csv")
    package = _args(files, tmp_path / "package_out", asv="package", cm="package")
    package += ["--trials-dev", str(files["dev"]["package_keys"]), "--trials-eval", str(files["eval"]["package_keys"])]
    variants["package"] = package
    for name, argv in variants.items():
        rc, err = _fuse(argv, capsys)
        assert rc == 0, f"{name}: {err}"
        out = Path(argv[argv.index("--out") + 1])
        got = read_sasv_scores(out / "lr_fusion" / "sasv_eval.txt")
        order = {t: i for i, t in enumerate(got.trials())}
        idx = [order[t] for t in reference.trials()]
        assert np.array_equal(got.score[idx], reference.score), name
        assert [got.key[i] for i in idx] == reference.key, name


def test_an_eval_split_without_labels_is_scored_without_metrics(files, tmp_path, capsys):
    rows = files["rows"]["eval"]
    unlabelled = _write(tmp_path / "eval.tsv", ["spk\tfilename\tcm-score\tasv-score\tsasv-score"]
                        + [f"{s}\t{u}\t{c!r}\t{asv!r}\t-" for s, u, _, _, asv, c in rows])
    out = tmp_path / "out"
    rc, err = _fuse(_args(files, out, eval={"asv": unlabelled, "cm": unlabelled}), capsys)
    assert rc == 0, err
    assert f"note: the eval split (--asv-eval {unlabelled}) has no labels" in err and "without metrics" in err
    results = json.loads((out / "results.json").read_text())
    assert set(results["rules"]["lr_fusion"]) >= {"dev"} and "eval" not in results["rules"]["lr_fusion"]
    assert results["splits"]["eval"] == {"trials": len(rows), "labelled": False, "source": f"--asv-eval {unlabelled}"}
    assert not (out / "lr_fusion" / "sasv_eval.txt").exists() and not (out / "det_eval.png").exists()
    package = read_asvspoof5_sasv(out / "lr_fusion" / "asvspoof5" / "sasv_eval.tsv")
    assert np.array_equal(package["sasv"].score, _expected(files, "lr_fusion")[0]["eval"])


def _edit(path: Path, change) -> Path:
    lines = path.read_text().splitlines()
    new = path.with_name("bad_" + path.name)
    return _write(new, change(lines))


BAD = {
    "trial sets differ": (lambda f: {"eval": {"cm": _edit(f["eval"]["cm"],
                                                          lambda ls: ls[1:] + ["S0 extra_U A07 spoof 1.0"])}},
                          ("--asv-eval", "--cm-eval", "disagree on trials (240 vs 240)",
                           "'S0 eval_U00000' is in --asv-eval", "'S0 extra_U' is in --cm-eval")),
    "dev without spoof": (lambda f: {"dev": {k: _edit(f["dev"][k], lambda ls: [x for x in ls if " spoof " not in x])
                                             for k in ("asv", "cm")}},
                          ("fusion rule product_rule needs spoof trials in the dev split", "0 spoof")),
    "nan score": (lambda f: {"eval": {"asv": _edit(f["eval"]["asv"], lambda ls: ls[:5] + [ls[5].rsplit(" ", 1)[0]
                                                                                          + " nan"] + ls[6:])}},
                  ("bad_asv_eval.txt:6", "'nan' is not a finite number")),
    "inf score": (lambda f: {"dev": {"cm": _edit(f["dev"]["cm"], lambda ls: [ls[0].rsplit(" ", 1)[0] + " -inf"]
                                                 + ls[1:])}},
                  ("bad_cm_trials_dev.txt:1", "not a finite number")),
    "duplicated trial": (lambda f: {"dev": {"asv": _edit(f["dev"]["asv"], lambda ls: ls + [ls[2]])}},
                         ("bad_asv_dev.txt:301", "listed twice (first on line 3)")),
    "unrecognised format": (lambda f: {"eval": {"cm": _edit(f["eval"]["cm"], lambda ls: [" ".join(x.split()[:3])
                                                                                        for x in ls])}},
                            ("unrecognised score file: its first line is 'S0 eval_U00000 bonafide'", "expected one of",
                             "SASV 2022 'SPK UTT ATTACK KEY SCORE'", "CSV")),
    "CSV without trial ids": (lambda f: {"eval": {"cm": _write(f["eval"]["cm"].with_name("organisers.csv"),
                                                               ["asv_score,cm_score,sasv_label", "0.5,3.1,1.0"])}},
                              ("organisers.csv: the CSV header 'asv_score,cm_score,sasv_label' names no trials",
                               "never by line order")),
    "labels disagree": (lambda f: {"dev": {"cm": _edit(f["dev"]["cm"], lambda ls: [ls[0].replace(" target ",
                                                                                            " nontarget ")] + ls[1:])}},
                        ("trial 'S0 dev_U00000' is 'bonafide target' in --asv-dev",
                         "'bonafide nontarget' in --cm-dev")),
    "eval labels contradict the trial list": (
        lambda f: {"eval": {"asv": _edit(f["eval"]["asv"], lambda ls: [ls[0].replace(" target ", " nontarget ")]
                                         + ls[1:])}},
        ("trial 'S0 eval_U00000' is 'bonafide target' in --trials-eval", "'bonafide nontarget' in --asv-eval")),
    "per-utterance CM lacks a tested utterance": (
        lambda f: {"eval": {"cm_utt": _edit(f["eval"]["cm_utt"], lambda ls: ls[1:])}},
        ("disagree on trials: 1 of the 240 trials of --trials-eval", "the first 'S0 eval_U00000'")),
    "per-utterance CM label contradicts the trial": (
        lambda f: {"eval": {"cm_utt": _edit(f["eval"]["cm_utt"], lambda ls: [ls[0].replace("- bonafide", "A07 spoof")]
                                            + ls[1:])}},
        ("trial 'S0 eval_U00000' is 'bonafide target' in --trials-eval", "its test utterance is 'A07 spoof'")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case, files, tmp_path, capsys):
    change, needles = BAD[case]
    per_utterance = case.startswith("per-utterance")
    backends = ("product_rule",) if case == "dev without spoof" else ("lr_fusion",)
    out = tmp_path / "out"
    argv = _args(files, out, cm="cm_utt" if per_utterance else "cm",
                 trials=per_utterance or case.startswith("eval labels"), backends=backends, **change(files))
    rc, err = _fuse(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, *needles)
    assert not out.exists() and files_under(out) == []


def test_bad_rules_and_unlabelled_dev_are_refused(files, tmp_path, capsys):
    out = tmp_path / "out"
    for backends, needle in ((("baseline2",), "'baseline2' is not a score-level back-end"),
                             (("lr_fusion:prior=2",), "'prior' must be in (0, 1)"),
                             (("lr_fusion:alpha=1",), "unknown keyword 'alpha'"),
                             (("lr_fusion", "lr_fusion"), "lr_fusion is given twice")):
        rc, err = _fuse(_args(files, out, backends=backends), capsys)
        assert rc == 2
        assert_one_line_error(err, needle)
    rows = files["rows"]["dev"]
    unlabelled = _write(tmp_path / "dev.tsv", ["spk\tfilename\tcm-score\tasv-score\tsasv-score"]
                        + [f"{s}\t{u}\t{c!r}\t{asv!r}\t-" for s, u, _, _, asv, c in rows])
    rc, err = _fuse(_args(files, out, dev={"asv": unlabelled, "cm": unlabelled}), capsys)
    assert rc == 2
    assert_one_line_error(err, "the dev split has no labels")
    assert not out.exists()


def test_an_output_that_is_an_input_is_refused(files, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = _fuse(_args(files, out), capsys)
    assert rc == 0, err
    rc, err = _fuse(_args(files, tmp_path / "again", eval={"asv": out / "scores" / "asv_eval.txt"}), capsys)
    assert rc == 0, err                                # reading a previous run's files is fine...
    argv = _args(files, out, eval={"asv": out / "scores" / "asv_eval.txt"})
    rc, err = _fuse(argv, capsys)                      # ...writing over the file being read is not
    assert rc == 2
    assert_one_line_error(err, "is also an input of this command (--asv-eval)")


@pytest.mark.parametrize("backend", ["score_sum", "lr_fusion", "product_rule"])
def test_the_demos_score_level_rows_from_the_stage_score_files(backend, staged, tiny_corpus, frontends, tmp_path,
                                                                capsys):
    """save_sasv_score.py with a score-level back-end on the staged caches, and fuse.py on the stage's own score
    files: the same SASV scores line for line and the same metrics."""
    stage_out = tmp_path / "stage"
    rc, err = call(lambda a: run_main(save_sasv_score.main, a),
                   sasv_args(tiny_corpus, frontends, stage_out, f"embeddings_dir={staged.embeddings}",
                             f"backend.name={backend}"), capsys)
    assert rc == 0, err
    scores = staged.out / "scores"
    out = tmp_path / "fused"
    argv = [f"--{kind}-{split}" if i == 0 else str(scores / f"{name}_{split}.txt")
            for split in ("dev", "eval") for kind, name in (("asv", "asv"), ("cm", "cm_trials")) for i in (0, 1)]
    rc, err = _fuse([*argv, "--backends", backend, "--out", str(out), "--breakdown"], capsys)
    assert rc == 0, err
    stage_results = json.loads((stage_out / "results.json").read_text())
    fused = json.loads((out / "results.json").read_text())["rules"][backend]
    for split in ("dev", "eval"):
        assert (out / backend / f"sasv_{split}.txt").read_text() == \
            (stage_out / "scores" / f"sasv_{split}.txt").read_text()
        assert fused[split] == stage_results[split]
    assert fused["state"] == json.loads((stage_out / "backend_state.json").read_text())
