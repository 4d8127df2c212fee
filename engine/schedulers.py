"""Learning-rate schedules as pure functions of a counter, so resuming needs nothing but that counter.

The counter `t` is the optimizer step (0-based, the step about to be taken) for `interval: step`, or the
epoch (0-based) for `interval: epoch`. Every parameter group keeps its own base lr (`initial_lr`) and the
schedule scales each group the same way, so separate learning rates per group stay in proportion.

Schedules (`base` = a group's base lr, `W` = warm-up length, all lengths in `interval` units):
- `none`:                 base
- `exponential`:          base * gamma ** t
- `step`:                 base * gamma ** (t // step_size)
- `keras_decay`:          base / (1 + decay * t)                      (clovaai/aasist `keras_decay`)
- `cosine_warm_restarts`: SGDR with a linear warm-up at the start of every cycle (SASV2 stage-3 recipe,
  katsura-jp CosineAnnealingWarmupRestarts): cycle i lasts L_i = W + round((T_0 - W) * T_mult ** i), its
  peak is base * gamma ** i; at position p in the cycle
      p <  W: lr = eta + (peak - eta) * (p + 1) / (W + 1)
      p >= W: lr = eta + (peak - eta) * (1 + cos(pi * (p - W) / (L_i - W))) / 2
  with eta = min(eta_min, base). With W = 0 and gamma = 1 this is torch's CosineAnnealingWarmRestarts.
For the other schedules a warm-up W > 0 ramps lr = base * (t + 1) / (W + 1) for t < W, then follows the
schedule from its start: lr(t) = schedule(t - W).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from common.config import ConfigError

SCHEDULERS = ("none", "cosine_warm_restarts", "exponential", "step", "keras_decay")
DEFAULT_INTERVAL = {"none": "epoch", "cosine_warm_restarts": "step", "exponential": "epoch",
                    "step": "epoch", "keras_decay": "step"}
DEFAULT_GAMMA = {"cosine_warm_restarts": 1.0, "step": 0.1}


class LRSchedule:
    """Sets every group's lr from (epoch, step). `update` is called before each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, name: str = "none", interval: str = "epoch",
                 warmup: int = 0, T_0: int = 10, T_mult: float = 1.0, eta_min: float = 0.0,
                 gamma: float = 1.0, step_size: int = 10, decay: float = 0.0):
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler.name: unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)}")
        if interval not in ("step", "epoch"):
            raise ValueError(f"scheduler.interval: must be step or epoch, got {interval!r}")
        if warmup < 0:
            raise ValueError(f"scheduler warm-up must be >= 0, got {warmup}")
        if name == "cosine_warm_restarts":
            if T_0 <= warmup:
                raise ValueError(f"scheduler.T_0 ({T_0}) must exceed the warm-up ({warmup} {interval}s)")
            if T_mult < 1:
                raise ValueError(f"scheduler.T_mult must be >= 1, got {T_mult}")
        if name == "step" and step_size < 1:
            raise ValueError(f"scheduler.step_size must be >= 1, got {step_size}")
        if name == "keras_decay" and decay < 0:
            raise ValueError(f"scheduler.decay must be >= 0, got {decay}")
        self.optimizer = optimizer
        self.name, self.interval, self.warmup = name, interval, int(warmup)
        self.T_0, self.T_mult, self.eta_min = int(T_0), float(T_mult), float(eta_min)
        self.gamma, self.step_size, self.decay = float(gamma), int(step_size), float(decay)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.t = -1

    def lr_at(self, base: float, t: int) -> float:
        """The lr of a group with base lr `base` at counter `t`."""
        W = self.warmup
        if self.name == "cosine_warm_restarts":
            cycle, p, length = self._cycle_position(t)
            peak = base * self.gamma ** cycle
            eta = min(self.eta_min, base)
            if p < W:
                return eta + (peak - eta) * (p + 1) / (W + 1)
            return eta + (peak - eta) * (1 + math.cos(math.pi * (p - W) / (length - W))) / 2
        if t < W:
            return base * (t + 1) / (W + 1)
        t -= W
        if self.name == "exponential":
            return base * self.gamma ** t
        if self.name == "step":
            return base * self.gamma ** (t // self.step_size)
        if self.name == "keras_decay":
            return base / (1.0 + self.decay * t)
        return base

    def _cycle_position(self, t: int) -> tuple[int, int, int]:
        W, cos_len = self.warmup, self.T_0 - self.warmup
        if self.T_mult == 1.0:
            return t // self.T_0, t % self.T_0, self.T_0
        cycle = 0
        while True:
            length = W + round(cos_len * self.T_mult ** cycle)
            if t < length:
                return cycle, t, length
            t -= length
            cycle += 1

    def update(self, epoch: int, step: int) -> None:
        """Applies the lr for the coming optimizer step (`step` = optimizer steps taken so far)."""
        t = step if self.interval == "step" else epoch
        if t == self.t:
            return
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.lr_at(base, t)
        self.t = t

    def lrs(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"name": self.name, "interval": self.interval, "base_lrs": list(self.base_lrs), "t": self.t}

    def load_state_dict(self, state: Mapping) -> None:
        if state["name"] != self.name or len(state["base_lrs"]) != len(self.base_lrs):
            raise ValueError(f"checkpoint scheduler {state['name']!r} with {len(state['base_lrs'])} groups does not "
                             f"match {self.name!r} with {len(self.base_lrs)} groups")
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["initial_lr"] = base
        self.t = -1  # the next update re-applies the lr of the current counter


def check_scheduler_config(cfg: Mapping) -> None:
    """The `scheduler` section's settings that depend on each other (one line naming the key), checked before
    anything is computed (`engine.check_train_config`) and again when a schedule is built."""
    name = cfg["name"]
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler.name: unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)}")
    interval = DEFAULT_INTERVAL[name] if cfg["interval"] == "auto" else cfg["interval"]
    if interval not in ("step", "epoch"):
        raise ConfigError(f"scheduler.interval: must be auto, step or epoch, got {cfg['interval']!r}")
    if interval == "epoch" and cfg["warmup_steps"]:
        raise ConfigError("scheduler.warmup_steps needs interval: step (this schedule steps per epoch); "
                          "use scheduler.warmup_epochs")
    if cfg["gamma"] is None and name == "exponential":
        raise ConfigError("scheduler.gamma: the exponential scheduler needs gamma (lr factor per interval)")
    if cfg["decay"] is None and name == "keras_decay":
        raise ConfigError("scheduler.decay: keras_decay needs decay (lr = lr0 / (1 + decay * step))")
    warmup = int(cfg["warmup_steps"]) if interval == "step" else int(cfg["warmup_epochs"])   # at least
    if name == "cosine_warm_restarts" and cfg["T_0"] <= warmup:
        raise ConfigError(f"scheduler.T_0 ({cfg['T_0']}) must exceed the warm-up ({warmup} {interval}s)")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping, steps_per_epoch: int | None) -> LRSchedule:
    """Builds the schedule of the `scheduler` config section (see docs/training.md)."""
    check_scheduler_config(cfg)
    name = cfg["name"]
    interval = DEFAULT_INTERVAL[name] if cfg["interval"] == "auto" else cfg["interval"]
    warmup_steps, warmup_epochs = int(cfg["warmup_steps"]), int(cfg["warmup_epochs"])
    if interval == "epoch":
        warmup = warmup_epochs
    else:
        if warmup_epochs and steps_per_epoch is None:
            raise ValueError("scheduler.warmup_epochs with interval: step needs a batch sampler with __len__")
        warmup = warmup_steps + warmup_epochs * (steps_per_epoch or 0)
    gamma = cfg["gamma"] if cfg["gamma"] is not None else DEFAULT_GAMMA.get(name)
    decay = cfg["decay"]
    return LRSchedule(optimizer, name, interval, warmup, T_0=cfg["T_0"], T_mult=cfg["T_mult"],
                      eta_min=cfg["eta_min"], gamma=1.0 if gamma is None else float(gamma),
                      step_size=cfg["step_size"], decay=0.0 if decay is None else float(decay))
