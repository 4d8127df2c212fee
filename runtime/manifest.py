"""The manifest beside every exported .onnx (`manifest.json`): what a serving system needs to feed the graph and read
its outputs without this toolkit, and what made it (so that a cached export is reused only while all of it holds).

    format_version      runtime.onnx_export.FORMAT_VERSION
    kind                asv | cm | backend
    arch, model         the architecture name and its model options (a back-end: its name and options)
    sample_rate         16000 (front-ends); the input is mono float32 in [-1, 1]
    crop                how the stages cut each file before the graph: policy full | first | even, samples, count
                        (the graph takes any length from min_samples; averaging `even` crops is the caller's)
    min_samples         the shortest input the graph is valid for (longer than the model's own for AASIST)
    inputs, outputs     name, shape (symbolic axes named) and what each means; embedding_dim
    score               what the score output means, and which way is "more likely genuine"
    dev_threshold       {value, source} when an experiment chose one on its dev scores, else null
    checkpoint, checkpoint_sha256   the weights it came from (null: untrained weights, a dry run)
    exporter            FORMAT_VERSION, opset, torch, onnx, onnxscript versions
    onnx_sha256         SHA-256 of the .onnx file itself: a damaged or replaced file is not the export
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from common.errors import InputError
from common.io import write_json

MANIFEST = "manifest.json"
MODEL = "model.onnx"
REQUIRED = ("format_version", "kind", "arch", "model", "inputs", "outputs", "exporter", "onnx_sha256")

SCORE_MEANING = {
    "asv": "no score output: compare two embeddings by cosine similarity (higher = same speaker)",
    "cm": "score = logits[:, 1], the bona fide logit (higher = more likely bona fide); ASVspoof 2019 CM convention",
}


def frontend_outputs(kind: str, embedding_dim: int) -> list[dict]:
    embedding = {"name": "embedding", "shape": ["batch", embedding_dim],
                 "meaning": "speaker embedding, not length-normalised" if kind == "asv" else "CM embedding"}
    if kind == "asv":
        return [embedding]
    return [embedding, {"name": "logits", "shape": ["batch", 2], "meaning": "[spoof, bona fide] logits"},
            {"name": "score", "shape": ["batch"], "meaning": SCORE_MEANING["cm"]}]


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    path = Path(folder) / MANIFEST
    write_json(path, dict(manifest))
    return path


def read_manifest(path: str | Path) -> dict:
    """The manifest at `path` (a manifest.json or the folder holding it); one line naming the file otherwise."""
    path = Path(path)
    path = path / MANIFEST if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no ONNX manifest there (export_onnx.py writes it beside model.onnx)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable ONNX manifest ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: ONNX manifest is not a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise InputError(f"{path}: ONNX manifest lacks {', '.join(missing)}")
    return data
