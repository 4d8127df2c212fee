"""Building the ASV and CM front-ends named by a config section, with their checkpoints, and saying which
front-end made an output (`frontend_identity`), so that caches and results can be checked against it."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

import asv
import cm
from asv.checkpoint import load_asv_state
from cm.checkpoint import load_cm_state
from common.config import ConfigError, FreeForm
from common.errors import InputError, MissingFilesError
from common.io import file_sha256
from data.audio import CropSpec
from pipeline.stages.extract import EmbedFn

ASV_SECTION = {
    "arch": "ECAPA-TDNN",          # ResNetSE34V2 | ResNetSE34L | ECAPA-TDNN
    "checkpoint": None,            # voxceleb_trainer, ECAPA-TDNN repo, DDP or our own layout
    "model": FreeForm({}),         # keyword arguments of the model (see its CONFIG dict)
    "crop": {"policy": "full", "samples": 64000, "count": 1},   # evaluation input: full | first | even (count crops)
}
CM_SECTION = {
    "arch": "AASIST",              # AASIST | AASIST-L | LCNN | LCNN-LFCC-LPS
    "checkpoint": None,            # the official AASIST.pth / AASIST-L.pth, or our own
    "model": FreeForm({}),
    "crop": {"policy": "first", "samples": 64600, "count": 1},  # AASIST evaluation convention; LCNN: full
}


def check_scoring_checkpoint(section: Mapping, key: str, allow_random_weights: bool) -> None:
    """Before anything is computed: a front-end that scores needs weights. A missing `checkpoint` would score
    with untrained random weights and give numbers that look like results; that takes `allow_random_weights`."""
    path = section["checkpoint"]
    if path is None or path == "":
        if not allow_random_weights:
            raise ConfigError(f"{key}.checkpoint is not set: the {section['arch']} front-end would score with "
                              f"untrained random weights; set {key}.checkpoint, or allow_random_weights: true for a "
                              "dry run")
        return
    p = Path(path)
    if not p.is_file():
        raise MissingFilesError(f"{key}.checkpoint {path}: " + ("is a folder, not a checkpoint file" if p.is_dir()
                                                                 else "checkpoint file does not exist"))


def frontend_identity(section: Mapping, kind: str) -> dict:
    """What makes a front-end's outputs what they are: architecture, model options, the checkpoint's SHA-256
    (so a retrained model with the same path counts as another) and the evaluation crop."""
    checkpoint = section["checkpoint"]
    return {"kind": kind, "arch": section["arch"], "model": dict(section["model"]),
            "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None, "crop": dict(section["crop"])}


def frontends_record(cfg: Mapping) -> dict:
    """What a results file records of the two front-ends that made its scores (their identity and checkpoint
    path), so that verify.py can refuse to apply its back-end and threshold to other front-ends."""
    return {k: {**frontend_identity(cfg[k], k), "checkpoint": cfg[k]["checkpoint"]} for k in ("asv", "cm")}


def _check_crop_fits(section: Mapping, key: str, model: nn.Module) -> None:
    """A fixed-length evaluation crop shorter than the model's shortest input would fail on every file."""
    shortest, crop = int(getattr(model, "min_samples", 1)), section.get("crop")
    if crop is not None and crop["policy"] != "full" and crop["samples"] < shortest:
        raise ConfigError(f"{key}.crop.samples is {crop['samples']}, shorter than the shortest input of "
                          f"{section['arch']} ({shortest} samples)")


def build_asv(section: Mapping, device: torch.device | str = "cpu") -> nn.Module:
    """The speaker model of `section`, with its checkpoint loaded strictly, in eval mode."""
    model = asv.build_model(section["arch"], **section["model"])
    _check_crop_fits(section, "asv", model)
    if section["checkpoint"]:
        load_asv_state(model, None, section["checkpoint"], strict=True)
    return model.to(device).eval()


def build_cm(section: Mapping, device: torch.device | str = "cpu") -> nn.Module:
    """The countermeasure of `section`, with its checkpoint loaded strictly, in eval mode."""
    model = cm.build_model(section["arch"], **section["model"])
    _check_crop_fits(section, "cm", model)
    if section["checkpoint"]:
        metadata = load_cm_state(model, section["checkpoint"])
        if metadata.get("loss_name", "WeightedCE") != "WeightedCE":
            raise InputError(f"{section['checkpoint']}: this CM was trained with {metadata['loss_name']}, so its "
                             "bona fide logit is untrained; the SASV stages score CMs by that logit: train it with "
                             "WeightedCE")
    return model.to(device).eval()


def crop_spec(section: Mapping) -> CropSpec:
    c = section["crop"]
    return CropSpec(c["policy"], int(c["samples"]), int(c["count"]))


def asv_embed_fn(model: nn.Module, device: torch.device | str = "cpu") -> EmbedFn:
    return lambda wave: {"embeddings": model(wave.to(device))}


def cm_embed_fn(model: nn.Module, device: torch.device | str = "cpu") -> EmbedFn:
    def run(wave: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding, logits = model(wave.to(device))
        return {"embeddings": embedding, "scores": logits[:, 1]}
    return run
