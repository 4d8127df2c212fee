"""Helper of bench/gpu_check.py: tests/ddp_worker.py's tiny regression run through `engine.fit`, on a chosen device.

    python -m torch.distributed.run --standalone --nproc_per_node=N bench/gpu_ddp_worker.py OUT_DIR cuda|cpu
    python bench/gpu_ddp_worker.py OUT_DIR cuda|cpu          # one process: the reference run

Under torchrun it joins the process group itself (nccl on cuda, gloo on cpu) and checks one all_reduce before
training, so even a one-GPU machine (world size 1, where the engine needs no DDP wrapper) shows that nccl
works; the engine then reuses the group. Writes OUT_DIR/collective.json (backend, world size, all_reduce
result) next to the engine's checkpoints and logs.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from common.io import atomic_write  # noqa: E402
from engine import TrainData, fit, seed_everything, train_config  # noqa: E402
from engine.distributed import DistContext, closing  # noqa: E402
from tests.ddp_worker import CONFIG, RegressionTask, data  # noqa: E402


class DeviceRegressionTask(RegressionTask):
    """tests/ddp_worker.py's task with its dev data moved to the model's device (it keeps them on the CPU)."""

    def evaluate(self, model):
        device = next(model.parameters()).device
        self.x, self.y = self.x.to(device), self.y.to(device)
        return super().evaluate(model)


def check_collective(device: str) -> dict:
    """Joins the torchrun group and sums each rank's (rank + 1) on the device: world * (world + 1) / 2."""
    local_rank = int(os.environ["LOCAL_RANK"])
    dev = torch.device("cuda", local_rank % torch.cuda.device_count()) if device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", timeout=datetime.timedelta(seconds=120))
    value = torch.tensor([float(dist.get_rank() + 1)], device=dev)
    dist.all_reduce(value)
    world = dist.get_world_size()
    return {"backend": dist.get_backend(), "device": str(dev), "world_size": world,
            "all_reduce_sum": float(value.item()), "all_reduce_ok": float(value.item()) == world * (world + 1) / 2}


def main(out_dir: str, device: str) -> None:
    collective = check_collective(device) if "LOCAL_RANK" in os.environ else None
    group = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]),
                        torch.device(collective["device"]), True) if collective is not None else None
    with closing(group) if group is not None else contextlib.nullcontext():
        seed_everything(7)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))
        cfg = train_config({**CONFIG, "device": device})
        fit(model, DeviceRegressionTask(), TrainData(TensorDataset(*data())), cfg, out_dir)
        if collective is not None and dist.get_rank() == 0:
            with atomic_write(Path(out_dir) / "collective.json") as f:
                json.dump(collective, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
