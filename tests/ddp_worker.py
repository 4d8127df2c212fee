"""Helper of tests/test_ddp.py: the same tiny regression run, in one process or under torchrun (gloo, CPU).

Run as `python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR`.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from engine import TrainData, fit, is_main_process, seed_everything, train_config  # noqa: E402

CONFIG = {"epochs": 2, "batch_size": 16, "device": "cpu", "log_every_steps": 2, "grad_clip": 5.0,
          "select_metric": "dev_mse", "select_initial": True, "progress": False, "dist_timeout_s": 60.0,
          "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
          "scheduler": {"name": "cosine_warm_restarts", "T_0": 5, "warmup_steps": 1}}


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(64, 6, generator=g)
    y = torch.tanh(x @ torch.randn(6, 2, generator=g)) + 0.05 * torch.randn(64, 2, generator=g)
    return x, y


class RegressionTask:
    def __init__(self) -> None:
        self.x, self.y = data()

    def training_step(self, model, batch):
        x, y = batch
        err = model(x) - y
        return (err ** 2).mean(), {"mae": err.abs().mean()}

    def evaluate(self, model):
        if not is_main_process():
            return {}  # rank 0's metrics are broadcast
        return {"dev_mse": float(((model(self.x) - self.y) ** 2).mean())}


def run(out_dir: str) -> None:
    seed_everything(7)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))
    fit(model, RegressionTask(), TrainData(TensorDataset(*data())), train_config(CONFIG), out_dir)


def wrappers_alive() -> int:
    """DistributedDataParallel wrappers still in memory: each holds the process group it was built on."""
    return sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())


if __name__ == "__main__":
    gc.disable()  # only what fit frees itself is gone afterwards: the check below does not depend on gc timing
    run(sys.argv[1])
    if wrappers_alive():
        sys.exit("a DistributedDataParallel wrapper outlived fit: its gloo group would die at interpreter shutdown")
