"""Config schema checking, atomic pickle-free storage, the malloc setting of the entry points."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from common.config import REQUIRED, ConfigError, FreeForm, dump_config, load_config
from common.io import (
    atomic_write,
    copy_file,
    load_arrays,
    load_embeddings,
    save_arrays,
    save_embeddings,
    write_lines,
)

SCHEMA = {
    "task": REQUIRED,
    "output_dir": "exp/x",
    "train": {"epochs": 3, "lr": 1e-3, "amp": False, "milestones": [1, 2]},
    "model": FreeForm({"channels": 16}),
}


def test_defaults_overrides_and_yaml_values(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("task: asv\ntrain:\n  epochs: 5\n")
    cfg = load_config(conf, ["train.lr=1e-2", "model.extra=[1, 2]", "output_dir=runs/y"], SCHEMA)
    assert cfg == {"task": "asv", "output_dir": "runs/y",
                   "train": {"epochs": 5, "lr": 0.01, "amp": False, "milestones": [1, 2]},
                   "model": {"channels": 16, "extra": [1, 2]}}


def test_json_conf_parses(tmp_path):
    conf = tmp_path / "seed.conf"
    conf.write_text(json.dumps({"task": "cm", "train": {"epochs": 100}}))
    assert load_config(conf, [], SCHEMA)["train"]["epochs"] == 100


@pytest.mark.parametrize("text, overrides, message", [
    ("task: asv\ntrain: {epoch: 3}\n", [],
     "unknown key 'train.epoch'; valid keys under 'train': amp, epochs, lr, milestones"),
    ("task: asv\nouput_dir: x\n", [], "unknown key 'ouput_dir'"),
    ("task: asv\n", ["train.lrr=1"], "unknown key 'train.lrr'"),
    ("output_dir: x\n", [], "missing required key 'task'"),
    ("task: asv\n", ["train.epochs=ten"], "'train.epochs' must be an integer, got 'ten'"),
    ("task: asv\n", ["train.amp=1"], "'train.amp' must be true or false, got 1"),
    ("task: asv\n", ["train.epochs=null"], "'train.epochs' must be an integer, got null"),
    ("task: asv\n", ["train.lr=.nan"], "'train.lr' must be a finite number, got nan"),
    ("task: asv\ntrain: 3\n", [], "'train' must be a section"),
    ("task: [unclosed\n", [], "not valid YAML/JSON"),
    ("task: asv\n", ["train.epochs"], "expected key=value"),
])
def test_bad_config_names_the_key(tmp_path, text, overrides, message):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(conf, overrides, SCHEMA)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.conf", [], SCHEMA)


def test_dumped_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["task=sasv", "train.milestones=[4]"], SCHEMA)
    dump_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(tmp_path / "out" / "config.yaml", [], SCHEMA) == cfg
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["task"] == "sasv"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "scores.txt"
    write_lines(target, ["old"])
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half a line")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.txt"]


def test_rewrite_overwrites_not_appends(tmp_path):
    target = tmp_path / "s.txt"
    write_lines(target, ["a", "b"])
    write_lines(target, ["a", "b"])
    assert target.read_text() == "a\nb\n"


def test_write_lines_streams_a_generator_in_blocks_and_copy_file_is_exact(tmp_path):
    target = tmp_path / "s.txt"
    write_lines(target, (f"LA_{i:07d} {i / 7!r}" for i in range(40_000)))      # more than two blocks of lines
    assert target.read_text() == "".join(f"LA_{i:07d} {i / 7!r}\n" for i in range(40_000))
    write_lines(tmp_path / "empty.txt", iter(()))
    assert (tmp_path / "empty.txt").read_bytes() == b""

    def interrupted():      # a generator failing after a whole block was written: the old file stays
        yield from ("x",) * 20_000
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        write_lines(target, interrupted())
    assert target.read_text().startswith("LA_0000000 0.0\n")
    copy_file(target, tmp_path / "copy" / "s.txt")
    assert (tmp_path / "copy" / "s.txt").read_bytes() == target.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["copy", "empty.txt", "s.txt", "s.txt"]


def test_embeddings_round_trip_without_pickle(tmp_path):
    emb = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    save_embeddings(tmp_path / "e.npz", ["LA_T_1", "LA_T_2", "LA_T_3"], emb, scores=np.arange(3.0))
    ids, back = load_embeddings(tmp_path / "e.npz")
    assert ids == ["LA_T_1", "LA_T_2", "LA_T_3"]
    np.testing.assert_array_equal(back, emb)
    assert load_arrays(tmp_path / "e.npz")["scores"].tolist() == [0.0, 1.0, 2.0]


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="would be pickled"):
        save_arrays(tmp_path / "x.npz", bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="2 ids but 3 embedding rows"):
        save_embeddings(tmp_path / "y.npz", ["a", "b"], np.zeros((3, 2)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
@pytest.mark.parametrize("opt_out,applied", [("0", True), ("1", False)])
def test_retain_freed_memory_is_applied_unless_opted_out(opt_out, applied):
    code = "from common.allocator import retain_freed_memory; print(retain_freed_memory())"
    env = {**os.environ, "SASV_SYSTEM_MALLOC": opt_out}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert out == str(applied)


RETAINED_SCOPE = """
import numpy as np
from common.allocator import freed_memory_retained
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
def churn():                          # 200 MB allocated, touched and freed
    a = np.ones(25_000_000)
    del a
base = rss_mb()
with freed_memory_retained() as outer:
    with freed_memory_retained() as inner:
        churn()
    nested = rss_mb() - base
    churn()
    inside = rss_mb() - base
after = rss_mb() - base
churn()
print(outer, inner, round(nested), round(inside), round(after), round(rss_mb() - base))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_freed_memory_is_retained_inside_the_scope_and_handed_back_when_it_ends():
    """Inside the (outermost) block a freed 200 MB array stays resident and is reused; leaving an inner block
    changes nothing; leaving the outer one gives it back, and afterwards malloc returns big blocks at once."""
    out = subprocess.run([sys.executable, "-c", RETAINED_SCOPE], capture_output=True, text=True, check=True,
                         env={**os.environ, "SASV_SYSTEM_MALLOC": "0"}, cwd=Path(__file__).resolve().parents[1])
    outer, inner, nested, inside, after, later = out.stdout.split()
    assert (outer, inner) == ("True", "True")
    assert 150 < int(nested) < 260 and 150 < int(inside) < 260, out.stdout     # kept once, and reused
    assert int(after) < 50 and int(later) < 50, out.stdout                     # handed back; the default again
    opted_out = subprocess.run([sys.executable, "-c", RETAINED_SCOPE], capture_output=True, text=True, check=True,
                               env={**os.environ, "SASV_SYSTEM_MALLOC": "1"}, cwd=Path(__file__).resolve().parents[1])
    outer, inner, nested, *_ = opted_out.stdout.split()
    assert (outer, inner) == ("False", "False") and int(nested) < 50, opted_out.stdout


def test_entry_points_print_library_log_records_as_one_package_tagged_line(capsys):
    """run_main sends the toolkit's INFO records to the stderr of the moment (captures swap it), as
    `[package] message`; other libraries' INFO records stay quiet."""
    import logging

    from common.cli import report_to_stderr, run_main

    def main(argv):
        logging.getLogger("engine.trainer").info("epoch 1/1 step 3")
        logging.getLogger("some_library").info("noise")
        return 0

    assert run_main(main, []) == 0
    assert capsys.readouterr().err == "[engine] epoch 1/1 step 3\n"
    report_to_stderr()  # idempotent: still one line per record
    logging.getLogger("engine").warning("resuming")
    assert capsys.readouterr().err == "[engine] resuming\n"
