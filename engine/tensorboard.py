"""TensorBoard event files beside the CSV logs (`train.tensorboard: true`), for those who follow runs as curves.

The CSV logs stay the record (exact values, resumable without duplicates); the event files mirror them: each
train_log.csv row as scalars `train/<column>` at its global step, each epoch_log.csv row as `epoch/<column>` at the
step its epoch ended. A resumed run purges the events written after its checkpoint (SummaryWriter's
`purge_step`), as the CSV logs drop the rows of an unfinished epoch, so a curve never shows an epoch twice. The
package is optional: `check_available` says in one line, before anything runs, that it is missing.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Mapping

from common.config import ConfigError

FOLDER = "tensorboard"          # under the training output folder
NOT_SCALARS = ("epoch", "step")  # the axes, not curves


def check_available() -> None:
    """One line when the tensorboard package is missing (torch's SummaryWriter needs it)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard is true but the tensorboard package is not installed: pip install "
                          "tensorboard, or set train.tensorboard: false (the CSV logs are written either way)")


class TensorBoardLog:
    """Scalars of the training logs, written by rank 0."""

    def __init__(self, out_dir: str | Path, resume_step: int | None):
        """`resume_step`: the global step of the checkpoint a resumed run starts from (events after it are
        purged); None for a fresh run, which starts the folder empty like the CSV logs."""
        check_available()
        from torch.utils.tensorboard import SummaryWriter
        folder = Path(out_dir) / FOLDER
        if resume_step is None:
            shutil.rmtree(folder, ignore_errors=True)
        # purge_step: TensorBoard drops earlier events at steps >= it; the checkpoint's own step stays
        self.writer = SummaryWriter(str(folder), purge_step=None if resume_step is None else resume_step + 1)

    def scalars(self, prefix: str, row: Mapping[str, object], step: int) -> None:
        for key, value in row.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
