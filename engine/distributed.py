"""torchrun / DistributedDataParallel helpers: process group set-up, rank queries, small collectives.

`torchrun --nproc_per_node=N main.py ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; the engine
joins that group through `env://` (nccl on CUDA, gloo on CPU). Without those variables everything runs
in one process and every helper here is a no-op.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from common.config import ConfigError

DEVICES = ("auto", "cpu", "cuda")     # the `device` keys of every config


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    created_group: bool  # True when this context initialised the process group (and so tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """True on rank 0 (or without torch.distributed): the process that writes files and shows progress."""
    return get_rank() == 0


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` = the LOCAL_RANK-th GPU when CUDA is available, else CPU; `cpu`; `cuda`."""
    if name not in DEVICES:
        raise ConfigError(f"device: must be auto, cpu or cuda, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but CUDA is not available (use auto or cpu)")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Joins the torchrun process group when WORLD_SIZE > 1 (or reuses one the caller initialised)."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    created = False
    if dist.is_available() and not dist.is_initialized() and env_world > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://",
                                timeout=datetime.timedelta(seconds=float(timeout_s)))
        created = True
    return DistContext(get_rank(), get_world_size(), local_rank, dev, created)


def teardown(ctx: DistContext) -> None:
    """Destroys the process group if `setup` created it."""
    if ctx.created_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a float64 vector (returned on CPU)."""
    if not ctx.distributed:
        return values.detach().cpu()
    t = values.detach().to(ctx.device, torch.float64).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def check_same_across_ranks(ctx: DistContext, value: int, what: str) -> None:
    """Raises (on every rank) when an integer differs between ranks, e.g. batches per epoch, instead of hanging."""
    if not ctx.distributed:
        return
    t = torch.tensor([value, -value], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    hi, lo = int(t[0]), -int(t[1])
    if hi != lo:
        raise RuntimeError(f"{what} differs between ranks ({lo} .. {hi}); every rank must run the same number "
                           f"of steps, or DDP hangs (use a distributed-aware sampler)")


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's value of a small picklable object (dev metrics) on every rank (in memory only)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


def gather_stack(ctx: DistContext, t: torch.Tensor) -> torch.Tensor:
    """(world_size, *t.shape) stack of every rank's tensor, same shape on each rank (returned on CPU)."""
    if not ctx.distributed:
        return t.unsqueeze(0).cpu()
    src = t.to(ctx.device).contiguous()
    out = [torch.empty_like(src) for _ in range(ctx.world_size)]
    dist.all_gather(out, src)
    return torch.stack([o.cpu() for o in out])
