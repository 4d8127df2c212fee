"""The one thin training loop for ASV models, CMs and SASV back-ends (WeSpeaker-style executor).

The engine knows nothing about the task: a `Task` turns a batch into a loss and scores the dev set.
Seeding, optimisers, schedules, AMP, DDP and CSV logs are driven from here, checkpoints and resume live in
`engine.checkpoint`; see docs/training.md.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from common.allocator import freed_memory_retained
from common.config import ConfigError
from common.errors import InputError
from common.io import remove_temporaries
from engine import distributed
from engine.checkpoint import BEST, LAST, restore_last_checkpoint, save_epoch_checkpoints
from engine.csvlog import CsvLog, write_table
from engine.optim import build_optimizer, resolve_param_groups
from engine.precision import resolve_amp
from engine.schedulers import build_scheduler
from engine.schema import check_train_config
from engine.seeding import derive_seed, get_rng_state, seed_everything, set_rng_state, worker_init_fn
from engine.tensorboard import TensorBoardLog

logger = logging.getLogger(__name__)

TRAIN_LOG, EPOCH_LOG = "train_log.csv", "epoch_log.csv"


class Task(Protocol):
    """What a task supplies to `fit`. Everything trainable lives in `model` (wrap a network and its loss head,
    e.g. an AAM-softmax classifier, in one nn.Module) so that it is optimised, synchronised and checkpointed.

    Optional methods, used when present:
    - `param_groups(model) -> list[dict]`: optimizer groups, e.g. `[{"params": front, "lr": 1e-5},
      {"params": back}]`; keys a group leaves out come from the `optimizer` section. Every trainable
      parameter must be in exactly one group.
    - `on_epoch_start(model, epoch: int) -> None`: called before each epoch (0-based), e.g. margin warm-up.
    """

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """Loss (scalar tensor) of one batch (already on the model's device) and extra values to log
        (floats or 0-dim tensors; the same keys at every step and on every rank). Runs under autocast."""
        ...

    def evaluate(self, model: nn.Module) -> Mapping[str, float]:
        """Dev metrics after each evaluated epoch (`eval_every`) and, with `select_initial`, once before the first
        (model in eval mode, under no_grad). Called on every rank; rank 0's result is used everywhere, so other
        ranks may return {} to skip the work. May return {}."""
        ...


@dataclass
class TrainData:
    """A dataset and how to batch it.

    `batch_sampler` is None (the engine uses DistributedSampler + BatchSampler with the config's
    batch_size, shuffle, drop_last and seed), an object yielding lists of indices (with `set_epoch(epoch)`
    and `__len__` when it has them; under DDP it must split batches between ranks itself and say so with a
    `world_size` attribute), or a factory `f(rank=, world_size=, seed=, batch_size=) -> such an object`
    (batch_size there is the per-rank share of the config's global batch_size).
    """

    dataset: Dataset
    collate_fn: Callable | None = None
    batch_sampler: Any = None


@dataclass
class FitResult:
    epochs_completed: int
    global_step: int
    select_metric: str
    best_value: float | None
    best_epoch: int | None          # 1-based, as in epoch_log.csv; 0: the starting weights (select_initial)
    history: list[dict] = field(default_factory=list)  # epoch_log.csv rows
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None


class RunExistsError(InputError):
    """A training folder already holds a run, and neither resuming nor replacing it was asked for."""


def existing_run(out_dir: str | Path) -> Path | None:
    """The checkpoint of a run already in `out_dir` (last.pt, else best.pt), or None."""
    return next((p for p in (Path(out_dir) / LAST, Path(out_dir) / BEST) if p.exists()), None)


def fit(model: nn.Module, task: Task, train_data: TrainData, cfg: Mapping, out_dir: str | Path,
        resume: bool = False, replace: bool = False) -> FitResult:
    """Trains `model` in place for `cfg["epochs"]` epochs, writing checkpoints and logs to `out_dir`.

    `cfg` is the training section (`engine.TRAIN_SCHEMA`). `resume=True` continues from `out_dir/last.pt`
    (model, optimizer, schedule, scaler, RNG, epoch, best metric, CSV rows), or starts afresh when there is
    none. `resume=False` starts afresh; a run already in `out_dir` is an error (RunExistsError) unless
    `replace=True`, which discards it (for callers that know it is obsolete, e.g. a cache whose inputs
    changed). Under torchrun every rank calls `fit`.
    """
    check_train_config(cfg)
    previous = existing_run(out_dir)
    if previous is not None and not resume and not replace:
        raise RunExistsError(f"{previous}: a training run is already in {out_dir}; resume it, or move it away first "
                             f"(main.py: --resume or --overwrite)")
    for name in ("training_step", "evaluate"):
        if not callable(getattr(task, name, None)):
            raise TypeError(f"task {type(task).__name__} has no {name}() method (see engine.Task)")
    with distributed.closing(distributed.setup(cfg["device"], cfg["dist_timeout_s"])) as ctx:
        return _Trainer(model, task, train_data, cfg, Path(out_dir), ctx).run(resume)


class _StepModule(nn.Module):
    """Runs the task's training step inside one forward, so DDP sees any use of the model's submodules."""

    def __init__(self, model: nn.Module, task: Task):
        super().__init__()
        self.model = model
        self.__dict__["task"] = task  # not registered: the task's own parameters (if any) are not trained

    def forward(self, batch: Any):
        return self.task.training_step(self.model, batch)


class _Mean:
    """Running sums of the loss and logged values, kept on device until read (no sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(self.sums[k]) / self.counts[k] for k in self.sums}

    def totals(self) -> list[float]:
        return [x for k in sorted(self.sums) for x in (float(self.sums[k]), float(self.counts[k]))]


class _Trainer:
    def __init__(self, model: nn.Module, task: Task, data: TrainData, cfg: Mapping, out_dir: Path,
                 ctx: distributed.DistContext):
        self.task, self.cfg, self.out, self.ctx = task, cfg, out_dir, ctx
        self.device = ctx.device
        self.amp_dtype = resolve_amp(cfg["amp"], self.device)
        model.to(self.device)
        if ctx.distributed and cfg["sync_bn"]:
            if self.device.type != "cuda":
                raise ValueError("sync_bn: SyncBatchNorm needs CUDA devices; set sync_bn: false for CPU runs")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.optimizer = build_optimizer(resolve_param_groups(model, task), cfg["optimizer"])
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.epoch_target, self.loader_gen, self.loader = self._make_loader(data)
        self._set_epoch(0)
        self.scheduler = build_scheduler(self.optimizer, cfg["scheduler"], _len_or_none(self.loader))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        step = _StepModule(model, task)
        if ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(step, device_ids=ids,
                                                   find_unused_parameters=cfg["find_unused_parameters"])
        else:
            self.forward = step
        self.epoch, self.global_step = 0, 0
        self.best: dict = {"metric": cfg["select_metric"], "mode": cfg["select_mode"], "value": None, "epoch": None}
        self.history: list[dict] = []
        self.train_log: CsvLog | None = None
        self.tensorboard: TensorBoardLog | None = None

    # ---- data ----
    def _make_loader(self, data: TrainData):
        cfg, ctx = self.cfg, self.ctx
        bs = data.batch_sampler
        if bs is None:
            if cfg["batch_size"] % ctx.world_size:
                raise ConfigError(f"training config: 'batch_size' {cfg['batch_size']} is not divisible by the "
                                  f"{ctx.world_size} ranks (it is the global batch)")
            sampler = DistributedSampler(data.dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                         shuffle=cfg["shuffle"], seed=cfg["seed"], drop_last=cfg["drop_last"])
            bs = BatchSampler(sampler, cfg["batch_size"] // ctx.world_size, drop_last=cfg["drop_last"])
            target: Any = sampler
        else:
            if callable(bs) and (isinstance(bs, type) or not hasattr(bs, "__iter__")):
                bs = bs(rank=ctx.rank, world_size=ctx.world_size, seed=cfg["seed"],
                        batch_size=max(1, cfg["batch_size"] // ctx.world_size))
            if ctx.distributed and getattr(bs, "world_size", None) != ctx.world_size:
                raise ValueError(f"TrainData.batch_sampler: running on {ctx.world_size} ranks but the batch sampler "
                                 f"has world_size={getattr(bs, 'world_size', None)}; "
                                 "it must split batches between ranks")
            target = bs
        gen = torch.Generator()
        loader = DataLoader(data.dataset, batch_sampler=bs, num_workers=cfg["num_workers"],
                            collate_fn=data.collate_fn, pin_memory=self.device.type == "cuda",
                            worker_init_fn=worker_init_fn if cfg["num_workers"] > 0 else None, generator=gen)
        return target, gen, loader

    def _set_epoch(self, epoch: int) -> None:
        if hasattr(self.epoch_target, "set_epoch"):
            self.epoch_target.set_epoch(epoch)
        # worker seeds depend on (seed, epoch, rank) only, so a resumed epoch loads the same data
        self.loader_gen.manual_seed(derive_seed(self.cfg["seed"], epoch, self.ctx.rank, 1))

    # ---- the run ----
    def run(self, resume: bool) -> FitResult:
        cfg, ctx = self.cfg, self.ctx
        last, best = self.out / LAST, self.out / BEST
        keep_rows: int | None = None
        if resume and last.is_file():
            resumed = restore_last_checkpoint(last, self.model, self.optimizer, self.scheduler, self.scaler, cfg, ctx)
            self.epoch, self.global_step, self.best, self.history = (resumed.epoch, resumed.global_step,
                                                                     resumed.best, resumed.history)
            keep_rows = int(resumed.csv_rows[TRAIN_LOG])
        else:
            if resume and ctx.is_main:
                logger.info(f"no checkpoint at {last}; starting from scratch")
            seed_everything(derive_seed(cfg["seed"], ctx.rank))
            if ctx.is_main:
                for path in (last, best, self.out / EPOCH_LOG):
                    path.unlink(missing_ok=True)
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            # a SIGKILL during a checkpoint or log write leaves a temporary that nothing else would remove
            remove_temporaries(self.out, (LAST, BEST, TRAIN_LOG, EPOCH_LOG))
            self.train_log = CsvLog(self.out / TRAIN_LOG, keep_rows)
            if cfg["tensorboard"]:
                self.tensorboard = TensorBoardLog(self.out, self.global_step if keep_rows is not None else None)
        if cfg["select_initial"] and self.epoch == 0 and not self.history:
            self._evaluate_start()
        saved_rows, saved_history = keep_rows or 0, list(self.history)
        try:
            while self.epoch < cfg["epochs"]:
                self._run_epoch()
                saved_rows, saved_history = (self.train_log.n_rows if self.train_log else 0), list(self.history)
        except BaseException:
            if self.train_log is not None:  # leave the logs exactly as the last checkpoint knows them
                self.train_log.rows = self.train_log.rows[:saved_rows]
                self.train_log.rollback()
                write_table(self.out / EPOCH_LOG, saved_history)
            raise
        finally:
            if self.train_log is not None:
                self.train_log.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        distributed.barrier(ctx)
        return FitResult(self.epoch, self.global_step, self.best["metric"], self.best["value"], self.best["epoch"],
                         list(self.history), last if last.exists() else None, best if best.exists() else None)

    def _precise_bn(self) -> None:
        """Recomputes BatchNorm statistics with the epoch's final weights ("precise BN").

        Running averages lag the weights when an epoch has few steps at a high learning rate (short CPU runs),
        and evaluation then sees stale statistics. This re-estimates them as a plain average over the first
        `precise_bn_batches` training batches (no gradient, averaged over ranks)."""
        n = self.cfg["precise_bn_batches"]
        bns = [m for m in self.model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if n <= 0 or not bns:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.train()
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with torch.no_grad(), autocast:
            for i, batch in enumerate(self.loader):
                if i >= n:
                    break
                self.task.training_step(self.model, _to_device(batch, self.device))
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
            if self.ctx.world_size > 1:
                for buf in (m.running_mean, m.running_var):
                    buf.copy_(distributed.all_reduce_sum(self.ctx, buf.detach().clone()) / self.ctx.world_size)

    def _evaluate(self, precise_bn: bool = True) -> dict[str, float]:
        """Precise BN, then the task's metrics, with every random generator restored afterwards: evaluation
        draws random numbers (a DataLoader seeds its workers from the global generator), and training must
        not depend on when or how often it is evaluated (`eval_every`, `select_initial`), nor a resumed run on it."""
        rng = get_rng_state(self.device)
        if precise_bn:
            self._precise_bn()
        self.model.eval()
        with torch.no_grad():
            metrics = dict(self.task.evaluate(self.model) or {})
        self.model.train()
        set_rng_state(rng, self.device)
        return distributed.broadcast_object(self.ctx, {str(k): float(v) for k, v in metrics.items()})

    def _evaluate_start(self) -> None:
        """`select_initial`: the starting weights are evaluated as epoch 0 and compete for best.pt, so that a run
        fine-tuning trained weights (a joint run from a frozen back-end, an adaptation) that only makes dev worse
        ends where it started instead of at its least bad epoch. Without precise BN: the weights have not moved, and
        their own statistics are part of what is compared. Training is unchanged (`_evaluate` restores the RNGs)."""
        metrics = self._evaluate(precise_bn=False)
        record: dict = {"epoch": 0, "step": 0, **_lr_columns(self.scheduler.lrs()), **metrics}
        self.history.append(record)
        self._save(record, self._select(record))
        if self.ctx.is_main:
            logger.info("epoch 0 (the starting weights)" + "".join(f" {k} {v:.4g}" for k, v in metrics.items())
                        + f" | best {self.best['metric']} {_fmt(self.best['value'])} @ epoch {self.best['epoch']}")

    def _run_epoch(self) -> None:
        cfg, ctx, epoch = self.cfg, self.ctx, self.epoch
        t0 = time.time()
        self._set_epoch(epoch)
        n_steps = _len_or_none(self.loader)
        if n_steps is not None:
            distributed.check_same_across_ranks(ctx, n_steps, "batches per epoch")
            if n_steps == 0:
                raise ValueError(f"the training data gives no batch (dataset of {len(self.loader.dataset)} items, "
                                 f"global batch_size {cfg['batch_size']}, drop_last {cfg['drop_last']})")
        hook = getattr(self.task, "on_epoch_start", None)
        if hook is not None:
            hook(self.model, epoch)
        self.model.train()
        window, totals = _Mean(), _Mean()
        bar = tqdm(self.loader, total=n_steps, desc=f"epoch {epoch + 1}/{cfg['epochs']}", leave=False,
                   dynamic_ncols=True, file=sys.stderr, disable=True if not (ctx.is_main and cfg["progress"]) else None)
        # the steps reuse freed feature maps instead of page-faulting new ones; evaluation and selection keep the
        # ordinary heap (common/allocator.py: a retained heap also keeps their freed trial tables)
        with freed_memory_retained():
            for i, batch in enumerate(bar):
                values = self._train_step(_to_device(batch, self.device))
                window.add(values)
                totals.add(values)
                if (i + 1) % cfg["log_every_steps"] == 0:
                    self._log_window(window, bar)
                    window = _Mean()
        if window.sums:
            self._log_window(window, bar)
        bar.close()

        keys = sorted(totals.sums)
        summed = distributed.all_reduce_sum(ctx, torch.tensor(totals.totals(), dtype=torch.float64)).tolist()
        train = {k: summed[2 * j] / summed[2 * j + 1] for j, k in enumerate(keys)}
        if not math.isfinite(train["loss"]):
            raise FloatingPointError(f"training loss is {train['loss']} in epoch {epoch + 1} "
                                     f"(step {self.global_step}); lower the lr or enable grad_clip")
        evaluated = (epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == cfg["epochs"]
        metrics = self._evaluate() if evaluated else {}

        lrs = self.scheduler.lrs()
        record: dict = {"epoch": epoch + 1, "step": self.global_step, **_lr_columns(lrs)}
        record.update({f"train_{k}": v for k, v in train.items()})
        record.update(metrics)
        improved = self._select(record) if evaluated else False   # only evaluated epochs are candidates
        self.history.append(record)
        self.epoch = epoch + 1
        self._save(record, improved)
        if ctx.is_main:
            extra = "".join(f" {k} {v:.4g}" for k, v in metrics.items()) if evaluated else " (not evaluated)"
            logger.info(f"epoch {epoch + 1}/{cfg['epochs']} step {self.global_step} lr {lrs[0]:.3g} "
                 f"train_loss {train['loss']:.4g}{extra} | best {self.best['metric']} "
                 f"{_fmt(self.best['value'])} @ epoch {self.best['epoch']} | {time.time() - t0:.1f} s")

    def _train_step(self, batch: Any) -> dict:
        self.scheduler.update(self.epoch, self.global_step)
        self.optimizer.zero_grad(set_to_none=True)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            out = self.forward(batch)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.Tensor)
                and out[0].dim() == 0 and isinstance(out[1], Mapping)):
            raise TypeError("task.training_step must return (loss: 0-dim tensor, logs: dict of floats)")
        loss, logs = out
        if "loss" in logs or "grad_norm" in logs:
            raise ValueError("task.training_step logs: 'loss' and 'grad_norm' are reserved names")
        self.scaler.scale(loss).backward()
        values = {"loss": loss, **logs}
        if self.cfg["grad_clip"] > 0:
            self.scaler.unscale_(self.optimizer)
            values["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, self.cfg["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        return values

    def _log_window(self, window: _Mean, bar: tqdm) -> None:
        means = window.means()
        if self.train_log is not None:
            row = {"epoch": self.epoch + 1, "step": self.global_step, **_lr_columns(self.scheduler.lrs())}
            row.update(means)
            self.train_log.append(row)
            if self.tensorboard is not None:
                self.tensorboard.scalars("train", row, self.global_step)
        bar.set_postfix(loss=f"{means['loss']:.4g}", refresh=False)

    def _select(self, record: Mapping) -> bool:
        name = self.best["metric"]
        if name not in record:
            raise ValueError(f"select_metric {name!r} is not in the epoch record (columns: {', '.join(record)}); "
                             f"set the training config's select_metric to one of them")
        value, old = float(record[name]), self.best["value"]
        better = old is None or (value < old if self.best["mode"] == "min" else value > old)
        if math.isfinite(value) and better:
            self.best.update(value=value, epoch=int(record["epoch"]))
            return True
        return False

    def _save(self, record: Mapping, improved: bool) -> None:
        """The logs as this epoch leaves them, then the checkpoints that account for them. Every rank calls it:
        the RNG states of all ranks are gathered (a collective); rank 0 writes."""
        rng = {k: distributed.gather_stack(self.ctx, v) for k, v in get_rng_state(self.device).items()}
        if not self.ctx.is_main:
            return
        assert self.train_log is not None
        self.train_log.commit()
        write_table(self.out / EPOCH_LOG, self.history)
        if self.tensorboard is not None:
            self.tensorboard.scalars("epoch", record, int(record["step"]))
            self.tensorboard.flush()
        save_epoch_checkpoints(self.out, self.model, self.optimizer, self.scheduler, self.scaler,
                               epoch=self.epoch, global_step=self.global_step, best=self.best, history=self.history,
                               record=record, improved=improved, rng=rng,
                               csv_rows={TRAIN_LOG: self.train_log.n_rows}, world_size=self.ctx.world_size,
                               config=self.cfg)


def _lr_columns(lrs: list[float]) -> dict[str, float]:
    cols = {"lr": lrs[0]}
    cols.update({f"lr_{i}": lr for i, lr in enumerate(lrs[1:], start=1)})
    return cols


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _len_or_none(loader: DataLoader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
