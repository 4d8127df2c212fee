"""The training recipes behind main.py, one task per module (see pipeline/__init__), and which one a config names."""
from __future__ import annotations

from typing import Sequence

from common.config import ConfigError, apply_override, read_raw

TASKS = ("asv", "cm", "sasv", "sasv_e2e")


def task_module(name: str):
    """The recipe module of task `name`: its SCHEMA, check, folders and run."""
    if name == "asv":
        from pipeline.recipes import asv_task as module
    elif name == "cm":
        from pipeline.recipes import cm_task as module
    elif name == "sasv":
        from pipeline.recipes import sasv_task as module
    elif name == "sasv_e2e":
        from pipeline.recipes import sasv_e2e_task as module
    else:
        raise ConfigError(f"'task' must be one of {', '.join(TASKS)}, got {name!r}")
    return module


def config_task(path: str, overrides: Sequence[str]) -> str:
    """The `task` key of a config file with its overrides, read before the full schema is known (it chooses the
    schema; main.py and export_onnx.py)."""
    data = read_raw(path)
    for item in overrides:
        if item.startswith("task="):
            apply_override(data, item)
    return str(data.get("task", "sasv"))
