"""The one training engine: a thin loop with optimisers, schedules, AMP, DDP, checkpoints, resume, CSV logs.

    from engine import TRAIN_SCHEMA, TrainData, fit
    result = fit(model, task, TrainData(dataset), cfg["train"], out_dir, resume=args.resume)

See docs/training.md for the task protocol, every config key and the files written.
"""
from engine.checkpoint import load_checkpoint, load_model_weights
from engine.distributed import get_rank, get_world_size, is_main_process
from engine.optim import build_optimizer, resolve_param_groups
from engine.precision import resolve_amp
from engine.schedulers import LRSchedule, build_scheduler
from engine.schema import TRAIN_SCHEMA, check_train_config, train_config, train_schema
from engine.seeding import seed_everything
from engine.trainer import FitResult, RunExistsError, Task, TrainData, existing_run, fit

__all__ = [
    "TRAIN_SCHEMA", "train_schema", "train_config", "check_train_config", "fit", "FitResult", "Task", "TrainData",
    "RunExistsError", "existing_run",
    "build_optimizer", "resolve_param_groups", "build_scheduler", "LRSchedule", "seed_everything",
    "load_checkpoint", "load_model_weights", "resolve_amp", "is_main_process", "get_rank", "get_world_size",
]
