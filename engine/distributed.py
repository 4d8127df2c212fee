"""torchrun / DistributedDataParallel helpers: process group set-up, rank queries, small collectives.

`torchrun --nproc_per_node=N main.py ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; the engine
joins that group through `env://` (nccl on CUDA, gloo on CPU). Without those variables everything runs
in one process and every helper here is a no-op.

`settle` is the one way ranks meet outside training's collectives (the sharded stages): every rank brings its
own outcome, so a rank that failed stops the others at their next meeting instead of leaving them waiting, and
the job reports one line, from rank 0.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from common.cli import one_line, storage_message
from common.config import ConfigError
from common.errors import InputError

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


def env_local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK; 0 alone): which GPU it takes."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def setup(device: str = "auto", timeout_s: float = 1800.0, backend: str | None = None) -> DistContext:
    """Joins the torchrun process group when WORLD_SIZE > 1 (or reuses one the caller initialised).

    `backend`: None = nccl on CUDA, gloo on CPU (training: gradients cross on the device); "gloo" for a group
    that only carries small messages between the ranks whatever their device (the sharded stages)."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device, env_local_rank())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    created = False
    if dist.is_available() and not dist.is_initialized() and env_world > 1:
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, init_method="env://",
                                timeout=datetime.timedelta(seconds=float(timeout_s)))
        created = True
    return DistContext(get_rank(), get_world_size(), env_local_rank(), dev, created)


def joined() -> DistContext:
    """The group this process is in now (set up by its entry point), or a single process when there is none:
    library code that works alone or sharded (pipeline/stages/sharding.py) asks here instead of reading the
    environment, so a process that was never joined to a group never waits for others."""
    device = torch.device("cpu")
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    return DistContext(get_rank(), get_world_size(), env_local_rank(), device, False)


def teardown(ctx: DistContext) -> None:
    """Destroys the process group if `setup` created it.

    Garbage is collected first. A DistributedDataParallel wrapper holds the group, and it can outlive its
    trainer in a reference cycle (a frame kept by a lazy import inside the trainer holds the trainer); the
    group then died whenever the collector next ran, possibly during interpreter shutdown, where a gloo worker
    thread that needs the interpreter aborts the process ("terminate called without an active exception")."""
    if ctx.created_group and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


@contextlib.contextmanager
def closing(ctx: DistContext) -> Iterator[DistContext]:
    """`ctx` for the scope, its process group destroyed (`teardown`) when the scope ends. A rank that leaves the scope
    normally first waits for the others (a barrier), so no rank closes its connections while another still uses
    them. A rank leaving with an error does not wait: the others stop at their next collective, or torchrun stops
    them."""
    try:
        yield ctx
    except BaseException:
        teardown(ctx)
        raise
    if ctx.created_group and dist.is_initialized():
        barrier(ctx)
    teardown(ctx)


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


# ---------------------------------------------------------------------------------------------
# Meeting points that carry failures (the sharded stages)
# ---------------------------------------------------------------------------------------------
T = TypeVar("T")
# Exit codes of the entry points (common.cli.run_main), which a rank that stops for another rank's failure uses
EXIT_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130


class RankLostError(InputError):
    """A rank left the job without reaching a meeting point (killed, out of memory): the others cannot go on."""


class OtherRankBug(RuntimeError):
    """Rank 0's report of a bug (an unexpected exception) on another rank, whose own output has the traceback."""


def _outcome(error: BaseException | None) -> tuple[str, str] | None:
    """(kind, one-line message) of a rank's failure, as the entry points would report it; None: no failure."""
    if error is None:
        return None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "interrupted"
    if isinstance(error, InputError):
        return "input", one_line(error)
    storage = storage_message(error) if isinstance(error, Exception) else None
    if storage is not None:
        return "input", storage
    if isinstance(error, SystemExit):
        return "exit", f"exit code {error.code}"
    return "bug", f"{type(error).__name__}: {one_line(error)}"


def settle(ctx: DistContext, tag: str, error: BaseException | None = None, value: Any = None) -> list[Any]:
    """A meeting point of every rank: each brings its error (None: it did its part) and a small `value` (in memory,
    never on disk); returns every rank's value, by rank, when no rank failed. Alone: raises `error`, else
    returns [value].

    When any rank failed, every rank stops here: rank 0 with the first failure's one line (its own error
    re-raised, or another rank's bad-input message as an InputError, an interruption as KeyboardInterrupt, a
    bug as OtherRankBug), the other ranks quietly with the matching exit code (SystemExit), except that a rank
    whose own failure is a bug re-raises it, keeping its traceback. So a bad input is one line from rank 0
    however many ranks saw it, and a rank that fails does not leave the others waiting at their next meeting.
    A rank that vanished (killed) makes the collective fail: RankLostError, one line on every survivor.
    Every rank must reach the same meetings in the same order (`tag` names each; a mismatch is a bug)."""
    if not ctx.distributed or isinstance(error, RankLostError):   # alone, or the group is broken: no one to meet
        if error is not None:
            raise error
        return [value]
    mine = (tag, _outcome(error), value if error is None else None)
    gathered: list[Any] = [None] * ctx.world_size
    try:
        dist.all_gather_object(gathered, mine)
    except RuntimeError as e:   # gloo/nccl: a peer closed its connection, or the group timed out
        timed_out = any(word in str(e).lower() for word in ("timed out", "timeout"))
        how = "did not answer in time" if timed_out else "stopped without reporting (killed, or out of memory?)"
        raise RankLostError(f"rank {ctx.rank} of {ctx.world_size}: another rank {how} before '{tag}'; what the ranks "
                            f"finished is kept: run the job again") from None
    failures = [(rank, outcome) for rank, (_, outcome, _) in enumerate(gathered) if outcome is not None]
    if not failures:
        tags = {t for t, _, _ in gathered}
        if len(tags) > 1:
            raise RuntimeError(f"ranks met at different points ({', '.join(sorted(tags))}): every rank must reach "
                               f"the same meetings in the same order")
        return [v for _, _, v in gathered]
    rank, (kind, message) = failures[0]
    if error is not None and (ctx.is_main or _outcome(error)[0] == "bug"):
        raise error
    if not ctx.is_main:
        raise SystemExit({"input": EXIT_INPUT, "interrupted": EXIT_INTERRUPTED}.get(kind, EXIT_BUG))
    if kind == "input":
        raise InputError(message)
    if kind == "interrupted":
        raise KeyboardInterrupt
    raise OtherRankBug(f"rank {rank} of {ctx.world_size} failed ({message}); its traceback is in its output")


def together(ctx: DistContext, tag: str, work: Callable[[], T]) -> T:
    """`work()` on every rank, then `settle`: its result when every rank's work succeeded (see settle)."""
    result, error = None, None
    try:
        result = work()
    except BaseException as e:  # noqa: BLE001 - every failure is carried to the other ranks, then re-raised
        error = e
    settle(ctx, tag, error)
    return result
