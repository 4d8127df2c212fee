"""An ONNX Runtime session as the stages' EmbedFn (pipeline/stages/extract.py): the same (B, T) waveform in, the
same named outputs out, so extraction, caching, sharding and verify.py run unchanged on either runtime.

Providers: CUDA first when this onnxruntime build has it and the stage's device is CUDA, then the CPU. Threads:
torch.get_num_threads() intra-op (what the torch runtime uses on the same machine), one inter-op thread (the
front-ends are one chain of ops)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.stages.extract import EmbedFn
from runtime.packages import require


def providers(device: torch.device | str = "cpu") -> list[str]:
    """ONNX Runtime's execution providers for `device`: CUDAExecutionProvider first when available, else the CPU."""
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def open_session(model: str | Path | bytes, device: torch.device | str = "cpu", threads: int | None = None,
                 spin: bool = True):
    """An InferenceSession of an .onnx file (or its bytes), all graph optimisations on. `spin=False`: idle intra-op
    threads sleep instead of spinning for the next run (ONNX Runtime's default), for a process that runs PyTorch
    between runs: on 2 cores the spinning threads slowed the next eager batch by up to 70 % (bench/frontends.py)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3          # errors only: ORT's warnings would interleave with progress bars
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers(device))


def onnx_embed_fn(session, kind: str) -> EmbedFn:
    """The EmbedFn of an exported front-end (runtime/onnx_export.py names its outputs): ASV -> embeddings;
    CM -> embeddings and scores (the bona fide logit), as pipeline.stages.frontends' torch EmbedFns."""
    name = session.get_inputs()[0].name

    def run(wave: torch.Tensor) -> dict[str, torch.Tensor]:
        x = np.ascontiguousarray(wave.detach().cpu().numpy(), dtype=np.float32)
        if kind == "asv":
            (embedding,) = session.run(["embedding"], {name: x})
            return {"embeddings": torch.from_numpy(embedding)}
        embedding, score = session.run(["embedding", "score"], {name: x})
        return {"embeddings": torch.from_numpy(embedding), "scores": torch.from_numpy(score)}
    return run
