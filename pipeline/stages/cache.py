"""Cached stage outputs that know what produced them, and are reused only when all of it is unchanged.

A cached `.npz` (embeddings, CM scores, speaker models) stores, beside its arrays:
- `made_by`: JSON of what computed it (front-end arch, model options, checkpoint SHA-256, crop; enrolment form);
- the inputs it was computed from: one entry per item (utterance, or speaker for concatenated enrolment),
  with the audio file's identity when the run started (common/file_identity.py): path, size, modification
  time, change time and inode number;
- the items skipped as unreadable (`skip_bad_audio`).

A stage reuses the file only when `made_by` is equal, the list of items is the same, every file has the same
path and identity, and nothing was skipped unless skipping is on now. Otherwise it recomputes and says why,
naming what changed and one file. Downstream stages use the same check to refuse outputs made by something
else than what the config names.

The identity, and its trade-off: (size, mtime) alone let an audio file replaced by different audio of the same
size, with its modification time copied back (`touch -r`), pass as unchanged, and its stale score was kept.
The change time, which the kernel sets on every write and no call sets back, and the inode number close that:
a rewrite in place moves the change time, a file put in the place of another has another inode. It costs
little more (the same `os.stat`: the whole check takes 0.8 s for the 122k-file LA lists and 4.8 s for a million
files, against 0.7 s and 3.7 s with (size, mtime), warm, on the shared 2-core dev box; docs/benchmarks.md).
Its price is needless recomputation, once, when files change identity but not content: copying the corpus
(`cp -a` and `rsync -a` too), restoring a backup, `chmod` / `chown`, a new hard link, remounting a file system
without stable inode numbers. A content hash would avoid that but reads the corpus (~7 GB for LA) at every
stage; a sampled hash still costs an open and a few reads per file (minutes on a cold or network disk) and
can be fooled by a change outside its samples. The stat-based identity cannot see a rewrite within one clock
tick of the stat, or one on a file system without a change time (FAT/exFAT).

Damage: a cache cut short, with a flipped bit (every array's zip CRC is checked as it is read, and `verify`
reads all of them for a check that loads no data), or that is not an .npz at all counts as not current: the
stage that writes it logs "recomputing <path>: damaged (...)" and recomputes; a reader stops with one line
naming the file and the stage that makes it (pipeline/stages/outputs.py). A valid .npz without the cache
record (another tool's, or from before cache versions) is treated the same way.

In memory, within one training run: `ScoreMemo` keeps what the per-epoch dev evaluation scored, keyed by a
fingerprint of the weights (`weights_fingerprint`), so the recipe's final scoring of the selected epoch reuses
those dev scores instead of computing them a second time. Within one process that runs several steps (demo.py):
`OutputMemo`, switched on by `remembering_outputs()`, keeps each front-end's output on each whole utterance, keyed
by the model (`model_fingerprint`) and the audio file's identity, so that a later step scoring the same audio with
the same weights (the CM's dev and eval scores again in the SASV stage, the joint run's starting point) reuses
them; pipeline/stages/extract.py consults it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from common.errors import DamagedFileError
from common.file_identity import describe_changes, identities
from common.io import ArrayFile, save_arrays

CACHE_VERSION = 3    # 2: inputs and their file identity, skipped items, full SHA-256 of checkpoints;
                     # 3: file identity with change time and inode (common/file_identity.py)


def fingerprint(**parts: Any) -> str:
    """A canonical JSON string of what produced an output."""
    return json.dumps(parts, sort_keys=True, default=str)


@dataclass(frozen=True)
class Inputs:
    """The items a cached output is computed from, and each one's audio file as found when the run started."""
    ids: list[str]
    paths: list[str]
    identity: np.ndarray = field(repr=False)     # (n, 4) int64: common.file_identity.FIELDS per path

    @classmethod
    def of(cls, items: Sequence[tuple[str, str | os.PathLike]]) -> "Inputs":
        """Stats every file once (a row of -1 for a file that is not there)."""
        ids, paths = [u for u, _ in items], [str(p) for _, p in items]
        return cls(ids, paths, identities(paths))

    def paths_digest(self) -> str:
        return hashlib.sha256("\n".join(self.paths).encode()).hexdigest()

    def items(self) -> list[tuple[str, str]]:
        return list(zip(self.ids, self.paths, strict=True))


def save_cache(path: Path, made_by: Mapping, inputs: Inputs, arrays: Mapping[str, np.ndarray],
               skipped: Sequence[str] = ()) -> None:
    """Writes `arrays` with what made them (atomically; see the module docstring)."""
    save_arrays(path, cache_version=np.asarray(CACHE_VERSION), made_by=np.asarray(fingerprint(**made_by)),
                input_ids=np.asarray(inputs.ids, dtype=str), input_paths_sha256=np.asarray(inputs.paths_digest()),
                input_identity=inputs.identity, skipped=np.asarray(list(skipped), dtype=str), **arrays)


RECORD_ARRAYS = (   # the cache record beside the data arrays
    "cache_version", "made_by", "input_ids", "input_paths_sha256", "input_identity", "skipped")


def _changed_keys(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += _changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(prefix + k)
    return keys


def _version(stored: ArrayFile) -> str | None:
    """Why `stored` is not a cache of this version (None when it is)."""
    if "cache_version" not in stored:
        return "holds no cache record (not written by a stage of this toolkit, or by one from before cache versions)"
    version = int(stored["cache_version"])
    if version != CACHE_VERSION:
        age = "an older" if version < CACHE_VERSION else "a newer"
        return f"written by {age} version of the toolkit (cache version {version}, this one uses {CACHE_VERSION})"
    missing = [k for k in RECORD_ARRAYS if k not in stored]
    if missing:
        return f"damaged (cache record without {', '.join(missing)})"
    return None


def why_stale(path: Path, stored: ArrayFile, made_by: Mapping, inputs: Inputs, skip_bad_audio: bool) -> str | None:
    """Why the cached `stored` arrays cannot stand for an output computed now (None: they can)."""
    why = _version(stored)
    if why is not None:
        return why
    old = json.loads(str(stored["made_by"]))
    if old != json.loads(fingerprint(**made_by)):
        return f"made by something else: {', '.join(_changed_keys(old, json.loads(fingerprint(**made_by))))} changed"
    old_ids = stored["input_ids"].tolist()
    if old_ids != inputs.ids:
        before, now = set(old_ids), set(inputs.ids)
        added, removed = [u for u in inputs.ids if u not in before], [u for u in old_ids if u not in now]
        if not added and not removed:
            return "the list of items is in another order or has repeats"
        shown = ", ".join(f"+{u}" for u in added[:2]) + ("" if not added or not removed else ", ") + \
            ", ".join(f"-{u}" for u in removed[:2])
        return f"the list of items changed: {len(added)} added, {len(removed)} removed ({shown})"
    if str(stored["input_paths_sha256"]) != inputs.paths_digest():
        return "the audio files are read from another place (database or enr_audio changed)"
    old_identity = stored["input_identity"]
    if old_identity.shape != inputs.identity.shape:
        return f"damaged (input_identity has shape {old_identity.shape}, expected {inputs.identity.shape})"
    changed = describe_changes(old_identity, inputs.identity, inputs.paths, "audio file")
    if changed:
        return changed
    skipped = stored["skipped"].tolist()
    if skipped and not skip_bad_audio:
        return (f"{len(skipped)} unreadable file(s) were skipped when it was made (e.g. {skipped[0]}) "
                f"and skip_bad_audio is now off")
    return None


def load_cache(path: Path, made_by: Mapping, inputs: Inputs, skip_bad_audio: bool, arrays: bool = True
               ) -> tuple[dict[str, np.ndarray] | None, str]:
    """(the cached arrays, "") when `path` is current; (None, why not) otherwise ("" when there is no file).

    `arrays=False` checks without decoding the (large) data arrays and returns ({}, "") when current; it still
    reads them once to check their CRCs, so that "current" also means "readable" (a flipped bit in the data
    would otherwise pass the check and stop the run later). A damaged file gives "damaged (...)"."""
    if not path.exists():
        return None, ""
    try:
        with ArrayFile(path) as stored:
            why = why_stale(path, stored, made_by, inputs, skip_bad_audio)
            if why is not None:
                return None, why
            if not arrays:
                stored.verify()
                return {}, ""
            data = {k: stored[k] for k in stored.files if k not in RECORD_ARRAYS}
            data["skipped"] = stored["skipped"]
            return data, ""
    except DamagedFileError as e:
        return None, str(e).removeprefix(f"{path}: ")
    except (ValueError, KeyError, TypeError) as e:   # a record that parses but is not ours (bad JSON, shapes)
        return None, f"damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__})"


# ---------------------------------------------------------------------------------------------
# In memory: scores of the weights they were computed with
# ---------------------------------------------------------------------------------------------
T = TypeVar("T")


def weights_fingerprint(module: nn.Module) -> str:
    """A digest of every entry of `module.state_dict()`: its name, dtype, shape and bytes, parameters and buffers
    alike (BatchNorm running statistics, which precise BN rewrites before each evaluation, change scores as much as
    weights do). Any change of any weight or buffer changes it; equal weights give it on any device.
    Costs one pass over the weights (each tensor copied to the CPU in turn): milliseconds for the small front-ends,
    about 0.7 s per 100M float32 weights on one CPU core (a few seconds for an SSL encoder), against minutes for
    scoring a dev list."""
    digest = hashlib.blake2b(digest_size=32)
    for name, value in module.state_dict().items():
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())   # any dtype (bf16 too) as raw bytes
        else:   # a module's `extra_state`: whatever it chose to store
            digest.update(f"{name}\0{type(value).__name__}\0{value!r}\0".encode())
    return digest.hexdigest()


class ScoreMemo:
    """Scoring results remembered with the fingerprint of the weights that produced them.

    Why: a training run scores dev after every evaluated epoch, and `best.pt` is written right after the epoch
    whose scores selected it; the recipe then loads those weights and scores dev again to write its score files and
    results.json. With the memo the selected epoch's dev scores are computed once: the task's `evaluate` scores
    through it, the final scoring asks it again, and gets the stored result only when the loaded weights are
    bit for bit the evaluated ones (otherwise, e.g. a resumed run whose best epoch was evaluated before the
    resume, it computes as before). What is written does not change.

    `key`: everything besides the weights that the result depends on (the split, the device type). One result is
    kept per key and fingerprint, i.e. per evaluated epoch: score arrays, not embeddings."""

    def __init__(self) -> None:
        self._results: dict[tuple[Hashable, str], Any] = {}

    def get_or_compute(self, key: Hashable, module: nn.Module, compute: Callable[[], T]) -> T:
        """The result stored under `key` for `module`'s current weights, else `compute()` (stored for them)."""
        entry = (key, weights_fingerprint(module))
        if entry not in self._results:
            self._results[entry] = compute()
        return self._results[entry]


def model_fingerprint(model: nn.Module) -> str:
    """`weights_fingerprint` plus everything else that decides what the model computes: each submodule's class and
    its plain settings (an LCNN's `cmn`, a layer's stride or padding, `training`), which a state dict does not hold;
    two models with equal weights but another option (features normalised or not) give different fingerprints."""
    digest = hashlib.blake2b(weights_fingerprint(model).encode(), digest_size=32)
    for name, module in model.named_modules():
        settings = sorted((k, repr(v)) for k, v in vars(module).items()
                          if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, type(None))))
        digest.update(f"{name}\0{type(module).__module__}.{type(module).__qualname__}\0{settings!r}\0".encode())
    return digest.hexdigest()


class OutputMemo:
    """Model outputs on whole utterances, remembered with the model and the audio file that produced them.

    Why: the demo scores the same audio with the same weights in several steps: the CM step scores dev and eval with
    its selected epoch, and the SASV stage then scores them again with that very model read back from cm_model.pt;
    the joint run evaluates its starting point, the front-ends the stage has just scored dev with; the adapted
    speaker model embedded dev for its selection. Remembered outputs are returned instead of being recomputed, and
    they are the values a new computation would give: an entry is used only for a model whose weights, buffers,
    classes and settings are bit for bit the same (`model_fingerprint`, taken in eval mode only: dropout draws), the
    same audio file unchanged (path and `common.file_identity` identity), the same number of intra-op threads and
    autocast off. Only whole-utterance inputs (crop `full`) are remembered: each is one model call of its own,
    whereas a batch of fixed-length crops may take other kernels than the same rows in another batch.

    Size: one output row per (model, utterance), e.g. 129 floats for the demo's CM; it is meant for a run over a
    corpus of demo size, hence opt-in (`remembering_outputs`), never a default of the stage scripts."""

    def __init__(self) -> None:
        self._outputs: dict[tuple[str, str, tuple[int, ...]], tuple[torch.Tensor, ...]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, model_key: str, path: str, identity: Sequence[int]) -> tuple[torch.Tensor, ...] | None:
        found = self._outputs.get((model_key, path, tuple(int(v) for v in identity)))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, model_key: str, path: str, identity: Sequence[int], outputs: tuple[torch.Tensor, ...]) -> None:
        self._outputs[(model_key, path, tuple(int(v) for v in identity))] = tuple(
            t.detach().to("cpu", copy=True) for t in outputs)

    def __len__(self) -> int:
        return len(self._outputs)


_active_memo: OutputMemo | None = None


@contextlib.contextmanager
def remembering_outputs() -> Iterator[OutputMemo]:
    """Within the block, whole-utterance model outputs are remembered and reused (`OutputMemo`); nested blocks share
    the outer memo. Off by default: a stage script scores each utterance once anyway."""
    global _active_memo
    if _active_memo is not None:
        yield _active_memo
        return
    _active_memo = OutputMemo()
    try:
        yield _active_memo
    finally:
        _active_memo = None


def active_output_memo() -> OutputMemo | None:
    """The memo of the enclosing `remembering_outputs()` block, or None outside one."""
    return _active_memo
