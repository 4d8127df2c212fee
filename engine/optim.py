"""Optimisers by name, and parameter groups (separate learning rates, e.g. a slow pre-trained front-end)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "sgd")


def resolve_param_groups(model: nn.Module, task: Any) -> list[dict]:
    """`task.param_groups(model)` if the task defines it, else one group of all trainable parameters.

    Every trainable parameter (requires_grad=True) must be in exactly one group: one left out would receive
    gradients but never move, which is almost always a mistake (freeze it with requires_grad=False instead).
    """
    hook = getattr(task, "param_groups", None)
    groups = [dict(g) for g in hook(model)] if hook is not None else None   # the hook may freeze parts first
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    if groups is None:
        return [{"params": [p for _, p in trainable]}]
    if not groups:
        raise ValueError("task.param_groups returned no groups")
    seen: dict[int, int] = {}
    for i, group in enumerate(groups):
        if "params" not in group:
            raise ValueError(f"task.param_groups: group {i} has no 'params' key")
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        group["params"] = [p for p in params if p.requires_grad]
        for p in group["params"]:
            if id(p) in seen:
                raise ValueError(f"task.param_groups: a parameter is in group {seen[id(p)]} and group {i}")
            seen[id(p)] = i
    missing = [n for n, p in trainable if id(p) not in seen]
    if missing:
        raise ValueError(f"task.param_groups leaves {len(missing)} trainable parameters out (e.g. '{missing[0]}'); "
                         f"add them to a group or set requires_grad=False to freeze them")
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], cfg: Mapping) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD from the `optimizer` config section; group keys (e.g. 'lr') override the section."""
    name = cfg["name"]
    lr, wd = float(cfg["lr"]), float(cfg["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=_betas(cfg), eps=float(cfg["eps"]), weight_decay=wd,
                                amsgrad=bool(cfg["amsgrad"]))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=_betas(cfg), eps=float(cfg["eps"]), weight_decay=wd,
                                 amsgrad=bool(cfg["amsgrad"]))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd,
                               nesterov=bool(cfg["nesterov"]))
    raise ValueError(f"optimizer.name: unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def _betas(cfg: Mapping) -> tuple[float, float]:
    betas = cfg["betas"]
    if len(betas) != 2:
        raise ValueError(f"optimizer.betas: expected two numbers, got {betas!r}")
    return float(betas[0]), float(betas[1])
