"""The training config section: a schema of defaults and rules for `common.config.load_config`, and the checks
that relate keys to each other.

Every key is documented in docs/training.md. Recipes embed it, e.g. `{"train": train_schema("eer"), ...}`.
"""
from __future__ import annotations

from typing import Mapping

from common.config import ConfigError, Rule, as_overrides, check_config, load_config
from engine.distributed import DEVICES
from engine.optim import OPTIMIZERS
from engine.precision import AMP_MODES
from engine.schedulers import SCHEDULERS, check_scheduler_config
from engine.seeding import SEED
from engine.tensorboard import check_available

_COUNT = Rule(1, low=1)           # a count that must be at least one
_NONE_OR_MORE = Rule(0, low=0)    # a count that may be zero

TRAIN_SCHEMA: dict = {
    "seed": SEED,
    "epochs": _COUNT.with_default(10),
    "batch_size": _COUNT.with_default(32),   # global batch: each of N ranks gets batch_size / N
    "num_workers": _NONE_OR_MORE,
    "shuffle": True,
    "drop_last": True,
    "device": Rule("auto", choices=DEVICES),
    "grad_clip": Rule(0.0, low=0.0),        # max global grad norm; 0 = off
    # before each evaluation, recompute BatchNorm statistics over this many batches
    "precise_bn_batches": _NONE_OR_MORE,
    "eval_every": _COUNT,                  # evaluate (and select best.pt) every N epochs and after the last one
    "select_initial": False,               # also evaluate the starting weights (epoch 0) as a candidate for best.pt
    "amp": Rule("auto", choices=AMP_MODES),
    "sync_bn": False,
    "find_unused_parameters": False,
    "select_metric": Rule("train_loss", nonempty=True),   # an epoch-log column
    "select_mode": Rule("min", choices=("min", "max")),
    "log_every_steps": _COUNT.with_default(50),
    "progress": True,
    "tensorboard": False,                  # also write TensorBoard event files (engine/tensorboard.py)
    "dist_timeout_s": Rule(1800.0, above=0.0),
    "optimizer": {
        "name": Rule("adam", choices=OPTIMIZERS),
        "lr": Rule(1e-3, low=0.0),
        "weight_decay": Rule(0.0, low=0.0),
        "momentum": Rule(0.9, low=0.0, below=1.0),     # sgd
        "nesterov": False,                             # sgd (needs momentum > 0)
        "betas": Rule([0.9, 0.999], size=2, items=Rule(0.9, low=0.0, below=1.0)),   # adam, adamw
        "eps": Rule(1e-8, low=0.0),                    # adam, adamw
        "amsgrad": False,                              # adam, adamw
    },
    "scheduler": {
        "name": Rule("none", choices=SCHEDULERS),
        "interval": Rule("auto", choices=("auto", "step", "epoch")),
        "warmup_steps": _NONE_OR_MORE,
        "warmup_epochs": _NONE_OR_MORE,
        "T_0": _COUNT.with_default(10),
        "T_mult": Rule(1.0, low=1.0),
        "eta_min": Rule(0.0, low=0.0),
        # cosine: peak factor per cycle (1.0); step: 0.1; exponential: required
        "gamma": Rule(None, kind=float, low=0.0),
        "step_size": _COUNT.with_default(10),
        "decay": Rule(None, kind=float, low=0.0),      # keras_decay: required
    },
}


def train_schema(select_metric: str) -> dict:
    """TRAIN_SCHEMA with a recipe's own default `select_metric` (the rule stays the same)."""
    return {**TRAIN_SCHEMA, "select_metric": TRAIN_SCHEMA["select_metric"].with_default(select_metric)}


def train_config(overrides: Mapping | None = None) -> dict:
    """The defaults with a nested dict of overrides applied and checked, e.g. `train_config({"epochs": 3})`."""
    try:
        cfg = load_config(None, as_overrides(overrides or {}), TRAIN_SCHEMA)
    except ConfigError as e:
        raise ConfigError(f"training config: {str(e).removeprefix('<defaults>: ')}") from None
    check_train_config(cfg)
    return cfg


def check_train_config(cfg: Mapping) -> None:
    """Raises ConfigError (one line, naming the key) for a missing key, a value its rule in TRAIN_SCHEMA refuses
    (the rules config files are loaded with: a section built in code gets the same checks), or settings that
    contradict each other. Recipes call it in their `check`, before anything is computed."""
    _check_keys(TRAIN_SCHEMA, cfg, "")
    check_config(cfg, TRAIN_SCHEMA, "training config")
    if cfg["select_initial"] and str(cfg["select_metric"]).startswith("train_"):
        raise ConfigError(f"training config: 'select_initial' needs a dev select_metric, not "
                          f"{cfg['select_metric']!r}: the starting weights have no training figures")
    optimizer, scheduler = cfg["optimizer"], cfg["scheduler"]
    if optimizer["name"] == "sgd" and optimizer["nesterov"] and not optimizer["momentum"] > 0:
        raise ConfigError("training config: 'optimizer.nesterov' needs 'optimizer.momentum' > 0")
    if cfg["tensorboard"]:
        check_available()
    try:
        check_scheduler_config(scheduler)
    except ConfigError as e:
        raise ConfigError(f"training config: {e}") from None


def _check_keys(schema: Mapping, cfg: Mapping, prefix: str) -> None:
    for key, default in schema.items():
        if key not in cfg:
            raise ConfigError(f"training config: missing key '{prefix}{key}' (build the section with "
                              f"engine.train_config or common.config.load_config and engine.TRAIN_SCHEMA)")
        if isinstance(default, Mapping):
            if not isinstance(cfg[key], Mapping):
                raise ConfigError(f"training config: '{prefix}{key}' must be a section (mapping)")
            _check_keys(default, cfg[key], f"{prefix}{key}.")
