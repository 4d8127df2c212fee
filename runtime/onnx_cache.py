"""The ONNX export of a front-end section (`runtime: onnx`), made on first use and cached under the experiment's
embeddings folder: `<embeddings>/onnx/<kind>_<arch>_<key>/{model.onnx,manifest.json}`.

The key is a SHA-256 of what makes the graph: kind, architecture, model options, the checkpoint's SHA-256 (its
content, not its name) and the exporter's versions (FORMAT_VERSION, opset, torch, onnx, onnxscript). The manifest
records the same (`made_by`) and the SHA-256 of the .onnx file; an export is reused only when both match, so a
changed checkpoint, a new exporter, a damaged or replaced model.onnx or an unreadable manifest rebuild it (saying
why, in one line), never run. The crop is not part of the graph: a changed crop only rewrites the manifest.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable, Mapping

from torch import nn

from common.errors import InputError
from common.io import file_sha256
from pipeline.stages.cache import fingerprint
from runtime.manifest import MODEL, read_manifest, write_manifest
from runtime.onnx_export import export_frontend, exporter_versions

log = logging.getLogger(__name__)


def export_identity(section: Mapping, kind: str) -> dict:
    checkpoint = section["checkpoint"]
    return {"kind": kind, "arch": section["arch"], "model": dict(section["model"]),
            "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None, **exporter_versions()}


def export_folder(root: str | Path, identity: Mapping) -> Path:
    key = hashlib.sha256(fingerprint(**identity).encode()).hexdigest()[:16]
    return Path(root) / "onnx" / f"{identity['kind']}_{identity['arch']}_{key}"


def why_not_current(folder: Path, identity: Mapping) -> str | None:
    """Why the export in `folder` cannot be used ("" when there is none yet; None when it can)."""
    if not (folder / "manifest.json").exists():
        return ""
    try:
        manifest = read_manifest(folder)
    except InputError as e:
        return f"damaged ({str(e).removeprefix(str(folder / 'manifest.json') + ': ')})"
    if manifest.get("made_by") != dict(identity):
        old, new = manifest.get("made_by") or {}, dict(identity)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return f"made by something else: {', '.join(changed)} changed"
    if not (folder / MODEL).is_file():
        return f"{MODEL} is missing"
    if file_sha256(folder / MODEL) != manifest["onnx_sha256"]:
        return f"damaged ({MODEL} is not the file its manifest describes: SHA-256 differs)"
    return None


def cached_export(section: Mapping, kind: str, root: str | Path, build: Callable[[], nn.Module]) -> tuple[Path, dict]:
    """(model.onnx, manifest) of the front-end `section` names, exported from `build()` when not current."""
    identity = export_identity(section, kind)
    folder = export_folder(root, identity)
    why = why_not_current(folder, identity)
    if why is None:
        manifest = read_manifest(folder)
        if manifest["crop"] != dict(section["crop"]):
            manifest["crop"] = dict(section["crop"])
            write_manifest(folder, manifest)
        log.info(f"{kind}: ONNX Runtime with {folder / MODEL}")
        return folder / MODEL, manifest
    log.info(f"{kind}: exporting {section['arch']} to {folder / MODEL}" + (f" ({why})" if why else "")
             + ": once per checkpoint, tens of seconds")
    manifest = export_frontend(build(), kind, folder, arch=section["arch"], options=dict(section["model"]),
                               checkpoint=section["checkpoint"], checkpoint_sha256=identity["checkpoint_sha256"],
                               crop=dict(section["crop"]), made_by=identity)
    return folder / MODEL, manifest
