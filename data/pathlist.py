"""A long list of audio paths under one folder, stored without a Python object per path.

Why: VoxCeleb2 dev lists 1.09 M files. As a list of `pathlib.Path` objects that is about 0.5 GB, built in
tens of seconds, and every DataLoader worker that reads an item touches its reference count, so the
copy-on-write pages of that list are duplicated in each forked worker. Here the relative paths are one
UTF-8 byte buffer plus offsets (about 40 bytes per entry for VoxCeleb); a `Path` is made only when an item is
read, which costs microseconds next to decoding its audio.
"""
from __future__ import annotations

import os
from array import array
from pathlib import Path
from typing import Iterable, Iterator, Sequence, overload

import numpy as np


class PathList(Sequence[Path]):
    """`root / relative[i]` for every i, as a read-only sequence of `Path`s (slices give a PathList)."""

    def __init__(self, root: str | os.PathLike, relative: Iterable[str]):
        """Consumes `relative` one path at a time (a generator over a huge list is never materialised)."""
        data = bytearray()
        offsets = array("q", [0])
        for r in relative:
            data += r.encode("utf-8")
            offsets.append(len(data))
        self.root = Path(root)
        self._data = np.frombuffer(data, dtype=np.uint8)
        self._offsets = np.frombuffer(offsets, dtype=np.int64)

    @classmethod
    def _view(cls, root: Path, data: np.ndarray, offsets: np.ndarray) -> "PathList":
        out = cls.__new__(cls)
        out.root, out._data, out._offsets = root, data, offsets
        return out

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def relative(self, i: int) -> str:
        """The i-th path relative to `root`, as listed."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"PathList index {i} out of range for {len(self)} paths")
        i %= len(self)
        return self._data[self._offsets[i]:self._offsets[i + 1]].tobytes().decode("utf-8")

    @overload
    def __getitem__(self, i: int) -> Path: ...

    @overload
    def __getitem__(self, i: slice) -> "PathList": ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return PathList(self.root, [self.relative(k) for k in range(start, stop, step)])
            stop = max(start, stop)
            base = self._offsets[start]
            return self._view(self.root, self._data[base:self._offsets[stop]], self._offsets[start:stop + 1] - base)
        return self.root / self.relative(int(i))

    def __iter__(self) -> Iterator[Path]:
        for k in range(len(self)):
            yield self.root / self.relative(k)

    def strings(self) -> Iterator[str]:
        """Every path as a string, in order (cheaper than making a Path per entry, e.g. to check files exist)."""
        root = str(self.root)
        for k in range(len(self)):
            yield os.path.join(root, self.relative(k))

    def __repr__(self) -> str:
        return f"PathList({str(self.root)!r}, {len(self)} paths)"

    @property
    def nbytes(self) -> int:
        """Memory held by the paths (the byte buffer and the offsets)."""
        return int(self._data.nbytes + self._offsets.nbytes)


def as_path_sequence(paths: Sequence[str | os.PathLike]) -> Sequence[str | os.PathLike]:
    """`paths` itself when it is already a PathList, otherwise a list copy (small lists stay as they were)."""
    return paths if isinstance(paths, PathList) else list(paths)
