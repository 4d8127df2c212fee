"""Exporting a front-end or an embedding back-end to ONNX, with dynamic batch and length axes.

The exporter is `torch.export.export` (non-strict) followed by `torch.onnx.export(..., dynamo=True)` on the exported
program. torch.export is called directly, not through torch.onnx: when a shape cannot be proven dynamic, torch.onnx
quietly falls back to a draft export that bakes the traced length into the graph (AASIST's graph pools then keep
the traced number of nodes at every other length: scores off by 0.04). Here such a model fails in one line instead.
`prefer_deferred_runtime_asserts_over_guards` lets shapes torch cannot reason about (floor divisions through six
pooling levels) stay symbolic. Every export is then checked on ONNX Runtime against eager PyTorch at the traced
length and at another one, and refused when an output differs by more than `TOLERANCE`: a silently different
exported model is the failure users of other toolkits report.

The shortest input of a graph can be longer than the model's `min_samples` (AASIST: two temporal graph nodes, so
that no node count is 1, where a broadcast and a match cannot be told apart; ResNetSE34L: two frames after its
strides). The length axis is declared `Dim.DYNAMIC` from the model's floor, so torch.export narrows it to the range
its shapes allow within the one trace, instead of failing and being traced again from the bound its error names (which
made AASIST's export 6-18 s longer). That lower bound is the graph's `min_samples`: the manifest records it, and the
stages check every file against it, so a shorter file is named (or skipped with skip_bad_audio) instead of run
outside the graph's range. An axis torch.export would fix to the traced length, or prove for less than an hour
(`MAX_SAMPLES`: ONNX keeps no range checks), fails in one line.

A model can offer `for_export()`, a copy with the same math whose forward has no length-dependent Python control flow
(AASIST's time tiling), is written in operators ONNX Runtime runs fast (the LCNNs' max-feature-maps, pools and
spectra), or runs a layer torch.export cannot keep dynamic through a custom operator that becomes one ONNX operator
(an LSTM, `runtime/onnx_ops.py`) (docs/contributing.md).
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from common.errors import InputError
from common.io import atomic_write
from runtime import onnx_ops
from runtime.packages import require

log = logging.getLogger(__name__)

FORMAT_VERSION = 4      # what runtime/ writes (graph wrappers, names, manifest fields, the models' for_export
                        # forms; 2: the LCNNs' ONNX Runtime-friendly form; 3: their spectra as a DFT convolution;
                        # 4: one spectrum for LCNN streams that share it); a new one rebuilds caches
OPSET = 18
TOLERANCE = 1e-4        # largest |exported - eager| allowed, relative to max(1, max |eager|) of each output
MAX_SAMPLES = 16000 * 3600          # the length axis' upper bound: an hour of 16 kHz audio
EXPORT_SAMPLES = 16000              # the traced length (any length inside the range gives the same graph)


class NotExportableError(InputError):
    """A model the exporter cannot turn into a dynamic ONNX graph, or whose export does not reproduce it."""


def exporter_versions() -> dict:
    """What made an export, recorded in its manifest and part of the cache key: a new torch, onnx or onnxscript
    may write another graph."""
    return {"format_version": FORMAT_VERSION, "opset": OPSET, "exporter": "torch.export + torch.onnx (dynamo)",
            "torch": torch.__version__, "onnx": require("onnx").__version__,
            "onnxscript": require("onnxscript").__version__}


@dataclass
class Graph:
    """What to export: `module` maps its inputs (float32, axis 0 the batch) to `outputs`; `inputs` are
    (name, feature size or None for a waveform) pairs; `min_samples` bounds the length axis of a waveform."""
    module: nn.Module
    inputs: Sequence[tuple[str, int | None]]
    outputs: Sequence[str]
    min_samples: int = 1


class _ASVGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model(wave)


class _CMGraph(nn.Module):
    """The CM contract as graph outputs: the embedding, both logits, and the bona fide logit (the CM score)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedding, logits = self.model(wave)
        return embedding, logits, logits[:, 1]


class _BackendGraph(nn.Module):
    """An embedding back-end on one input, the concatenated [enrolment ASV, test ASV, test CM] embeddings, so that
    a serving system hands it one array per trial."""

    def __init__(self, backend: nn.Module, asv_dim: int, cm_dim: int):
        super().__init__()
        self.backend, self.asv_dim, self.cm_dim = backend, asv_dim, cm_dim

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        enr, tst, cm = embeddings.split([self.asv_dim, self.asv_dim, self.cm_dim], dim=1)
        return self.backend(enr, tst, cm)[0]


def _frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy without autograd (the inference code paths), through the model's `for_export` if any."""
    hook = getattr(model, "for_export", None)
    out = hook() if callable(hook) else copy.deepcopy(model)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def frontend_graph(model: nn.Module, kind: str) -> Graph:
    """The graph of an ASV (`wave -> embedding`) or CM (`wave -> embedding, logits, score`) front-end."""
    frozen = _frozen_copy(model)
    floor = model.min_samples   # every registered model states it (common.model_contract)
    if kind == "asv":
        return Graph(_ASVGraph(frozen), [("wave", None)], ["embedding"], floor)
    return Graph(_CMGraph(frozen), [("wave", None)], ["embedding", "logits", "score"], floor)


def backend_graph(backend: nn.Module, asv_dim: int, cm_dim: int) -> Graph:
    """The graph of a trained embedding back-end: concatenated embeddings (B, 2 * asv_dim + cm_dim) -> score (B,)."""
    return Graph(_BackendGraph(_frozen_copy(backend), asv_dim, cm_dim), [("embeddings", 2 * asv_dim + cm_dim)],
                 ["score"])


def example_inputs(graph: Graph, batch: int, samples: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, samples if size is None else size, generator=g) for _, size in graph.inputs)


def _dynamic_shapes(graph: Graph) -> tuple[dict, ...]:
    """Batch in [1, 65536]; the length from the model's floor to an hour, narrowed by torch.export where the graph's
    shapes need more (`_length_floor`)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    length = torch.export.Dim.DYNAMIC(min=max(graph.min_samples, 2), max=MAX_SAMPLES)
    return tuple({0: batch, 1: length} if size is None else {0: batch} for _, size in graph.inputs)


def _length_floor(program: torch.export.ExportedProgram, graph: Graph) -> int:
    """The shortest waveform the exported program accepts: the lower bound torch.export settled for the length axis
    of the first waveform input (at least the model's own floor). An axis it fixed, or capped below an hour, is
    refused: ONNX keeps no range checks, so a longer input would run outside what was proven."""
    name = next(n for n, size in graph.inputs if size is None)
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    length = node.meta["val"].shape[1]
    if isinstance(length, int):     # Dim.DYNAMIC refuses to specialise; stated, not assumed
        raise NotExportableError(f"the exported graph fixed the length axis to {length} samples")
    valid = program.range_constraints[length.node.expr]
    if valid.upper < MAX_SAMPLES:
        raise NotExportableError(f"the exported graph holds for at most {valid.upper} samples, not {MAX_SAMPLES}")
    return max(graph.min_samples, int(valid.lower))


@contextlib.contextmanager
def _quiet_torch_loggers():
    """torch.export and torch.onnx log warnings about every op they skip (torchvision's, symbolic shapes): noise for
    a user who asked for one export; errors still show."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch.fx", "torch._dynamo",
                                              "torch._export", "torch.utils._sympy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _reason(error: Exception) -> str:
    """The telling line of an exporter's error: the first violated guard, else its first line."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    guard = next((ln for ln in lines if ln.startswith("- Not all values")), None)
    return f"{type(error).__name__}: {(guard or (lines[0] if lines else ''))[:240]}"


def export_graph(graph: Graph, path: str | Path, what: str) -> None:
    """Exports `graph` to `path` (atomically) and checks it on ONNX Runtime (`check_export`); `what` names the
    model in the one-line NotExportableError."""
    require("onnxscript")
    require("onnx")
    samples = max(EXPORT_SAMPLES, graph.min_samples)
    args = example_inputs(graph, 2, samples)
    noise = io.StringIO()     # torch.onnx reports its steps on stdout, which carries result tables
    try:
        with torch.no_grad(), contextlib.redirect_stdout(noise), _quiet_torch_loggers():
            program = torch.export.export(graph.module, args, dynamic_shapes=_dynamic_shapes(graph), strict=False,
                                          prefer_deferred_runtime_asserts_over_guards=True)
            if any(size is None for _, size in graph.inputs):
                graph.min_samples = _length_floor(program, graph)
            onnx_program = torch.onnx.export(program, args, dynamo=True, opset_version=OPSET, optimize=True,
                                             verbose=False, custom_translation_table=onnx_ops.translations())
            _name_inputs_and_outputs(onnx_program.model, graph)
    except Exception as e:   # the exporters raise many types; each is this model's limit, not a bug of the caller
        raise NotExportableError(f"{what}: this architecture is not exportable to ONNX ({_reason(e)}); use "
                                 "runtime: torch") from None
    try:
        data = onnx_program.model_proto.SerializeToString()
    except ValueError as e:     # protobuf's 2 GB limit (an SSL encoder's XLS-R weights)
        raise NotExportableError(f"{what}: this architecture is not exportable to ONNX as one file ({e}); use "
                                 "runtime: torch") from None
    check_export(graph, data, what)
    with atomic_write(path, "wb") as f:
        f.write(data)
    log.info(f"exported {what} -> {path}")


def _name_inputs_and_outputs(model, graph: Graph) -> None:
    """Gives the ONNX graph's inputs and outputs `graph`'s names. torch.onnx's own renaming (input_names,
    output_names) does not check them against the values inside the graph, which it names after their operators:
    WavLM's relative position bias holds a value `embedding`, and the file defined `embedding` twice (ONNX Runtime
    refused it). An inner value holding a wanted name is renamed first."""
    from onnxscript import ir

    ends = [*model.graph.inputs, *model.graph.outputs]
    wanted = [*(name for name, _ in graph.inputs), *graph.outputs]
    end_ids = {id(value) for value in ends}
    produced = (value for node in ir.traversal.RecursiveGraphIterator(model.graph) for value in node.outputs)
    inner = [value for value in (*model.graph.initializers.values(), *produced) if id(value) not in end_ids]
    taken = {value.name for value in (*ends, *inner)} | set(wanted)
    for value in inner:
        if value.name in wanted:
            number = 1
            while f"{value.name}_{number}" in taken:
                number += 1
            value.name = f"{value.name}_{number}"
            taken.add(value.name)
    for value, name in zip(ends, wanted, strict=True):
        value.name = name


def check_export(graph: Graph, model_bytes: bytes, what: str) -> float:
    """The largest relative difference between ONNX Runtime and eager PyTorch at the traced length and at one the
    export never saw (batch 1 and 3); NotExportableError when above TOLERANCE."""
    from runtime.onnx_session import open_session
    try:
        session = open_session(model_bytes, threads=torch.get_num_threads())
    except Exception as e:   # onnxruntime's own exception types: an invalid or unsupported graph
        raise NotExportableError(f"{what}: ONNX Runtime refuses the exported graph ({_reason(e)}); use runtime: "
                                 "torch") from None
    worst, traced = 0.0, max(EXPORT_SAMPLES, graph.min_samples)
    for batch, samples in ((1, traced), (3, traced * 3 // 2 + 7)):
        args = example_inputs(graph, batch, samples, seed=batch)
        worst = max(worst, max_difference(graph.module, session, args))
    if not worst <= TOLERANCE:
        raise NotExportableError(f"{what}: the exported graph differs from PyTorch by {worst:.2e} (more than "
                                 f"{TOLERANCE:g}): not exportable to ONNX; use runtime: torch")
    return worst


def max_difference(module: Callable, session, args: Sequence[torch.Tensor]) -> float:
    """max over outputs of max |onnx - eager| / max(1, max |eager|)."""
    with torch.no_grad():
        ref = module(*args)
    ref = ref if isinstance(ref, tuple) else (ref,)
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
    return max(relative_difference(r.numpy(), o) for r, o in zip(ref, out, strict=True))


def relative_difference(eager: np.ndarray, exported: np.ndarray) -> float:
    if eager.shape != exported.shape:
        return float("inf")
    scale = max(1.0, float(np.abs(eager).max(initial=0.0)))
    return float(np.abs(eager.astype(np.float64) - exported).max(initial=0.0)) / scale


def export_frontend(model: nn.Module, kind: str, folder: str | Path, *, arch: str, options: dict,
                    checkpoint: str | None, checkpoint_sha256: str | None, crop: dict,
                    dev_threshold: dict | None = None, made_by: dict | None = None) -> dict:
    """Writes `folder`/model.onnx and its manifest.json (the manifest last: a folder with a manifest holds a
    complete export) for the ASV or CM front-end `model`; returns the manifest."""
    from common.io import file_sha256
    from runtime.manifest import MODEL, SCORE_MEANING, frontend_outputs, write_manifest
    folder = Path(folder)
    graph = frontend_graph(model, kind)
    export_graph(graph, folder / MODEL, arch)
    manifest = {"format_version": FORMAT_VERSION, "kind": kind, "arch": arch, "model": options,
                "sample_rate": 16000, "crop": crop, "min_samples": graph.min_samples,
                "inputs": [{"name": "wave", "shape": ["batch", "samples"],
                            "meaning": f"16 kHz mono float32 waveform, samples >= {graph.min_samples}"}],
                "outputs": frontend_outputs(kind, int(model.embedding_dim)),
                "embedding_dim": int(model.embedding_dim), "score": SCORE_MEANING[kind],
                "dev_threshold": dev_threshold, "checkpoint": checkpoint, "checkpoint_sha256": checkpoint_sha256,
                "exporter": exporter_versions(), "onnx_sha256": file_sha256(folder / MODEL),
                "made_by": made_by}
    write_manifest(folder, manifest)
    return manifest


def export_backend(backend: nn.Module, folder: str | Path, *, name: str, options: dict, asv_dim: int, cm_dim: int,
                   checkpoint: str, checkpoint_sha256: str, score: str,
                   dev_threshold: dict | None = None) -> dict:
    """Writes `folder`/model.onnx and manifest.json for a trained embedding back-end (fusion/: baseline2,
    joint_oc): input the concatenated [enrolment ASV, test ASV, test CM] embeddings, output the SASV score."""
    from common.io import file_sha256
    from runtime.manifest import MODEL, write_manifest
    folder = Path(folder)
    graph = backend_graph(backend, asv_dim, cm_dim)
    export_graph(graph, folder / MODEL, name)
    width = 2 * asv_dim + cm_dim
    manifest = {"format_version": FORMAT_VERSION, "kind": "backend", "arch": name, "model": options,
                "inputs": [{"name": "embeddings", "shape": ["batch", width],
                            "meaning": f"[enrolment ASV embedding ({asv_dim}), test ASV embedding ({asv_dim}), "
                                       f"test CM embedding ({cm_dim})] concatenated, as the stages cache them"}],
                "outputs": [{"name": "score", "shape": ["batch"], "meaning": score}],
                "asv_dim": asv_dim, "cm_dim": cm_dim, "score": score, "dev_threshold": dev_threshold,
                "checkpoint": checkpoint, "checkpoint_sha256": checkpoint_sha256, "exporter": exporter_versions(),
                "onnx_sha256": file_sha256(folder / MODEL)}
    write_manifest(folder, manifest)
    return manifest
