"""The training config section: a schema of defaults for `common.config.load_config`, and value checks.

Every key is documented in docs/training.md. Recipes embed it, e.g. `{"train": TRAIN_SCHEMA, ...}`.
"""
from __future__ import annotations

from typing import Mapping

from common.config import ConfigError, as_overrides, dotted_value, load_config
from engine.optim import OPTIMIZERS
from engine.schedulers import SCHEDULERS

TRAIN_SCHEMA: dict = {
    "seed": 0,
    "epochs": 10,
    "batch_size": 32,            # global batch: each of N ranks gets batch_size / N
    "num_workers": 0,
    "shuffle": True,
    "drop_last": True,
    "device": "auto",            # auto | cpu | cuda
    "grad_clip": 0.0,            # max global grad norm; 0 = off
    "precise_bn_batches": 0,     # before each evaluation, recompute BatchNorm statistics over this many batches
    "eval_every": 1,             # evaluate (and select best.pt) every N epochs and after the last one
    "select_initial": False,     # also evaluate the starting weights (epoch 0) as a candidate for best.pt
    "amp": "auto",               # auto | off | bf16 | fp16
    "sync_bn": False,
    "find_unused_parameters": False,
    "select_metric": "train_loss",
    "select_mode": "min",        # min | max
    "log_every_steps": 50,
    "progress": True,
    "dist_timeout_s": 1800.0,
    "optimizer": {
        "name": "adam",          # adam | adamw | sgd
        "lr": 1e-3,
        "weight_decay": 0.0,
        "momentum": 0.9,         # sgd
        "nesterov": False,       # sgd
        "betas": [0.9, 0.999],   # adam, adamw
        "eps": 1e-8,             # adam, adamw
        "amsgrad": False,        # adam, adamw
    },
    "scheduler": {
        "name": "none",          # none | cosine_warm_restarts | exponential | step | keras_decay
        "interval": "auto",      # auto | step | epoch
        "warmup_steps": 0,
        "warmup_epochs": 0,
        "T_0": 10,
        "T_mult": 1.0,
        "eta_min": 0.0,
        "gamma": None,           # cosine: peak factor per cycle (1.0); step: 0.1; exponential: required
        "step_size": 10,
        "decay": None,           # keras_decay: required
    },
}

_CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "off", "bf16", "fp16"),
    "select_mode": ("min", "max"),
    "optimizer.name": OPTIMIZERS,
    "scheduler.name": SCHEDULERS,
    "scheduler.interval": ("auto", "step", "epoch"),
}
_POSITIVE = ("epochs", "batch_size", "eval_every", "log_every_steps", "scheduler.T_0", "scheduler.step_size")
_NON_NEGATIVE = ("seed", "num_workers", "grad_clip", "precise_bn_batches", "optimizer.lr", "optimizer.weight_decay",
                 "scheduler.warmup_steps", "scheduler.warmup_epochs", "scheduler.eta_min")


def train_config(overrides: Mapping | None = None) -> dict:
    """The defaults with a nested dict of overrides applied and checked, e.g. `train_config({"epochs": 3})`."""
    cfg = load_config(None, as_overrides(overrides or {}), TRAIN_SCHEMA)
    check_train_config(cfg)
    return cfg


def check_train_config(cfg: Mapping) -> None:
    """Raises ConfigError (one line, naming the key) for a missing key or a value out of range."""
    _check_keys(TRAIN_SCHEMA, cfg, "")
    for key, choices in _CHOICES.items():
        value = dotted_value(cfg, key)
        if value not in choices:
            raise ConfigError(f"training config: '{key}' must be one of {', '.join(choices)}, got {value!r}")
    for key in _POSITIVE:
        if not dotted_value(cfg, key) > 0:
            raise ConfigError(f"training config: '{key}' must be > 0, got {dotted_value(cfg, key)!r}")
    for key in _NON_NEGATIVE:
        if not dotted_value(cfg, key) >= 0:
            raise ConfigError(f"training config: '{key}' must be >= 0, got {dotted_value(cfg, key)!r}")
    for key in ("scheduler.gamma", "scheduler.decay"):
        value = dotted_value(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ConfigError(f"training config: '{key}' must be a number >= 0 or null, got {value!r}")
    if not str(cfg["select_metric"]):
        raise ConfigError("training config: 'select_metric' must name an epoch-log column, e.g. train_loss or eer")
    if cfg["select_initial"] and str(cfg["select_metric"]).startswith("train_"):
        raise ConfigError(f"training config: 'select_initial' needs a dev select_metric, not "
                          f"{cfg['select_metric']!r}: the starting weights have no training figures")


def _check_keys(schema: Mapping, cfg: Mapping, prefix: str) -> None:
    for key, default in schema.items():
        if key not in cfg:
            raise ConfigError(f"training config: missing key '{prefix}{key}' (build the section with "
                              f"engine.train_config or common.config.load_config and engine.TRAIN_SCHEMA)")
        if isinstance(default, Mapping):
            if not isinstance(cfg[key], Mapping):
                raise ConfigError(f"training config: '{prefix}{key}' must be a section (mapping)")
            _check_keys(default, cfg[key], f"{prefix}{key}.")
