"""What every front-end training task (asv, cm, sasv_e2e) checks before main.py locks or writes anything."""
from __future__ import annotations

from typing import Mapping

from common.config import check_config
from common.folders import check_output_path
from engine import check_train_config
from pipeline.stages.frontends import check_crop_fits, check_input_fits, input_floor


def check_training_config(cfg: Mapping, schema: Mapping, task: str, section: str) -> None:
    """The config against its schema's rules (a config built in code gets the rules of a loaded one), output_dir,
    the train section, and that the training crop `data.train_samples` and the evaluation crops of the front-end
    `section` ("asv" or "cm") fit the model's shortest input."""
    check_config(cfg, schema, f"task {task} config")
    check_output_path(cfg["output_dir"], "output_dir")
    check_train_config(cfg["train"])
    floor = input_floor(cfg[section], section)
    check_input_fits(cfg["data"]["train_samples"], floor, "data.train_samples")
    check_crop_fits(cfg[section], section, floor)
