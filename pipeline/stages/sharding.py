"""Extraction into a cache, in one process or split over the ranks of a torchrun job.

One process (no process group joined): the cache is reused when current, else computed and saved, as always.

Under torchrun (`torchrun --nproc_per_node=N save_cm_score.py --config ...`; the entry point joins the group,
pipeline/stages/cli.py) each rank takes one contiguous slice of the item list made of whole loader batches
(`shard_bounds`): the very batches one process forms, so every row comes out of the same model call as alone and
the merged arrays are the ones one process writes, bit for bit. Each rank writes its slice beside the cache:

    <cache stem>.shard-<rank>-of-<world size>.npz
        the slice's arrays and its own cache record (what made it, its items and their files' identity, the items
        skipped: pipeline/stages/cache.py), plus `shard` = (rank, world size, first item, end, items in the list),
        `shard_of` = the digest of the cache it belongs to (its name, what makes it, its whole list),
        `skip_reasons` = why each skipped item was skipped

Rank 0 waits for every rank's shard (`engine.distributed.settle`: a rank that failed stops all of them, and the
job says so in one line from rank 0), merges them in list order into the usual cache (atomically, holding the
merged arrays and one shard at a time) and removes them. The other ranks get None and go on: what follows the
cache in a stage (speaker models from lists, score files) is rank 0's.

Resume: a shard is a cache of its slice. When a job stops after some ranks wrote theirs (a rank failed on a bad
file, was killed, the job was interrupted), the next job reuses every shard that is still current: same cache, same
slice and number of ranks, same front-end, files unchanged (the rules of every cache); anything else recomputes
that slice, and rank 0's log says why.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from common.errors import DamagedFileError, InputError
from common.io import ArrayFile
from engine.distributed import DistContext, joined, settle
from pipeline.stages.cache import RECORD_ARRAYS, Inputs, fingerprint, load_cache, save_cache
from pipeline.stages.extract import Extracted
from pipeline.stages.outputs import CacheSpec, cached_or_none, require_extracted

log = logging.getLogger(__name__)

# Extracts the given (item, audio path) pairs: a stage's front-end, crop and loader settings around `extract`
Compute = Callable[[list[tuple[str, str]]], Extracted]
SHARD_ARRAYS = ("shard", "shard_of", "skip_reasons")    # what a shard holds beyond a cache's arrays


def shard_bounds(n: int, world: int, rank: int, batch_size: int) -> tuple[int, int]:
    """Items [first, end) of `rank`'s slice of `n`: whole batches of `batch_size`, in rank order, as even as whole
    batches allow (ranks differ by one batch at most; a rank may get none when there are fewer batches than ranks)."""
    batches = -(-n // batch_size)
    return (min(n, batches * rank // world * batch_size), min(n, batches * (rank + 1) // world * batch_size))


def shard_path(cache: Path, rank: int, world: int) -> Path:
    return cache.with_name(f"{cache.stem}.shard-{rank}-of-{world}{cache.suffix}")


def shard_files(cache: Path) -> list[Path]:
    """The shards of `cache` on disk, whatever the number of ranks that wrote them."""
    name = re.compile(rf"{re.escape(cache.stem)}\.shard-\d+-of-\d+{re.escape(cache.suffix)}")
    if not cache.parent.is_dir():
        return []
    return sorted(p for p in cache.parent.iterdir() if name.fullmatch(p.name))


def cache_identity(spec: CacheSpec) -> str:
    """The digest a shard names its cache by: the cache's file name, what makes it and its whole list of items
    (ids and audio paths; the files' identity is checked per slice)."""
    digest = hashlib.sha256()
    for part in (spec.path.name, fingerprint(**spec.made_by), "\n".join(spec.inputs.ids), spec.inputs.paths_digest()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def extract_cached(spec: CacheSpec, cfg: Mapping, label: str, compute: Compute, *, force: bool, batch_size: int,
                   rows: str = "") -> dict[str, np.ndarray] | None:
    """The cache `spec` describes, reused when current (cached_or_none; `cfg["skip_bad_audio"]`, false when
    absent), else computed by `compute` and saved: its arrays ("ids", the data arrays, "skipped"). Under torchrun
    each rank computes its shard (`batch_size`: the loader batch `compute` uses, which the slices follow) and rank 0
    merges them; ranks other than 0 get None (see the module docstring). `rows`: what a row is ("embeddings"), to
    log `LABEL: N ROWS -> PATH` once computed (nothing when empty)."""
    ctx = joined()
    if not ctx.distributed:
        arrays = cached_or_none(spec, cfg, force, label)
        if arrays is None:
            arrays = _save(spec, label, compute(spec.inputs.items()), rows)
        _remove_shards(spec.path)
        return arrays
    return _sharded(ctx, spec, cfg, label, compute, force, batch_size)


def _save(spec: CacheSpec, label: str, out: Extracted, rows: str) -> dict[str, np.ndarray]:
    require_extracted(out, spec, label)
    ids = np.asarray(out.ids, dtype=str)
    save_cache(spec.path, spec.made_by, spec.inputs, {"ids": ids, **out.arrays}, skipped=out.skipped_ids)
    if rows:
        log.info(f"{label}: {len(ids)} {rows} -> {spec.path}")
    return {"ids": ids, **out.arrays, "skipped": np.asarray(out.skipped_ids, dtype=str)}


def _remove_shards(cache: Path) -> None:
    """Shards are only a way to the cache: once it is written (or found current) they go."""
    for path in shard_files(cache):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _sharded(ctx: DistContext, spec: CacheSpec, cfg: Mapping, label: str, compute: Compute, force: bool,
             batch_size: int) -> dict[str, np.ndarray] | None:
    arrays, error = None, None
    if ctx.is_main:          # rank 0 reads the cache and decides for everyone (one reader, one answer)
        try:
            arrays = cached_or_none(spec, cfg, force, label)
            if arrays is None:
                _say_foreign_shards(spec.path, ctx.world_size, label)
        except BaseException as e:  # noqa: BLE001 - carried to every rank by settle
            error = e
    if settle(ctx, f"{label}: cache", error, arrays is not None)[0]:
        if ctx.is_main:
            _remove_shards(spec.path)
        return arrays
    first, end = shard_bounds(len(spec.inputs.ids), ctx.world_size, ctx.rank, batch_size)
    note, error = None, None
    try:
        note = _own_shard(ctx, spec, cfg, compute, force, first, end)
    except BaseException as e:  # noqa: BLE001 - carried to every rank by settle
        error = e
    notes = settle(ctx, f"{label}: shards", error, note)
    if not ctx.is_main:
        return None
    log.info(f"{label}: {ctx.world_size} ranks: {'; '.join(notes)}")
    return _merge(spec, label, ctx.world_size)


def _say_foreign_shards(cache: Path, world: int, label: str) -> None:
    foreign = [p for p in shard_files(cache) if not p.name.endswith(f"-of-{world}{cache.suffix}")]
    if foreign:
        log.info(f"{label}: {len(foreign)} shard(s) of a job with another number of ranks are not reused "
                 f"(e.g. {foreign[0].name}; this job has {world}); they are removed once the cache is written")


def _own_shard(ctx: DistContext, spec: CacheSpec, cfg: Mapping, compute: Compute, force: bool, first: int,
               end: int) -> str:
    """This rank's shard, reused when current, else computed and written; a few words on which, for rank 0's log."""
    path = shard_path(spec.path, ctx.rank, ctx.world_size)
    part = Inputs(spec.inputs.ids[first:end], spec.inputs.paths[first:end], spec.inputs.identity[first:end])
    record = np.asarray([ctx.rank, ctx.world_size, first, end, len(spec.inputs.ids)], dtype=np.int64)
    whole = cache_identity(spec)
    why = "" if force else why_shard_stale(path, spec, part, record, whole, bool(cfg.get("skip_bad_audio", False)))
    if why is None:
        return f"rank {ctx.rank} reused {path.name} (items {first}-{end})"
    out = compute(part.items()) if end > first else Extracted([], {})
    save_cache(path, spec.made_by, part, {"ids": np.asarray(out.ids, dtype=str), **out.arrays, "shard": record,
                                          "shard_of": np.asarray(whole),
                                          "skip_reasons": np.asarray(out.skipped, dtype=str)},
               skipped=out.skipped_ids)
    if end == first:
        return f"rank {ctx.rank} had no items (fewer batches than ranks)"
    return f"rank {ctx.rank} computed items {first}-{end}" + (f" ({path.name}: {why})" if why else "")


def why_shard_stale(path: Path, spec: CacheSpec, part: Inputs, record: np.ndarray, whole: str,
                    skip_bad_audio: bool) -> str | None:
    """Why the shard at `path` cannot stand for this rank's slice now (None: it can; "" when there is none): the
    rules of every cache for its slice (front-end, items, files, skipping, damage), then whether it is this slice
    of this cache."""
    arrays, why = load_cache(path, spec.made_by, part, skip_bad_audio, arrays=False)
    if arrays is None:
        return why
    try:
        with ArrayFile(path) as stored:
            if any(k not in stored for k in SHARD_ARRAYS):
                return "damaged (no shard record)"
            old, of = stored["shard"].tolist(), str(stored["shard_of"])
    except DamagedFileError as e:
        return str(e).removeprefix(f"{path}: ")
    if of != whole:
        return "a slice of another list (the cache's utterance list changed elsewhere)"
    if old != record.tolist():
        return f"another slice (items {old[2]}-{old[3]} of {old[4]}, now {record[2]}-{record[3]} of {record[4]})"
    return None


def _merge(spec: CacheSpec, label: str, world: int) -> dict[str, np.ndarray]:
    """The shards, in rank order, as the cache one process writes; the shards removed. Reads the small arrays of
    every shard first, then fills each data array, allocated once at its full size, one shard at a time."""
    paths, whole = [shard_path(spec.path, r, world) for r in range(world)], cache_identity(spec)
    ids: list[str] = []
    skipped: list[str] = []
    reasons: list[str] = []
    counts: list[int] = []
    for rank, path in enumerate(paths):
        with ArrayFile(path) as stored:
            record = stored["shard"].tolist() if "shard" in stored else None
            if str(stored["shard_of"]) != whole or record is None or record[:2] != [rank, world]:
                raise InputError(f"{path}: replaced while the job ran (not rank {rank}'s shard of {spec.path.name}); "
                                 f"run again")
            counts.append(len(stored["ids"]))
            ids += stored["ids"].tolist()
            skipped += stored["skipped"].tolist()
            reasons += stored["skip_reasons"].tolist()
    require_extracted(Extracted(ids, {}, reasons), spec, label)
    arrays: dict[str, np.ndarray] = {}
    row = 0
    for path, count in zip(paths, counts, strict=True):
        if not count:
            continue
        with ArrayFile(path) as stored:
            names = [k for k in stored.files if k not in RECORD_ARRAYS and k not in SHARD_ARRAYS and k != "ids"]
            if arrays and sorted(names) != sorted(arrays):
                raise InputError(f"{path}: holds arrays {sorted(names)}, the other shards {sorted(arrays)}; run again")
            for name in names:
                part = stored[name]
                if name not in arrays:
                    arrays[name] = np.empty((len(ids), *part.shape[1:]), dtype=part.dtype)
                arrays[name][row:row + count] = part
                del part
        row += count
    merged = np.asarray(ids, dtype=str)
    save_cache(spec.path, spec.made_by, spec.inputs, {"ids": merged, **arrays}, skipped=skipped)
    _remove_shards(spec.path)
    log.info(f"{label}: {len(ids)} items from {world} shards -> {spec.path}")
    return {"ids": merged, **arrays, "skipped": np.asarray(skipped, dtype=str)}
