"""The embedding and score stages under torchrun: two gloo ranks on CPU write what one process writes (the arrays of
every cache, the score files byte for byte), a job stopped by a bad file on one rank says so in one line from rank
0 and leaves the other rank's finished shard, which the next job reuses, and a bad input stops both ranks at once.

The ranks are started the way torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT, env:// rendezvous), each
with its own stderr so that "one line from rank 0, nothing from the others" can be checked; one test goes through
torchrun itself. The single-process reference is the session's `staged` run (same corpus, front-ends, one thread).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.asvspoof import LADatabase
from pipeline.stages.sharding import shard_bounds, shard_files, shard_path
from tests.pipeline_fixtures import (
    ROOT,
    assert_one_line_error,
    copy_corpus,
    env,
    finish,
    frontends,
    sasv_args,
    staged,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name

RANKS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: str, args: list, world: int = RANKS) -> list[subprocess.CompletedProcess]:
    """`script` as the `world` ranks of one job, started as torchrun starts its workers; each rank's result."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, script, *map(str, args)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env(), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world),
                                   "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": str(port)})
             for r in range(world)]
    return [finish(p, timeout=180) for p in procs]


def same_arrays(a: Path, b: Path, names: list[str] | None = None) -> None:
    """Two caches hold the same arrays (all, or `names`), with equal dtypes and values, in the same order."""
    with np.load(a) as x, np.load(b) as y:
        assert x.files == y.files, (a, x.files, y.files)
        for name in names or x.files:
            assert x[name].dtype == y[name].dtype and np.array_equal(x[name], y[name]), f"{a.name}: {name} differs"


def test_shard_bounds_are_whole_batches_in_order_and_even():
    for n in (1, 15, 16, 17, 100, 1000, 1001):
        for world in (1, 2, 3, 8):
            for batch in (1, 7, 16):
                bounds = [shard_bounds(n, world, r, batch) for r in range(world)]
                assert bounds[0][0] == 0 and bounds[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))   # in rank order
                assert all(first % batch == 0 for first, _ in bounds)                 # one process's batches
                sizes = [-(-(end - first) // batch) for first, end in bounds]        # batches per rank
                assert max(sizes) - min(sizes) <= 1, (n, world, batch, bounds)
    assert shard_bounds(20, 2, 0, 16) == (0, 16) and shard_bounds(20, 2, 1, 16) == (16, 20)
    assert shard_path(Path("e/cm_dev.npz"), 1, 2) == Path("e/cm_dev.shard-1-of-2.npz")


def test_torchrun_asv_stage_writes_what_one_process_writes(staged, tiny_corpus, frontends, tmp_path):
    """`torchrun --nproc_per_node=2 save_asv_embeddings.py`: every cache (embeddings of each split, speaker models)
    holds the single process's arrays, record included; the ASV score files are byte-identical; rank 0 alone
    logged, and no shard is left."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={RANKS}",
           "save_asv_embeddings.py", *map(str, sasv_args(tiny_corpus, frontends, out))]
    result = subprocess.run(cmd, cwd=ROOT, env=env(), text=True, capture_output=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    caches = sorted(p.name for p in staged.embeddings.glob("asv_*.npz"))
    assert caches == sorted(p.name for p in (out / "embeddings").glob("*.npz"))
    for name in caches:
        same_arrays(staged.embeddings / name, out / "embeddings" / name)
    for split in ("dev", "eval"):
        assert (out / "scores" / f"asv_{split}.txt").read_bytes() == \
            (staged.out / "scores" / f"asv_{split}.txt").read_bytes()
    assert "asv train: 2 ranks: rank 0 computed items 0-16; rank 1 computed items 16-" in result.stderr
    assert result.stderr.count("asv dev: ASV EER") == 1            # the scores are rank 0's
    assert not [p for p in (out / "embeddings").iterdir() if ".shard-" in p.name]
    assert (out / "config.yaml").is_file()


def test_a_failed_rank_stops_both_and_its_partner_s_shard_is_reused(staged, tiny_corpus, frontends, tmp_path):
    """A file that cannot be read in rank 1's slice: both ranks stop (exit 2), rank 0 prints the one line naming it,
    rank 1 prints nothing, rank 0's finished shard stays. With the file back, the next job reuses that shard,
    computes rank 1's slice, ignores a shard of a 3-rank job, and writes the single process's arrays and scores."""
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus")
    db = LADatabase(corpus.la)
    entries = db.cm_entries("dev")
    assert len(entries) > 17, "the tiny corpus's dev list must reach into rank 1's slice (items 16-)"
    bad = db.audio("dev", entries[17].utt)
    good = bad.read_bytes()
    bad.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    out = tmp_path / "run"
    args = sasv_args(corpus, frontends, out, "splits=[dev]")

    rank0, rank1 = launch("save_cm_score.py", args)
    assert rank0.returncode == rank1.returncode == 2, rank0.stderr + rank1.stderr
    assert_one_line_error("\n".join(line for line in rank0.stderr.splitlines() if not line.startswith("[")),
                          str(bad), "cannot read audio")
    assert rank1.stderr.strip() == "", rank1.stderr
    cache = out / "embeddings" / "cm_dev.npz"
    assert shard_files(cache) == [shard_path(cache, 0, 2)] and not cache.exists()

    bad.write_bytes(good)                         # fixed: same content, a new identity (rank 1's slice only)
    shutil.copy(shard_path(cache, 0, 2), shard_path(cache, 0, 3))     # left by a job with another rank count
    rank0, rank1 = launch("save_cm_score.py", args)
    assert rank0.returncode == rank1.returncode == 0, rank0.stderr + rank1.stderr
    assert "rank 0 reused cm_dev.shard-0-of-2.npz (items 0-16); rank 1 computed items 16-20" in rank0.stderr
    assert "1 shard(s) of a job with another number of ranks are not reused (e.g. cm_dev.shard-0-of-3.npz" \
        in rank0.stderr
    assert "Traceback" not in rank1.stderr and "[pipeline]" not in rank1.stderr    # rank 0 speaks for the job
    assert shard_files(cache) == []
    same_arrays(staged.embeddings / "cm_dev.npz", cache, ["ids", "embeddings", "scores", "skipped"])
    for name in ("cm_dev.txt", "cm_trials_dev.txt"):
        assert (out / "scores" / name).read_bytes() == (staged.out / "scores" / name).read_bytes(), name


def test_a_bad_input_stops_both_ranks_with_one_line_from_rank_0(tiny_corpus, frontends, tmp_path):
    """Every rank checks the config and inputs before anything is locked or computed; rank 0 reports, rank 1 is
    silent, both exit 2 at once, and nothing is written."""
    out = tmp_path / "run"
    args = sasv_args(tiny_corpus, frontends, out, f"cm.checkpoint={tmp_path / 'missing.pt'}")
    rank0, rank1 = launch("save_cm_score.py", args)
    assert rank0.returncode == rank1.returncode == 2, rank0.stderr + rank1.stderr
    assert_one_line_error(rank0.stderr, "missing.pt")
    assert rank1.stderr.strip() == "", rank1.stderr
    assert not out.exists()


@pytest.mark.parametrize("failing", [None, "input", "bug"])
def test_settle_alone_is_the_work_itself(failing):
    """Without a process group `settle` is transparent: the value back, or the rank's own error raised as it was."""
    from common.errors import InputError
    from engine.distributed import joined, settle, together

    ctx = joined()
    assert not ctx.distributed and ctx.is_main
    error = {None: None, "input": InputError("x.txt: bad"), "bug": ZeroDivisionError("oops")}[failing]
    if error is None:
        assert settle(ctx, "point", None, 5) == [5]
        assert together(ctx, "point", lambda: 7) == 7
    else:
        with pytest.raises(type(error)) as raised:
            settle(ctx, "point", error)
        assert raised.value is error

        def fail():
            raise error
        with pytest.raises(type(error)):
            together(ctx, "point", fail)


def test_cm_evaluate_mode_under_two_ranks_writes_what_one_process_writes(staged, tiny_corpus, frontends, tmp_path):
    """main.py task cm, mode evaluate (the CM-only evaluation) as two ranks: the cache holds the one-process stage's
    arrays, the score file is the stage's byte for byte, rank 0 alone wrote results.json and printed."""
    from tests.test_cm_evaluate import _args
    out = tmp_path / "eval"
    rank0, rank1 = launch("main.py", _args(tiny_corpus, frontends, out, "eval_splits=[dev, eval]"))
    assert rank0.returncode == rank1.returncode == 0, rank0.stderr + rank1.stderr
    for split in ("dev", "eval"):
        same_arrays(staged.embeddings / f"cm_{split}.npz", out / "embeddings" / f"cm_{split}.npz", ["ids", "scores"])
        assert (out / "scores" / f"cm_{split}.txt").read_bytes() == \
            (staged.out / "scores" / f"cm_{split}.txt").read_bytes()
    assert "rank 1 computed items 16-" in rank0.stderr
    assert "minDCF" in rank0.stdout and rank1.stdout.strip() == "", rank1.stdout
    assert (out / "results.json").is_file() and not [p for p in (out / "embeddings").iterdir() if ".shard-" in p.name]
