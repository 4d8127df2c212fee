"""Building the ASV and CM front-ends named by a config section, with their checkpoints, and saying which
front-end made an output (`frontend_identity`; the ASV scores also `pipeline.stages.enrolment.enrolment_identity`:
how the speaker models were averaged), so that caches and results can be checked against it."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

import asv
import cm
from asv.checkpoint import load_asv_state
from cm.checkpoint import load_cm_state
from common.config import ConfigError, FreeForm, Rule
from common.dispatch import lookup
from common.errors import InputError, MissingFilesError
from common.io import file_sha256
from data.audio import crop_section
from pipeline.stages.enrolment import ENROL_MEAN, enrolment_identity
from pipeline.stages.extract import EmbedFn, InputFloor, ModelCall

# What runs a front-end in the stages, verify.py and the ablation: PyTorch eager, or ONNX Runtime on a graph exported
# on first use and cached (runtime/onnx_cache.py; docs/onnx.md). Training always runs on torch.
RUNTIMES = ("torch", "onnx")
RUNTIME = Rule("torch", choices=RUNTIMES)


ASV_SECTION = {
    "arch": Rule("ECAPA-TDNN", choices=tuple(asv.MODELS)),   # ECAPA-TDNN | ResNetSE34V2 | ... | SSL-ECAPA | SSL-MHFA
    "checkpoint": Rule(None, kind=str),   # voxceleb_trainer, ECAPA-TDNN repo, DDP or our own layout
    "model": FreeForm({}),         # keyword arguments of the model (see its CONFIG dict)
    "crop": crop_section("full", 64000),
    "enrol_mean": ENROL_MEAN,      # `lists` speaker models: a mode of enrolment.ENROL_MEANS (raw | unit: L2-normalised)
    "runtime": RUNTIME,            # torch | onnx: what runs the front-end when it scores (docs/onnx.md)
}
CM_SECTION = {
    # AASIST | AASIST-L | LCNN | LCNN-LFCC-LPS | LFCC-LCNN-ASVspoof2021 | SSL-AASIST
    "arch": Rule("AASIST", choices=tuple(cm.MODELS)),
    "checkpoint": Rule(None, kind=str),   # the official AASIST.pth / AASIST-L.pth, or our own
    "model": FreeForm({}),
    "crop": crop_section("first", 64600),   # AASIST evaluation convention; LCNN: full
    "runtime": RUNTIME,            # torch | onnx: what runs the front-end when it scores (docs/onnx.md)
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
    (so a retrained model with the same path counts as another), the evaluation crop, and the runtime when it is
    not torch (ONNX Runtime's outputs differ from eager within 1e-4; left out for torch so that identities recorded
    before the key existed still hold)."""
    checkpoint = section["checkpoint"]
    runtime = section.get("runtime", "torch")
    return {"kind": kind, "arch": section["arch"], "model": dict(section["model"]),
            "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None, "crop": dict(section["crop"]),
            **({"runtime": runtime} if runtime != "torch" else {})}


def scoring_identity(cfg: Mapping, kind: str) -> dict:
    """What made the `kind` scores of a SASV config: the front-end's identity and, for the ASV front-end, how its
    speaker models average (`pipeline.stages.enrolment.enrolment_identity`)."""
    identity = frontend_identity(cfg[kind], kind)
    return {**identity, **enrolment_identity(cfg["asv"], cfg["enrolment"])} if kind == "asv" else identity


def frontends_record(cfg: Mapping, kinds: tuple[str, ...] = ("asv", "cm")) -> dict:
    """What a results file records of the front-ends that made its scores (their `scoring_identity` and
    checkpoint path), so that verify.py can refuse to apply its back-end and threshold to other front-ends."""
    return {k: {**scoring_identity(cfg, k), "checkpoint": cfg[k]["checkpoint"]} for k in kinds}


def input_floor(section: Mapping, kind: str) -> InputFloor:
    """The shortest input of the front-end a section names (its model's `min_samples`), known before anything runs:
    read from the class where it states it (a class attribute), else from a model built untrained for the purpose
    (AASIST's depends on its options; it builds in milliseconds and loads no weights)."""
    models, build = (asv.MODELS, asv.build_model) if kind == "asv" else (cm.MODELS, cm.build_model)
    cls = lookup(models, section["arch"], f"{kind.upper()} model")[0]
    floor = inspect.getattr_static(cls, "min_samples")   # stated by every registered class (asv/cm check it)
    if isinstance(floor, int):
        return InputFloor(floor, section["arch"])
    return InputFloor.of(build(section["arch"], **section["model"]), section["arch"])


def check_input_fits(samples: int, floor: InputFloor, key: str) -> None:
    """A fixed input length (`key`: an evaluation or training crop) shorter than the model's shortest input would
    fail on every file or batch: one line before anything runs."""
    if samples < floor.samples:
        raise ConfigError(f"'{key}' is {samples}, shorter than the shortest input of {floor.model} "
                          f"({floor.samples} samples)")


def check_crop_fits(section: Mapping, kind: str, floor: InputFloor | None = None) -> None:
    """The evaluation crop of a front-end section (`full` takes each file whole: checked per file instead)."""
    crop = section.get("crop")
    if crop is not None and crop["policy"] != "full":
        check_input_fits(crop["samples"], floor or input_floor(section, kind), f"{kind}.crop.samples")


def build_asv(section: Mapping, device: torch.device | str = "cpu") -> nn.Module:
    """The speaker model of `section`, with its checkpoint loaded strictly, in eval mode."""
    model = asv.build_model(section["arch"], **section["model"])
    check_crop_fits(section, "asv", InputFloor.of(model, section["arch"]))
    if section["checkpoint"]:
        load_asv_state(model, None, section["checkpoint"], strict=True)
    return model.to(device).eval()


def build_cm(section: Mapping, device: torch.device | str = "cpu") -> nn.Module:
    """The countermeasure of `section`, with its checkpoint loaded strictly, in eval mode."""
    model = cm.build_model(section["arch"], **section["model"])
    check_crop_fits(section, "cm", InputFloor.of(model, section["arch"]))
    if section["checkpoint"]:
        metadata = load_cm_state(model, section["checkpoint"])
        if metadata.get("loss_name", "WeightedCE") != "WeightedCE":
            raise InputError(f"{section['checkpoint']}: this CM was trained with {metadata['loss_name']}, so its "
                             "bona fide logit is untrained; the SASV stages score CMs by that logit: train it with "
                             "WeightedCE")
    return model.to(device).eval()


def asv_embed_fn(model: nn.Module, device: torch.device | str = "cpu") -> ModelCall:
    """The speaker model's embeddings (a ModelCall: extract() may reuse what this model already computed)."""
    return ModelCall(model, device, lambda out: {"embeddings": out[0]})


def cm_embed_fn(model: nn.Module, device: torch.device | str = "cpu") -> ModelCall:
    """The countermeasure's embeddings and scores (its bona fide logit) as one ModelCall."""
    return ModelCall(model, device, lambda out: {"embeddings": out[0], "scores": out[1][:, 1]})


@dataclass(frozen=True)
class Frontend:
    """A front-end ready to score: its EmbedFn and its shortest input (checked per file by the extraction)."""
    embed: EmbedFn
    floor: InputFloor


def frontend(cfg: Mapping, kind: str, exports: Path, device: torch.device | str = "cpu") -> Frontend:
    """The `kind` (asv | cm) front-end of a SASV config on its configured runtime: the one place the stages,
    verify.py and the ablation get a front-end from. `runtime: onnx` runs the graph runtime/onnx_cache.py exports on
    first use under `exports` (the experiment's embeddings folder: `<embeddings>/onnx/`; rebuilt when the checkpoint
    or the exporter changes); its floor is the graph's `min_samples` from the manifest."""
    section = cfg[kind]
    build = build_asv if kind == "asv" else build_cm
    if section.get("runtime", "torch") == "torch":
        model = build(section, device)
        return Frontend(asv_embed_fn(model, device) if kind == "asv" else cm_embed_fn(model, device),
                        InputFloor.of(model))
    from runtime.onnx_cache import cached_export
    from runtime.onnx_session import onnx_embed_fn, open_session
    path, manifest = cached_export(section, kind, exports, lambda: build(section, "cpu"))
    return Frontend(onnx_embed_fn(open_session(path, device), kind), InputFloor(int(manifest["min_samples"]),
                                                                                 section["arch"]))
