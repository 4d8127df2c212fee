"""DDP through torchrun on CPU (gloo): two ranks with half the batch each train like one process."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_worker import ROOT, run

WORKER = Path(__file__).with_name("ddp_worker.py")


def _epoch_log(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_gloo_ranks_match_single_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "ddp"
    run(str(single))
    # the worker also fails when a DDP wrapper outlives fit (engine.distributed.teardown); should a rank still
    # abort, the fault handler prints every thread's Python stack into the failure message
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), str(multi)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun with 2 gloo ranks did not finish within 180 s")
    assert proc.returncode == 0, proc.stderr[-3000:]

    a = torch.load(single / "last.pt", weights_only=True)
    b = torch.load(multi / "last.pt", weights_only=True)
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert a["global_step"] == b["global_step"] == 8  # 64 items / global batch 16 * 2 epochs
    for name, p in a["model"].items():
        torch.testing.assert_close(b["model"][name], p, rtol=0, atol=1e-6, msg=name)
    # per-rank RNG states were gathered: one row per rank
    assert b["rng"]["torch"].shape[0] == 2
    # epoch means are averaged over ranks, and rank 0's dev metric is what both ranks selected on (the starting
    # weights included: select_initial's epoch 0 has no training figures)
    rows_a, rows_b = _epoch_log(single / "epoch_log.csv"), _epoch_log(multi / "epoch_log.csv")
    assert [r["epoch"] for r in rows_b] == ["0", "1", "2"]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("train_loss", "train_mae", "dev_mse", "lr"):
            if ra["epoch"] == "0" and key.startswith("train_"):
                assert ra[key] == rb[key] == "", key
            else:
                assert abs(float(ra[key]) - float(rb[key])) < 1e-6, key
    assert (multi / "best.pt").exists() and (multi / "train_log.csv").exists()
    assert not list(multi.glob(".*.tmp"))


def _one_process_group() -> None:
    import socket

    import torch.distributed as dist
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


@pytest.fixture
def own_group(monkeypatch):
    """A one-process gloo group this test created, as `setup` does under torchrun; the barriers `closing` asks for."""
    import torch.distributed as dist

    from engine import distributed
    _one_process_group()
    waited = []
    monkeypatch.setattr(distributed, "barrier", waited.append)
    yield distributed.DistContext(0, 1, 0, torch.device("cpu"), True), waited
    if dist.is_initialized():
        dist.destroy_process_group()


def test_closing_waits_for_the_other_ranks_only_when_leaving_normally(own_group):
    """gloo: a rank that closed its connections while another still used them aborted it ("terminate called without
    an active exception"), so a rank that finished waits for the others first; one leaving with an error does not
    (they stop at their next collective, or torchrun stops them). The group is destroyed either way."""
    import torch.distributed as dist

    from engine.distributed import closing
    ctx, waited = own_group
    with pytest.raises(ValueError, match="boom"):
        with closing(ctx):
            raise ValueError("boom")
    assert waited == [] and not dist.is_initialized()

    _one_process_group()
    with closing(ctx) as inside:
        assert inside is ctx
    assert waited == [ctx] and not dist.is_initialized()


def test_closing_leaves_a_group_it_did_not_create(own_group):
    import torch.distributed as dist

    from engine.distributed import DistContext, closing
    ctx, waited = own_group
    with closing(DistContext(0, 1, 0, torch.device("cpu"), False)):
        pass
    assert waited == [] and dist.is_initialized()
