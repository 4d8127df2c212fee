"""Atomic, pickle-free storage: an interrupted run never leaves a half-written file behind."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

import numpy as np

from common.errors import InputError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Writes to a temporary file beside `path` and renames it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Saves named arrays as an uncompressed .npz, atomically. Object arrays are refused (they would pickle)."""
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"{path}: array '{name}' has dtype object, which would be pickled")
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads an .npz written by `save_arrays` (never unpickles)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_embeddings(path: str | os.PathLike, ids: Sequence[str], embeddings: np.ndarray, **extra: np.ndarray) -> None:
    """Embeddings with their utterance ids, row i belonging to ids[i]."""
    embeddings = np.asarray(embeddings)
    if len(ids) != len(embeddings):
        raise ValueError(f"{path}: {len(ids)} ids but {len(embeddings)} embedding rows")
    save_arrays(path, ids=np.asarray(list(ids), dtype=str), embeddings=embeddings, **extra)


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Returns (ids, embeddings) from a file written by `save_embeddings`."""
    arrays = load_arrays(path)
    if "ids" not in arrays or "embeddings" not in arrays:
        raise ValueError(f"{path}: not an embedding file (needs arrays 'ids' and 'embeddings', has {sorted(arrays)})")
    return arrays["ids"].tolist(), arrays["embeddings"]


def write_lines(path: str | os.PathLike, lines: Sequence[str]) -> None:
    """Writes a text file of lines atomically: re-running overwrites, never appends."""
    with atomic_write(path) as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def read_json(path: str | os.PathLike) -> dict | None:
    """A JSON object from `path`, or None when the file is missing, unreadable or not an object
    (used to decide whether finished work can be skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    return data if isinstance(data, dict) else None


def load_weights(path: str | os.PathLike) -> dict:
    """A checkpoint's top-level dict via `torch.load(weights_only=True)` on CPU; one-line InputError otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.name}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refusals and corrupt archives alike
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path.name}: not a loadable weights-only checkpoint ({first_line})") from None
    if not isinstance(state, Mapping):
        raise InputError(f"{path.name}: checkpoint holds a {type(state).__name__}, not a state dict")
    return dict(state)
