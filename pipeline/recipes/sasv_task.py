"""`task: sasv` for main.py: a back-end with frozen front-ends, or joint optimisation end to end.

frozen: embeddings and scores are computed once by the stage code (skipped when cached); a score-level
        back-end is fitted on dev, an embedding-level one trains on cached train embeddings (seconds per epoch).
joint:  the front-ends start from their checkpoints and are fine-tuned with the back-end on waveform trials;
        the best epoch's front-ends then re-embed dev/eval through the same stage code.
An embedding back-end starts from backend.checkpoint when set (frozen and joint alike; e.g. a frozen run's
backend.pt, with the options stored in it), else from scratch. Both keep the best epoch by dev SASV-EER,
evaluate it on dev and eval, and write results.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from asv.checkpoint import save_asv_state
from cm.checkpoint import save_cm_state
from common.config import ConfigError, Rule, check_config, with_changes
from common.runs import RunFolders
from data.trial_sampling import TRIAL_SCHEMES
from engine import FitResult, fit, is_main_process, load_model_weights, seed_everything, train_schema
from fusion import backend_class
from pipeline.recipes.frozen import train_frozen_backend
from pipeline.recipes.joint import JointSASV, JointTask, joint_train_data
from pipeline.stages.asv import asv_stage
from pipeline.stages.backend import backend_checkpoint, backend_options, ready_backend, save_backend
from pipeline.stages.cm import cm_stage
from pipeline.stages.experiment import (  # noqa: F401 - protocol_digests: what main.py records for task sasv
    SASV_COMMON,
    check_stage_inputs,
    database,
    experiment,
    protocol_digests,
    resolve_device,
)
from pipeline.stages.frontends import build_asv, build_cm
from pipeline.stages.sasv import score_splits, trial_inputs

MODES = ("frozen", "joint")
SAMPLING_SCHEMES = (*TRIAL_SCHEMES, "baseline2")    # baseline2: frozen only (check_sasv_config)

SCHEMA = {
    **SASV_COMMON,
    "mode": Rule("frozen", choices=MODES),
    "sampling": {
        "scheme": Rule("2class", choices=SAMPLING_SCHEMES),   # 2class (50/25/25) | 4class (25 each) | baseline2
        "trials_per_epoch": Rule(0, low=0),   # 0: as many as training utterances (baseline2: CM embeddings)
    },
    "joint": {
        "frontend_lr": Rule(1e-5, low=0.0),   # learning rate of both front-ends (the back-end: train.optimizer.lr)
        "freeze_asv": False,
        "freeze_cm": False,
        "aux_asv_weight": Rule(0.0, low=0.0),   # auxiliary verification loss on bona fide pairs
        "aux_cm_weight": Rule(0.0, low=0.0),    # auxiliary CM cross-entropy on the test utterance
        # weights (spoof, bona fide) of that cross-entropy, with a positive sum. Not WeightedCE's (0.1, 0.9): that
        # default offsets the ASVspoof train protocol's 9:1 spoof majority, while the trial schemes draw bona fide
        # tests at 3:1 (2class) or 1:1 (4class); (0.9, 0.1) weighs the rarer spoofs up under 2class. Use [0.5, 0.5]
        # with 4class.
        "aux_cm_class_weights": Rule([0.9, 0.1], size=2, items=Rule(0.5, low=0.0)),
        "test_samples": Rule(64600, low=1),    # training crop of the test utterance (ASV and CM input)
        "enrol_samples": Rule(64600, low=1),   # training crop of the enrolment utterance
    },
    "train": train_schema("dev_sasv_eer"),
}


def check(cfg: Mapping) -> bool:
    """Everything that needs no model, before main.py locks or writes anything; returns True (nothing to reuse).
    The config itself is checked as by every SASV entry point (`check_stage_inputs` -> `check_sasv_config`)."""
    check_config(cfg, SCHEMA, "task sasv config")      # a config built in code gets the rules of a loaded one
    trained = not backend_class(cfg["backend"]["name"]).score_level
    if trained and cfg["mode"] == "frozen" and "train" not in cfg["splits"]:
        raise ConfigError("a trained back-end needs the train embeddings: include 'train' in 'splits'")
    check_stage_inputs(cfg)
    if cfg["backend"]["checkpoint"]:
        backend_checkpoint(cfg)               # a back-end checkpoint of this name, loadable, options that agree
    if cfg["mode"] == "joint":
        database(cfg).cm_entries("train")     # the joint trials come from the train protocol
    return True


def folders(cfg: Mapping) -> RunFolders:
    """The engine trains in joint_train/ or backend_train/ (a score-level back-end is only fitted); the default
    embeddings folder inside output_dir is a cache checked on every use, so --overwrite keeps it."""
    out, joint = Path(cfg["output_dir"]), cfg["mode"] == "joint"
    training = (out / "joint_train" if joint
                else None if backend_class(cfg["backend"]["name"]).score_level else out / "backend_train")
    writes = ("backend_state.json",) if training is None else ("backend.pt",) + (
        ("asv_finetuned.pt", "cm_finetuned.pt") if joint else ())
    locked = (("output_dir", cfg["output_dir"]), ("embeddings_dir", experiment(cfg).embeddings))  # shareable
    return RunFolders(out, training, locked,
                      () if cfg["embeddings_dir"] else ("embeddings",), writes)


def run(cfg: Mapping, resume: bool = False, force: bool = False, *, checked: bool | None = None) -> dict:
    """`checked`: the result of check(cfg) when the caller already ran it, e.g. main.py (None: run checks)."""
    if checked is None:
        check(cfg)
    if cfg["mode"] == "joint":
        return _joint(cfg, resume)
    asv_stage(cfg, force)
    cm_stage(cfg, force)
    if backend_class(cfg["backend"]["name"]).score_level:
        return score_splits(cfg)      # fitted on backend.fit_on (ready_backend), then scores dev and eval
    return _frozen(cfg, resume)


def _frozen(cfg: Mapping, resume: bool) -> dict:
    out = Path(cfg["output_dir"])
    # the dev inputs (tables and trials) are a temporary of this call: the final scoring loads dev and eval again,
    # and holding them through it too put a second copy of dev in the peak (about 0.4 GB at the ASVspoof 5 counts)
    _, result = train_frozen_backend(cfg, trial_inputs(cfg, "dev"), out / "backend_train", out / "backend.pt",
                                     resume=resume)
    return score_splits(with_changes(cfg, {"backend.checkpoint": str(out / "backend.pt"), "backend.options": {}}),
                        config_of_record=cfg,
                        extra=_selection(result, cfg))


def _joint(cfg: Mapping, resume: bool) -> dict:
    out = Path(cfg["output_dir"])
    device = resolve_device(cfg["device"])
    asv_model, cm_model = build_asv(cfg["asv"], device), build_cm(cfg["cm"], device)
    with torch.no_grad():
        cm_dim = cm_model(torch.zeros(1, 16000, device=device))[0].shape[-1]
    seed_everything(cfg["train"]["seed"])  # the back-end's initial weights (fit seeds what follows)
    backend = ready_backend(cfg, dims=(asv_model.embedding_dim, cm_dim), for_training=True)
    net = JointSASV(asv_model.train(), cm_model.train(), backend)
    result = fit(net, JointTask(cfg), joint_train_data(cfg, cfg["train"]["seed"]), cfg["train"],
                 out / "joint_train", resume=resume)
    if not is_main_process():
        return {}
    load_model_weights(net, result.best_checkpoint or result.last_checkpoint)
    save_asv_state(out / "asv_finetuned.pt", net.asv, arch=cfg["asv"]["arch"])
    save_cm_state(out / "cm_finetuned.pt", net.cm, arch=cfg["cm"]["arch"])
    save_backend(out / "backend.pt", net.backend, cfg["backend"]["name"], backend_options(cfg))
    # the fine-tuned embeddings belong to this experiment: never overwrite a shared cache of the frozen front-ends
    tuned = with_changes(cfg, {"asv.checkpoint": str(out / "asv_finetuned.pt"),
                               "cm.checkpoint": str(out / "cm_finetuned.pt"),
                        "backend.checkpoint": str(out / "backend.pt"), "backend.options": {},
                        "embeddings_dir": str(out / "embeddings"),
                        "splits": [s for s in cfg["splits"] if s != "train"]})
    asv_stage(tuned)
    cm_stage(tuned)
    return score_splits(tuned, config_of_record=cfg, extra=_selection(result, cfg))


def _selection(result: FitResult, cfg: Mapping) -> dict:
    """Which epoch the scores come from, for results.json (0: the starting weights, `train.select_initial`)."""
    data = "training trials" if result.select_metric.startswith("train_") else f"{database(cfg).title} dev trials"
    return {"best_epoch": result.best_epoch, "selected_on": f"{result.select_metric} ({data})",
            "selected_value": result.best_value}
