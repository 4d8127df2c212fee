"""CSV logs that a resumed run continues without duplicate rows, and that an interrupt leaves consistent.

Rows of the running epoch are appended and flushed as they come (to follow a run live); `commit()` at the
end of an epoch rewrites the file atomically with every committed row, `rollback()` (on an interrupt)
rewrites it without the rows of the unfinished epoch, and a resumed run keeps exactly the number of rows
recorded in the checkpoint, so rows written after that checkpoint are dropped and then produced again.
"""
from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import IO, Mapping

from common.io import atomic_write, writing


def format_value(value: object) -> str:
    """Exact, round-trippable text: repr of floats, str of the rest."""
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


class CsvLog:
    """One CSV file whose header is fixed by the first row."""

    def __init__(self, path: str | os.PathLike, keep_rows: int | None = None):
        """`keep_rows=None` starts a new file (removing an old one); an int keeps that many existing data rows."""
        self.path = Path(path)
        self.header: list[str] | None = None
        self.rows: list[dict[str, str]] = []
        self.pending: list[dict[str, str]] = []
        self._handle: IO | None = None
        if keep_rows is None:
            with writing(self.path):
                self.path.unlink(missing_ok=True)
            return
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self.header = list(reader.fieldnames) if reader.fieldnames else None
                for row in reader:
                    if len(self.rows) == keep_rows:
                        break
                    if None in row or any(v is None for v in row.values()):
                        break  # a line cut short by a hard kill
                    self.rows.append(row)
        if len(self.rows) < keep_rows:
            raise ValueError(f"{self.path}: has {len(self.rows)} complete rows but the checkpoint recorded "
                             f"{keep_rows}; the log was edited or deleted")
        self._rewrite()

    def append(self, row: Mapping[str, object]) -> None:
        """Adds a row to the running epoch (on disk at once, kept only if the epoch completes)."""
        text = {k: format_value(v) for k, v in row.items()}
        if self.header is None:
            self.header = list(text)
        extra = [k for k in text if k not in self.header]
        if extra:
            raise ValueError(f"{self.path}: column {extra[0]!r} did not appear in the first row "
                             f"(columns {', '.join(self.header)}); log the same keys at every step")
        with writing(self.path):   # a full disk mid-epoch: one line naming the log; rollback() rewrites it whole
            if self._handle is None:
                new = not self.path.exists() or self.path.stat().st_size == 0
                self._handle = open(self.path, "a", newline="", encoding="utf-8")
                if new:
                    csv.writer(self._handle, lineterminator="\n").writerow(self.header)
            csv.DictWriter(self._handle, fieldnames=self.header, lineterminator="\n").writerow(text)
            self._handle.flush()
        self.pending.append(text)

    def commit(self) -> None:
        """The running epoch completed: its rows become permanent."""
        self.rows.extend(self.pending)
        self.pending = []
        self._rewrite()

    def rollback(self) -> None:
        """The running epoch did not complete: its rows are removed from the file."""
        self.pending = []
        self._rewrite()

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with writing(self.path):
                handle.close()

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def _rewrite(self) -> None:
        if self._handle is not None:   # rows it failed to flush (a full disk) are rewritten below from memory
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        if self.header is None:
            with writing(self.path):
                self.path.unlink(missing_ok=True)
            return
        with atomic_write(self.path, "w") as f:
            writer = csv.DictWriter(f, fieldnames=self.header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)


def write_table(path: str | os.PathLike, rows: list[Mapping[str, object]]) -> None:
    """Writes a whole CSV atomically; the header is the union of keys in order of first appearance."""
    header: list[str] = []
    for row in rows:
        header.extend(k for k in row if k not in header)
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: format_value(v) for k, v in row.items()})
