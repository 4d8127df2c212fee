"""Run a front-end once over a list of audio files, with progress, clean errors and optional skipping.

Audio is decoded and cropped in DataLoader workers (when `num_workers` > 0), and each batch is packed there into
one tensor, so it crosses to the main process as one shared-memory block and the main process only runs the
model. A bad file is reported back as a value rather than raised inside the worker, so the user sees one line
naming the file instead of a worker traceback.

Model calls: `first` and `even` crops all have one length, so a batch of utterances is one call. `full`
utterances differ in length and no model here masks padding (instance norm, statistics pooling), so padding
would change an embedding: each utterance is its own call. Rows come back in the input order either way.

Whole utterances and oneDNN: PyTorch's CPU convolutions go through oneDNN, which builds (JIT-compiles) a primitive
for every new input shape and caches it. A batch of fixed crops repeats one shape; whole utterances almost never
do, so a small model spends much of a `full` pass building primitives. A model whose class says
`whole_utterance_convolutions = "aten"` (measured: bench/variable_length.py, docs/benchmarks.md) is run on whole
utterances with oneDNN off, on ATen's im2col + BLAS convolutions: the same values within float rounding (4e-7),
1.1-1.4x faster on LA-like lengths (ECAPA-TDNN, ResNetSE34L, the LCNNs); models with wider convolutions
(ResNetSE34V2, SKA-TDNN, MFA-Conformer, AASIST) are faster on oneDNN even so and keep it. `convolution_path` is the
one switch, used by `extract` and verify.py alike, so a trial verified alone still gets the corpus's very bits.

Within `pipeline.stages.cache.remembering_outputs()` (demo.py), a `ModelCall` on whole utterances is first looked up
in the memo of model outputs: an utterance this very model (same weights and settings) already scored is neither
decoded nor run again (pipeline/stages/cache.py, `OutputMemo`).
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from common.allocator import freed_memory_retained
from common.file_identity import identities
from common.model_contract import Countermeasure, SpeakerModel
from data.audio import SAMPLE_RATE, AudioError, CropSpec, load_audio
from engine.distributed import is_main_process
from pipeline.stages.cache import OutputMemo, active_output_memo, model_fingerprint

EmbedFn = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
# `full` utterances are embedded one per call whatever the batch size, so a decoding batch only amortises the
# transfer from a worker; 8 keeps a batch of long utterances (VoxCeleb has 2-minute ones) at tens of MB.
FULL_DECODE_BATCH = 8
DEFAULT_BATCH = 16


@dataclass
class Extracted:
    ids: list[str]
    arrays: dict[str, np.ndarray]
    skipped: list[str] = field(default_factory=list)  # "UTT: reason" for files skipped on request

    @property
    def skipped_ids(self) -> list[str]:
        return [s.split(": ", 1)[0] for s in self.skipped]


class ModelCall:
    """An `EmbedFn` that says which model it runs: `name(model(wave))`, the model's outputs (a tensor or a tuple of
    them) turned into the named (B, ...) outputs. Knowing the model lets `extract` reuse what the same model already
    computed on the same audio (`remembering_outputs`); a plain function is always run."""

    def __init__(self, model: nn.Module, device: torch.device | str,
                 name: Callable[[tuple[torch.Tensor, ...]], Mapping[str, torch.Tensor]]):
        self.model, self.device, self.name = model, device, name

    def run(self, wave: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's raw outputs, always as a tuple."""
        out = self.model(wave.to(self.device))
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def __call__(self, wave: torch.Tensor) -> Mapping[str, torch.Tensor]:
        return self.name(self.run(wave))

    def memo_key(self) -> str | None:
        """What the model's outputs depend on besides the input (None: not to be remembered: a module in training
        mode draws dropout masks, autocast computes in another precision)."""
        if any(m.training for m in self.model.modules()) or torch.is_autocast_enabled(torch.device(self.device).type):
            return None
        return f"{model_fingerprint(self.model)}|threads {torch.get_num_threads()}|{self.device}"


def convolution_path(embed_fn: EmbedFn, crop: CropSpec) -> contextlib.AbstractContextManager:
    """Where `embed_fn`'s convolutions run for inputs cropped by `crop` (module docstring): oneDNN (PyTorch's
    default), or ATen's own when the crop is `full` and the model's class says `whole_utterance_convolutions =
    "aten"`: their lengths never repeat, and oneDNN builds a primitive per length."""
    model = embed_fn.model if isinstance(embed_fn, ModelCall) else None
    if crop.policy == "full" and getattr(model, "whole_utterance_convolutions", "onednn") == "aten":
        return onednn_enabled(False)
    return contextlib.nullcontext()


@contextlib.contextmanager
def onednn_enabled(enabled: bool) -> Iterator[None]:
    """PyTorch's oneDNN switch, set for the scope and restored after it (`torch.backends.mkldnn.flags` would also
    reset its deterministic and TF32 settings)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


@dataclass(frozen=True)
class InputFloor:
    """The shortest input a model accepts (its `min_samples`), checked per file where the audio is read, so
    that a too-short file is named (and skippable with skip_bad_audio) instead of failing inside the model."""
    samples: int = 1
    model: str = "the model"

    @classmethod
    def of(cls, model: SpeakerModel | Countermeasure, name: str | None = None) -> "InputFloor":
        """The floor of a built model (every registered model states `min_samples`: common.model_contract), named
        `name` (its registry name) or else by its class."""
        return cls(model.min_samples, name or type(model).__name__)


def model_input(wave: np.ndarray, crop: CropSpec, floor: InputFloor = InputFloor(), path: str = "") -> np.ndarray:
    """The (crops, samples) float32 model input of one utterance under `crop` ('first' and 'even' repeat-pad
    short audio to their length; 'full' takes the utterance as it is); AudioError when shorter than `floor`."""
    x = crop.windows(wave)
    if x.shape[1] < floor.samples:
        raise AudioError(f"{path}: {len(wave)} samples ({len(wave) / SAMPLE_RATE:.3f} s) after loading; {floor.model} "
                         f"needs at least {floor.samples} ({floor.samples / SAMPLE_RATE:.3f} s) per input")
    return x


def average_crops(outputs: Mapping[str, torch.Tensor], crops: int) -> dict[str, torch.Tensor]:
    """Each named (B * crops, ...) output of a model call on `crops` consecutive windows per utterance (a crop's
    `windows`, utterance after utterance) as (B, ...) float32: the mean over each utterance's windows (the
    voxceleb_trainer test-time average of `even` crops). The one place crops are averaged: the stages' extraction
    and verify.py both come here, so a trial verified alone gets the corpus's very numbers."""
    return {name: value.detach().float().reshape(-1, crops, *value.shape[1:]).mean(1)
            if crops > 1 else value.detach().float() for name, value in outputs.items()}


@dataclass
class _Batch:
    """The readable utterances of one loader batch, their model inputs packed back to back in one tensor."""
    ids: list[str]
    waves: torch.Tensor            # (sum of crops x samples,) float32, utterance after utterance
    lengths: list[int]             # samples per crop, per utterance
    crops: int                     # crops per utterance (the same for all)
    errors: list[tuple[str, str]]  # (utt, one-line message) of the files that could not be read
    size: int                      # utterances in the loader batch, readable or not

    def utterances(self) -> Iterator[torch.Tensor]:
        """Each utterance's (crops, samples) input, a view into `waves`."""
        start = 0
        for n in self.lengths:
            yield self.waves[start:start + n * self.crops].view(self.crops, n)
            start += n * self.crops


class _AudioItems(Dataset):
    """Decodes and crops one utterance; a read error comes back as a message (see the module docstring)."""

    def __init__(self, items: Sequence[tuple[str, str]], crop: CropSpec, floor: InputFloor):
        self.items, self.crop, self.floor = items, crop, floor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray | None, str | None]:
        utt, path = self.items[i]
        try:
            return utt, model_input(load_audio(path), self.crop, self.floor, path), None
        except AudioError as e:
            return utt, None, str(e)


def _pack(batch: list[tuple[str, np.ndarray | None, str | None]]) -> _Batch:
    """Collates in the worker: one flat tensor for the whole batch (one shared-memory transfer, no per-item
    tensors for the main process to concatenate)."""
    good = [(utt, x) for utt, x, error in batch if error is None]
    errors = [(utt, error) for utt, _, error in batch if error is not None]
    waves = np.concatenate([x.ravel() for _, x in good]) if good else np.zeros(0, np.float32)
    crops = good[0][1].shape[0] if good else 1
    return _Batch([u for u, _ in good], torch.from_numpy(waves), [x.shape[1] for _, x in good], crops, errors,
                  len(batch))


def _single_thread_worker(worker_id: int) -> None:
    """A decoding worker must not start its own intra-op threads: they would compete with the model's threads
    for the same cores (DataLoader sets this too; stated here so it does not depend on that)."""
    torch.set_num_threads(1)


EachFn = Callable[[str, torch.Tensor], Mapping[str, torch.Tensor]]


def _embed_batch(batch: _Batch, embed_fn: EmbedFn, crop: CropSpec, each: EachFn | None = None
                 ) -> dict[str, torch.Tensor]:
    """`embed_fn` on the batch's inputs -> per-utterance outputs (crops averaged), rows in batch order. `each`
    (utterance id, input) replaces `embed_fn` for whole utterances (the memo's way of knowing which one it is)."""
    if crop.policy == "full":  # lengths differ: one call per utterance (padding would change the embedding)
        with convolution_path(embed_fn, crop):
            outs = [embed_fn(x) if each is None else each(utt, x) for utt, x in zip(batch.ids, batch.utterances(),
                                                                                      strict=True)]
        out = {name: torch.cat([o[name] for o in outs]) for name in outs[0]}
    else:                      # one length: the whole batch in one call
        out = embed_fn(batch.waves.view(-1, batch.lengths[0]))
    return average_crops(out, batch.crops)


class _Rows:
    """The outputs of `extract`, written batch by batch into arrays allocated once for every item (their shapes and
    dtypes from the first batch): a million-file list never holds its rows twice, as per-batch pieces concatenated
    at the end would (two copies of every embedding at the peak: 0.9 GB for ASVspoof 5 eval's 680k 160-d ones).
    Rows of skipped files are cut off at the end (one copy, only then)."""

    def __init__(self, capacity: int):
        self.capacity, self.count, self.out = capacity, 0, {}

    def add(self, batch: Mapping[str, torch.Tensor]) -> None:
        n = 0
        for name, value in batch.items():
            value = value.cpu().numpy()
            if name not in self.out:
                self.out[name] = np.empty((self.capacity, *value.shape[1:]), dtype=value.dtype)
            self.out[name][self.count:self.count + len(value)] = value
            n = len(value)
        self.count += n

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v if self.count == self.capacity else v[:self.count].copy() for k, v in self.out.items()}


def extract(items: Sequence[tuple[str, str | os.PathLike]], embed_fn: EmbedFn, crop: CropSpec, *,
            batch_size: int = DEFAULT_BATCH, num_workers: int = 0, desc: str = "embedding",
            skip_bad_audio: bool = False, floor: InputFloor = InputFloor()) -> Extracted:
    """Applies `embed_fn` ((B, T) waveforms -> named (B, ...) outputs) to every (utt, path); crops are averaged.

    `batch_size` utterances are decoded per batch and, for `first`/`even` crops, embedded in one call (`full`:
    one call per utterance, at most FULL_DECODE_BATCH decoded per batch).
    A file that cannot be read, or is shorter than the model's `floor` (InputFloor.of(model)), stops the run
    with its name, or is skipped and listed when `skip_bad_audio`. Rows of the returned arrays follow `ids`,
    which keep the input order.
    """
    items = [(u, str(p)) for u, p in items]
    memo = active_output_memo()
    if memo is not None and crop.policy == "full" and isinstance(embed_fn, ModelCall) \
            and len({u for u, _ in items}) == len(items):      # an id listed twice keeps the plain path
        key = embed_fn.memo_key()
        if key is not None:
            return _extract_remembered(items, embed_fn, crop, memo, key, batch_size=batch_size,
                                       num_workers=num_workers, desc=desc, skip_bad_audio=skip_bad_audio, floor=floor)
    return _extract(items, embed_fn, crop, batch_size=batch_size, num_workers=num_workers, desc=desc,
                    skip_bad_audio=skip_bad_audio, floor=floor)


def _extract(items: list[tuple[str, str]], embed_fn: EmbedFn, crop: CropSpec, *, batch_size: int, num_workers: int,
             desc: str, skip_bad_audio: bool, floor: InputFloor, each: EachFn | None = None) -> Extracted:
    """`extract` without the memo (`each`: see `_embed_batch`)."""
    if crop.policy == "full":
        batch_size = min(batch_size, FULL_DECODE_BATCH)
    loader = DataLoader(_AudioItems(items, crop, floor), batch_size=max(1, batch_size),
                        num_workers=num_workers, collate_fn=_pack, shuffle=False,
                        worker_init_fn=_single_thread_worker if num_workers > 0 else None)
    ids: list[str] = []
    rows = _Rows(len(items))
    skipped: list[str] = []
    # freed feature maps reused batch after batch (common/allocator.py); the heap is handed back when it ends
    with torch.inference_mode(), freed_memory_retained(), \
            tqdm(total=len(items), desc=desc, unit="utt", file=sys.stderr,   # rank 0's bar only
                 disable=None if is_main_process() else True, leave=False) as bar:
        for batch in loader:
            for utt, error in batch.errors:
                if not skip_bad_audio:
                    raise AudioError(error)
                skipped.append(f"{utt}: {error}")
            if batch.ids:
                rows.add(_embed_batch(batch, embed_fn, crop, each))
                ids.extend(batch.ids)
            bar.update(batch.size)
    arrays = rows.arrays()
    if skipped:
        print(f"{desc}: skipped {len(skipped)} unreadable file(s), first: {skipped[0]}", file=sys.stderr)
    return Extracted(ids, arrays, skipped)


def _extract_remembered(items: list[tuple[str, str]], call: ModelCall, crop: CropSpec, memo: OutputMemo, key: str,
                        **kwargs) -> Extracted:
    """`extract` on whole utterances with a memo: the remembered ones take their outputs from it, the others are
    extracted as usual (their raw outputs remembered on the way); rows in the input order, as `extract` gives."""
    files = identities([path for _, path in items])
    found = [memo.get(key, path, row) for (_, path), row in zip(items, files, strict=True)]
    pending = [i for i, raw in enumerate(found) if raw is None]
    where = {items[i][0]: (items[i][1], files[i]) for i in pending}

    def remember(utt: str, wave: torch.Tensor) -> Mapping[str, torch.Tensor]:
        raw = call.run(wave)
        memo.put(key, *where[utt], raw)
        return call.name(raw)

    fresh = _extract([items[i] for i in pending], call, crop, each=remember, **kwargs) if pending else None
    computed = {} if fresh is None else {utt: {k: v[row] for k, v in fresh.arrays.items()}
                                         for row, utt in enumerate(fresh.ids)}
    ids: list[str] = []
    rows: list[Mapping[str, np.ndarray]] = []
    with torch.inference_mode():
        for (utt, _), raw in zip(items, found, strict=True):
            if raw is not None:
                rows.append({k: v.detach().float().numpy()[0] for k, v in call.name(raw).items()})
            elif utt in computed:
                rows.append(computed[utt])
            else:
                continue            # unreadable, skipped on request
            ids.append(utt)
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]} if rows else {}
    return Extracted(ids, arrays, [] if fresh is None else fresh.skipped)
