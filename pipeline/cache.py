"""Cached stage outputs that know what produced them.

Each cached `.npz` stores a fingerprint (a JSON description of the model, checkpoint and crop that made
it). A stage skips work only when the file exists *and* its fingerprint matches the current config, so a
changed checkpoint or crop is recomputed instead of silently reusing stale embeddings.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from common.io import load_arrays, save_arrays


def file_digest(path: str | os.PathLike | None) -> str | None:
    """Content hash of a checkpoint (first 16 hex digits of sha256), so a retrained model invalidates caches."""
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fingerprint(**parts: Any) -> str:
    """A canonical JSON string of what produced an output."""
    return json.dumps(parts, sort_keys=True, default=str)


def load_if_current(path: Path, expected: str) -> dict[str, np.ndarray] | None:
    """The cached arrays when `path` exists and was made by `expected`; otherwise None (recompute)."""
    if not path.exists():
        return None
    arrays = load_arrays(path)
    stored = arrays.pop("fingerprint", None)
    if stored is None or str(stored) != expected:
        return None
    return arrays


def save_with_fingerprint(path: Path, fp: str, arrays: Mapping[str, np.ndarray]) -> None:
    save_arrays(path, fingerprint=np.asarray(fp), **arrays)
