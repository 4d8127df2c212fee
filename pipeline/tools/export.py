"""What export_onnx.py exports from a config: which weights, which dims, which dev threshold (runtime/ does the
export itself)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from common.config import ConfigError
from common.errors import InputError, MissingFilesError
from common.io import file_sha256
from data.score_files import read_cm_scores, read_sasv_scores
from metrics.thresholds import choose_threshold

TRAINED = {"asv": "asv_model.pt", "cm": "cm_model.pt"}   # what main.py task asv / cm writes into output_dir


def frontend_checkpoint(cfg: Mapping, task: str, kind: str) -> str | None:
    """The weights to export: a finished task asv / cm run's trained model, else the section's `checkpoint`;
    untrained weights only with allow_random_weights (a dry run), as when scoring."""
    trained = Path(cfg["output_dir"]) / TRAINED[kind]
    if task == kind and trained.is_file():
        return str(trained)
    path = cfg[kind]["checkpoint"]
    if path:
        if not Path(path).is_file():
            raise MissingFilesError(f"{kind}.checkpoint {path}: checkpoint file does not exist")
        return str(path)
    if cfg.get("allow_random_weights"):
        return None
    where = f"{trained} does not exist and " if task == kind else ""
    raise ConfigError(f"{where}{kind}.checkpoint is not set: nothing trained to export; set {kind}.checkpoint "
                      "(or allow_random_weights: true for a dry run)")


def dev_threshold(cfg: Mapping, kind: str) -> dict | None:
    """The EER threshold on the experiment's dev scores of `kind`, when it has them: CM bona fide vs spoof
    (scores/cm_dev.txt), ASV target vs nontarget (scores/asv_dev.txt), SASV target vs nontarget + spoof
    (scores/sasv_dev.txt, the point verify.py uses)."""
    path = Path(cfg["output_dir"]) / "scores" / f"{'sasv' if kind == 'backend' else kind}_dev.txt"
    if not path.is_file():
        return None
    if kind == "cm":
        scores = read_cm_scores(path)
        keys = np.asarray(scores.key)
        classes = {"target": scores.score[keys == "bonafide"], "spoof": scores.score[keys == "spoof"]}
        value = choose_threshold(classes, "eer", negatives="spoof")
        return {"value": value, "source": f"dev CM EER point, {path}"}
    scores = read_sasv_scores(path)
    keys = np.asarray(scores.key)
    classes = {k: scores.score[keys == k] for k in ("target", "nontarget", "spoof")}
    negatives, label = ("nontarget", "ASV EER point") if kind == "asv" else ("both", "SASV-EER point")
    return {"value": choose_threshold(classes, "eer", negatives=negatives), "source": f"dev {label}, {path}"}


def export(cfg: Mapping, task: str, kind: str, out: str | Path) -> dict:
    """Writes `out`/model.onnx and manifest.json for the `kind` model of `cfg`; returns the manifest."""
    from runtime.onnx_export import export_backend, export_frontend
    if kind in ("asv", "cm"):
        if kind not in cfg:
            raise ConfigError(f"a task {task} config has no {kind} section to export")
        from pipeline.stages.frontends import build_asv, build_cm
        checkpoint = frontend_checkpoint(cfg, task, kind)
        section = {**cfg[kind], "checkpoint": checkpoint}
        model = (build_asv if kind == "asv" else build_cm)(section, "cpu")
        return export_frontend(model, kind, out, arch=section["arch"], options=dict(section["model"]),
                               checkpoint=checkpoint, checkpoint_sha256=file_sha256(checkpoint) if checkpoint else None,
                               crop=dict(section["crop"]), dev_threshold=dev_threshold(cfg, kind))
    return _export_backend(cfg, task, out, export_backend)


def _export_backend(cfg: Mapping, task: str, out: str | Path, export_backend) -> dict:
    import asv
    import cm
    from fusion import backend_class, backend_names
    from pipeline.stages.backend import backend_options, embedding_backend_path, ready_backend
    if task != "sasv":
        raise ConfigError(f"--kind backend needs a SASV config (task: sasv), not task {task}")
    name = cfg["backend"]["name"]
    if backend_class(name).score_level:
        embedding = ", ".join(backend_names(score_level=False))
        raise InputError(f"backend.name {name} is a score-level back-end (numpy, in backend_state.json): nothing to "
                         f"export; ONNX export covers the embedding back-ends ({embedding})")
    path = embedding_backend_path(cfg)
    if not path.is_file():
        raise MissingFilesError(f"{path}: no trained {name} back-end; run main.py with this config first")
    asv_dim = int(asv.build_model(cfg["asv"]["arch"], **cfg["asv"]["model"]).embedding_dim)
    cm_dim = int(cm.build_model(cfg["cm"]["arch"], **cfg["cm"]["model"]).embedding_dim)
    trained = {"backend": {**cfg["backend"], "checkpoint": str(path)}}
    backend = ready_backend(trained, dims=(asv_dim, cm_dim))
    score = f"SASV score of {name} (higher = target bona fide trial; compare with dev_threshold)"
    return export_backend(backend, out, name=name, options=backend_options(trained),
                          asv_dim=asv_dim, cm_dim=cm_dim, checkpoint=str(path), checkpoint_sha256=file_sha256(path),
                          score=score, dev_threshold=dev_threshold(cfg, "backend"))
