"""Cached embeddings keyed by utterance id (speaker models are averaged from them in pipeline.stages.enrolment).

The stages write embeddings as `.npz` arrays with their ids (common.io.save_embeddings); everything
downstream (speaker models, back-ends, trial datasets) reads them through an `EmbeddingTable`, which fails
at construction, naming the file, when an id that a trial list needs has no embedding.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence, Union

import numpy as np

from common.io import load_embeddings

PathLike = Union[str, os.PathLike]


# ================================================================================================
# Cached embeddings
# ================================================================================================
class EmbeddingTable:
    """Embeddings keyed by utterance id (rows of one float32 array), e.g. from `common.io.save_embeddings`."""

    def __init__(self, ids: Sequence[str], embeddings: np.ndarray, source: str = "<memory>"):
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(ids) != len(embeddings):
            raise ValueError(f"{source}: need {len(ids)} embedding rows (2-D), got shape {embeddings.shape}")
        self.ids, self.embeddings, self.source = list(ids), embeddings, source
        self.index = {u: k for k, u in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            dup = next(u for k, u in enumerate(self.ids) if self.index[u] != k)
            raise ValueError(f"{source}: utterance id {dup} appears twice")

    @classmethod
    def load(cls, path: PathLike) -> "EmbeddingTable":
        ids, emb = load_embeddings(path)
        return cls(ids, emb, source=str(path))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, np.ndarray], source: str = "<memory>") -> "EmbeddingTable":
        ids = list(mapping)
        if not ids:
            raise ValueError(f"{source}: no embeddings")
        return cls(ids, np.stack([np.asarray(mapping[u], dtype=np.float32) for u in ids]), source)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, utt: str) -> bool:
        return utt in self.index

    def __getitem__(self, utt: str) -> np.ndarray:
        try:
            return self.embeddings[self.index[utt]]
        except KeyError:
            raise KeyError(f"{self.source}: no embedding for utterance {utt}") from None

    def require(self, ids: Sequence[str], what: str) -> None:
        """Fails (one line: count and first few ids) when any of `ids` has no embedding here."""
        missing = [u for u in dict.fromkeys(ids) if u not in self.index]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise ValueError(f"{self.source}: {len(missing)} utterance ids needed by {what} have no embedding: {shown}")


EmbeddingSource = Union[EmbeddingTable, Mapping[str, np.ndarray], PathLike]


def as_table(source: EmbeddingSource) -> EmbeddingTable:
    """An EmbeddingTable from a table, a dict id -> vector, or a path to an embedding .npz."""
    if isinstance(source, EmbeddingTable):
        return source
    if isinstance(source, Mapping):
        return EmbeddingTable.from_mapping(source)
    return EmbeddingTable.load(source)
