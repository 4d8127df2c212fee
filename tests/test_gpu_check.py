"""bench/gpu_check.py on the CPU: every part's code path (engine AMP steps, torchrun + DDP with gloo, joint SASV
mode, front-end throughput) runs with tiny sizes, so the script is known to work before a GPU ever runs it."""
from __future__ import annotations

import json
import math

import pytest
import torch

from bench import gpu_check


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("gpu_check") / "rows.json"
    rc = gpu_check.main(["--device", "cpu", "--time-limit", "300", "--json", str(out)])
    return rc, json.loads(out.read_text())


def _rows(rows: list[dict], part: str) -> list[dict]:
    return [r for r in rows if r["part"] == part]


def test_every_part_runs_on_cpu(dry_run, capsys):
    rc, rows = dry_run
    failed = [r for r in rows[1:] if not r["ok"]]
    assert rc == 0 and not failed, failed
    assert rows[0]["part"] == "env" and rows[0]["device"] == "cpu"
    assert [(r["model"], r["amp"]) for r in _rows(rows, "amp")] == [
        ("AASIST", "bf16"), ("AASIST", "off"), ("ECAPA-TDNN", "bf16"), ("ECAPA-TDNN", "off")]
    assert [r["model"] for r in _rows(rows, "throughput")] == list(gpu_check.FRONTENDS)
    assert len(_rows(rows, "ddp")) == len(_rows(rows, "joint")) == 1


def test_amp_steps_report_finite_losses_and_step_times(dry_run):
    for r in _rows(dry_run[1], "amp"):
        assert r["steps"] == gpu_check.CPU_DRY_PLAN.train_steps
        assert math.isfinite(r["loss_first"]) and math.isfinite(r["loss_last"])
        assert r["step_s_median"] > 0
        assert r["grad_scaler_scale"] is None  # no fp16 on the CPU, so the engine's scaler stays off


def test_ddp_two_gloo_ranks_match_one_process(dry_run):
    (r,) = _rows(dry_run[1], "ddp")
    assert (r["processes"], r["backend"], r["world_size"], r["engine_world_size"]) == (2, "gloo", 2, 2)
    assert r["all_reduce_sum"] == 3.0 and r["steps"] == 8
    assert r["max_abs_weight_diff_vs_single"] < 1e-6


def test_joint_mode_and_throughput_figures(dry_run):
    (joint,) = _rows(dry_run[1], "joint")
    assert math.isfinite(joint["train_loss"]) and set(joint["sasv_eer_untrained"]) == {"dev", "eval"}
    for r in _rows(dry_run[1], "throughput"):
        assert r["fp32_seg_per_s"] > 0 and r["bf16_seg_per_s"] > 0
        assert 0 < r["bf16_rel_diff"] < 0.1  # bf16 is close to fp32, and not the same computation


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no GPU is available" in out[0]


def test_a_failing_or_late_check_does_not_stop_the_others(monkeypatch, capsys):
    def broken(arch, plan):
        if arch == "AASIST":
            raise RuntimeError("CUDA error: an illegal memory access\nsecond line")
        return {"ok": True}

    monkeypatch.setattr(gpu_check, "throughput", broken)
    rows = gpu_check.run(gpu_check.CPU_DRY_PLAN, ["throughput"], 60, lambda row: None)
    assert rows[1] == {"part": "throughput", "model": "AASIST", "ok": False, "check_s": rows[1]["check_s"],
                       "error": "RuntimeError: CUDA error: an illegal memory access"}
    assert all(r["ok"] for r in rows[2:]) and len(rows) == 1 + len(gpu_check.FRONTENDS)

    def slow(arch, plan):
        import time
        time.sleep(5)
        return {"ok": True}

    monkeypatch.setattr(gpu_check, "throughput", slow)
    rows = gpu_check.run(gpu_check.CPU_DRY_PLAN, ["throughput"], 1.5, lambda row: None)
    assert rows[1]["error"].startswith("PartTimeout: stopped by --time-limit")
    assert all("time limit reached" in r["skipped"] for r in rows[2:])
    assert "0 of 6 checks ok" in gpu_check.summary(rows)
