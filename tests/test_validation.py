"""One validation path: every key of every schema carries its rule, `load_config` refuses what a rule refuses (one line
naming the key, the value and what is allowed), every SASV entry point refuses what main.py refuses before it
writes anything, and command-line flags go through the same rules. No corpus is needed: every refusal here comes
before any file is read."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

import main as main_py
import save_asv_embeddings
import save_cm_score
import save_sasv_score
from common.cli import run_main
from common.config import REQUIRED, ConfigError, FreeForm, Rule, as_overrides, check_config, load_config, set_dotted
from tests.pipeline_fixtures import assert_one_line_error, call

# Numeric keys whose every finite value is meaningful: listed here on purpose, so that a new numeric key without
# a range is a test failure until it gets one (or is added here with a reason).
UNBOUNDED = {
    "loss.init_b",     # task sasv_e2e: the angular prototypical loss's initial bias, any sign
}


def _schemas() -> dict[str, tuple[Mapping, list[str]]]:
    """Every schema an entry point loads, with the overrides that set its required keys."""
    from pipeline.recipes import asv_task, cm_task, sasv_e2e_task, sasv_task
    from pipeline.tools.ablation import grid
    return {"asv": (asv_task.SCHEMA, ["output_dir=/out"]),
            "cm": (cm_task.SCHEMA, ["output_dir=/out", "database=/db"]),
            "sasv": (sasv_task.SCHEMA, ["output_dir=/out", "database=/db"]),
            "sasv_e2e": (sasv_e2e_task.SCHEMA, ["output_dir=/out"]),
            "ablation": (grid.SCHEMA, ["output_dir=/out", "database=/db"]),
            "ablation_score_files": (grid.SCORE_FILES_SCHEMA, ["output_dir=/out"] + [
                f"scores.{split}.{kind}=/{kind}_{split}.txt" for split in ("dev", "eval") for kind in ("asv", "cm")])}


def _leaves(schema: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, leaf in schema.items():
        if isinstance(leaf, FreeForm):
            continue                   # a component's keyword arguments, checked by the component
        if isinstance(leaf, Mapping):
            yield from _leaves(leaf, f"{prefix}{key}.")
        else:
            yield prefix + key, leaf


def _bad_values(rule: Rule) -> list[Any]:
    """Values the rule must refuse, derived from what it declares (null where it is not nullable)."""
    kind, bad = rule.value_type, []
    if not rule.allows_null:
        bad.append(None)
    if rule.choices:
        bad.append(max(rule.choices) + 1 if kind is int else "not-a-choice")
    if kind in (int, float):
        step = 1 if kind is int else 0.5
        bad += [rule.low - step] if rule.low is not None else []
        bad += [rule.high + step] if rule.high is not None else []
        bad += [kind(rule.above)] if rule.above is not None else []
        bad += [kind(rule.below)] if rule.below is not None else []
        bad += [math.nan, math.inf] if kind is float else [1.5]
        bad.append("many")
    if kind is str and rule.nonempty:
        bad += ["", "  "]
    if kind is list:
        item = rule.items.default if rule.items is not None else 0
        bad += [[]] if rule.nonempty else []
        bad += [[item] * (rule.size + 1)] if rule.size is not None else []
        bad += [[item, item]] if rule.unique else []
        bad += [[v] for v in (_bad_values(rule.items) if rule.items is not None else []) if v is not None]
        bad.append("a-string")
    return bad


def _override(dotted: str, value: Any) -> str:
    nested: dict = {}
    set_dotted(nested, dotted, value, "test")
    return as_overrides(nested)[0]


@pytest.mark.parametrize("name", ["asv", "cm", "sasv", "sasv_e2e", "ablation", "ablation_score_files"])
def test_every_constrained_key_refuses_what_its_rule_refuses(name):
    schema, required = _schemas()[name]
    resolved = load_config(None, required, schema)
    checked = 0
    for dotted, leaf in _leaves(schema):
        rule = leaf if isinstance(leaf, Rule) else Rule(leaf)
        kind = rule.value_type
        # a key without a rule would take any value of its type: every kind but true/false needs one
        if kind in (int, float) and dotted not in UNBOUNDED:
            assert rule.choices or {rule.low, rule.high, rule.above, rule.below} != {None}, \
                f"{name}: '{dotted}' is a number without a range (give it one, or list it in UNBOUNDED)"
        if kind is str:
            assert rule.choices or rule.nonempty or rule.default is None, f"{name}: '{dotted}' has no rule"
        if rule.default is None or rule.default is REQUIRED:
            assert rule.kind is not None, f"{name}: '{dotted}' defaults to {rule.default!r} but names no type"
        if kind is list and dotted != "ablation.systems":   # systems: each entry is checked by parse_systems
            assert rule.items is not None, f"{name}: '{dotted}' does not say what its items may be"
        for value in _bad_values(rule):
            with pytest.raises(ConfigError) as e:
                load_config(None, [*required, _override(dotted, value)], schema)
            message = str(e.value)
            assert f"'{dotted}' must be {rule.describe()}, got " in message and "\n" not in message, message
            checked += 1
        if rule.default is not REQUIRED:   # the default itself is allowed, and the resolved config holds plain values
            assert not isinstance(resolved_value(resolved, dotted), Rule)
    assert checked > (20 if name == "ablation_score_files" else 40)   # the score-file ablation has no corpus keys


def resolved_value(cfg: Mapping, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def test_rule_words_and_command_line_types():
    import argparse

    from engine.seeding import SEED
    from metrics.thresholds import FAR
    assert SEED.describe() == "an integer in [0, 4294967295]"
    assert FAR.describe() == "a finite number in (0, 1)"
    assert Rule(None, kind=float, low=0.0).describe() == "null or a finite number >= 0"
    splits = Rule(["dev"], nonempty=True, unique=True, items=Rule("dev", choices=("train", "dev")))
    assert splits.describe() == "a non-empty list without repeats, each one of train, dev"
    assert Rule(1.0).check("x", 2) == 2.0 and isinstance(Rule(1.0).check("x", 2), float)   # as before: int -> float
    assert Rule(1.0).check("x", "1e-3") == 0.001                      # YAML 1.1 reads 1e-3 as a string
    assert Rule([1.0], items=Rule(1.0)).check("x", [1, 2]) == [1, 2]   # list items are kept as written
    assert Rule(None).check("x", object) is object                      # a None default without a kind: any value
    with pytest.raises(ConfigError, match=r"^'default' must be an integer >= 1, got 0$"):
        Rule(0, low=1)                  # a schema that breaks its own rule fails at import
    assert FAR.with_default(0.05).default == 0.05 and FAR.with_default(0.05).below == 1.0
    parser = argparse.ArgumentParser(prog="tool", exit_on_error=False)
    parser.add_argument("--far", type=FAR.argument_type())
    assert parser.parse_args(["--far", "0.25"]).far == 0.25
    with pytest.raises(argparse.ArgumentError, match=r"must be a finite number in \(0, 1\), got 1"):
        parser.parse_args(["--far", "1"])


def test_a_section_built_in_code_gets_the_same_rules():
    from engine import TRAIN_SCHEMA, train_config
    train = train_config()
    assert check_config(train, TRAIN_SCHEMA, "training config") == train
    with pytest.raises(ConfigError, match=r"^training config: 'seed' must be an integer in \[0, 4294967295\], "
                                          r"got null$"):
        check_config({**train, "seed": None}, TRAIN_SCHEMA, "training config")


# ---------------------------------------------------------------------------------------------
# The cases, through the entry points
# ---------------------------------------------------------------------------------------------
def test_train_seed_null_is_one_line_before_anything(tmp_path, capsys):
    """`train.seed: null` in a config file was a TypeError once training started."""
    conf = tmp_path / "seed.conf"
    text = (Path("configs") / "quickstart_cm.conf").read_text()
    conf.write_text(text.replace("train:\n", "train:\n  seed: null\n", 1))
    assert "  seed: null\n" in conf.read_text()
    out = tmp_path / "out"
    rc, err = call(lambda a: run_main(main_py.main, a),
                   ["--config", str(conf), f"database={tmp_path / 'db'}", f"output_dir={out}"], capsys)
    assert rc == 2
    assert_one_line_error(err, str(conf), "'train.seed' must be an integer in [0, 4294967295], got null")
    assert not out.exists()


@pytest.mark.parametrize("config, samples, message", [
    ("quickstart_cm.conf", 0, "'data.train_samples' must be an integer >= 1, got 0"),
    ("quickstart_cm.conf", 100, "'data.train_samples' is 100, shorter than the shortest input of LCNN-LFCC-LPS "
                                "(2400 samples)"),
    ("quickstart_asv.conf", 0, "'data.train_samples' must be an integer >= 1, got 0"),
    ("quickstart_asv.conf", 399, "'data.train_samples' is 399, shorter than the shortest input of ECAPA-TDNN "
                                 "(400 samples)"),
    ("quickstart_sasv2_stage3.conf", 0, "'data.train_samples' must be an integer >= 1, got 0"),
    ("quickstart_sasv2_stage3.conf", 10, "shorter than the shortest input of ECAPA-TDNN (400 samples)"),
])
def test_training_crop_below_the_model_is_refused_before_training(config, samples, message, tmp_path, capsys):
    """`data.train_samples: 0` reached the model as a ValueError; a crop shorter than the model's shortest input
    is refused too (from the class's `min_samples`, or a model built for it: no weights, milliseconds)."""
    out, data = tmp_path / "out", {"quickstart_cm.conf": "database", "quickstart_asv.conf": "data.voxceleb",
                                   "quickstart_sasv2_stage3.conf": "data.database"}[config]
    rc, err = call(lambda a: run_main(main_py.main, a), ["--config", f"configs/{config}", f"{data}={tmp_path / 'db'}",
                                                          f"output_dir={out}", f"data.train_samples={samples}"], capsys)
    assert rc == 2
    assert_one_line_error(err, message)
    assert not out.exists()


# Values main.py refuses for task sasv; each stage script, verify.py and main.py refuse them in the same line.
REFUSED = [
    (["train.epochs=0"], "'train.epochs' must be an integer >= 1, got 0"),
    (["sampling.scheme=3class"], "'sampling.scheme' must be one of 2class, 4class, baseline2, got '3class'"),
    (["score_norm.top_n=1"], "'score_norm.top_n' must be an integer >= 2, got 1"),
    (["asv.crop.policy=even", "asv.crop.samples=10"],
     "'asv.crop.samples' is 10, shorter than the shortest input of ECAPA-TDNN (400 samples)"),
    (["mode=joint"], "mode joint needs an embedding back-end (baseline2, joint_oc), not 'score_sum'"),
    (["mode=joint", "backend.name=joint_oc", "sampling.scheme=baseline2"],
     "mode joint samples waveform trials: 'sampling.scheme' must be one of 2class, 4class, got 'baseline2'"),
    (["mode=joint", "backend.name=joint_oc", "joint.test_samples=1000"],
     "'joint.test_samples' is 1000, shorter than the shortest input of LCNN-LFCC-LPS (2400 samples)"),
    (["joint.aux_cm_class_weights=[0, 0]"], "'joint.aux_cm_class_weights' (spoof, bona fide) must have a positive sum"),
    (["train.select_initial=true", "train.select_metric=train_loss"], "'select_initial' needs a dev select_metric"),
    (["backend.options={nope: 1}"], "unknown keyword 'nope' for fusion back-end score_sum"),
    (["backend.name=lr_fusion", "backend.options={prior: 2}"], "backend.options: lr_fusion: option 'prior' must be in"),
    (["backend.name=joint_oc", "backend.options={nope: 1}"], "unknown keyword 'nope' for fusion back-end joint_oc"),
]


@pytest.mark.parametrize("overrides, message", REFUSED, ids=[r[0][-1] for r in REFUSED])
def test_every_sasv_entry_point_refuses_what_main_py_refuses(overrides, message, tmp_path, capsys):
    """A value main.py refused was accepted by a stage script and stored in its config.yaml. Now every SASV entry
    point refuses it with the same line, before output_dir gets a config.yaml or anything else."""
    import verify

    out = tmp_path / "out"
    out.mkdir()
    argv = ["--config", "configs/quickstart.conf", f"database={tmp_path / 'db'}", f"output_dir={out}", *overrides]
    lines = set()
    for entry, extra in ((main_py.main, []), (save_asv_embeddings.main, []), (save_cm_score.main, []),
                         (save_sasv_score.main, []), (verify.main, ["--enroll", "a.wav", "--test", "b.wav"])):
        rc, err = call(lambda a, entry=entry: run_main(entry, a), [*argv, *extra], capsys)
        assert rc == 2, (entry.__module__, err)
        lines.add(assert_one_line_error(err, message))
        assert list(out.iterdir()) == [], f"{entry.__module__} wrote into output_dir"
    assert len(lines) == 1, lines


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "high"])
def test_verify_threshold_must_be_finite(value, capsys):
    """`verify.py --threshold nan` rejected every trial with exit 0: now argparse's error, exit 2, before the
    config is read (the file named here does not exist)."""
    import verify
    with pytest.raises(SystemExit) as e:
        run_main(verify.main, ["--config", "none.conf", "--enroll", "a.wav", "--test", "b.wav", f"--threshold={value}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"error: argument --threshold: must be a finite number, got {value}")


@pytest.mark.parametrize("script, argv, message", [
    ("copy_synthesis", ["--voxceleb", "v", "--out", "o", "--workers", "0"],
     "--workers: must be an integer >= 1, got 0"),
    ("copy_synthesis", ["--voxceleb", "v", "--out", "o", "--limit-per-speaker=-2"],
     "--limit-per-speaker: must be an integer >= 1, got -2"),
    ("copy_synthesis", ["--voxceleb", "v", "--out", "o", "--seed=-1"], "--seed: must be an integer >= 0, got -1"),
    ("generate_corpus", ["--out", "o", "--seed", "1.5"], "--seed: must be an integer >= 0, got 1.5"),
    ("generate_corpus", ["--out", "o", "--workers", "0"], "--workers: must be an integer >= 1, got 0"),
])
def test_tool_flags_go_through_rules(script, argv, message, tmp_path, monkeypatch, capsys):
    import importlib
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        importlib.import_module(script).main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().splitlines()[-1].endswith(f"argument {message}"), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override, message", [
    ("train.epochs=0", "'train.epochs' must be an integer >= 1, got 0"),
    ("train.optimizer.lr=-1", "'train.optimizer.lr' must be a finite number >= 0, got -1"),
    ("trian.epochs=1", "override 'trian.epochs=1': no quickstart config has the key 'trian'"),
])
def test_demo_checks_every_config_before_the_corpus(override, message, tmp_path, capsys):
    """The demo's overrides reach six configs; a bad one fails before step 1, not after the corpus is written."""
    import demo
    rc, err = call(lambda a: run_main(demo.main, a),
                   ["--out", str(tmp_path / "exp"), "--corpus", str(tmp_path / "corpus"), override], capsys)
    assert rc == 2
    assert_one_line_error(err, message)
    assert list(tmp_path.iterdir()) == []
