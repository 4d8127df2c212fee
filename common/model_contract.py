"""The front-end model contract, written down once: what every model registered in `asv.MODELS` (a speaker model)
and `cm.MODELS` (a countermeasure) provides, and the checks that hold each registered class and each built model
to it.

Why it exists: the stages, verify.py, the ONNX exporter, the ablation and the training recipes call these
attributes on any registered model without knowing which one it is (`embedding_dim` sizes losses, back-ends, caches
and the export manifest; `min_samples` is checked per file before a model runs and against every fixed crop before
anything runs; the ablation turns cached CM embeddings into both logits with `logits_from_embedding`). A model that
lacked one would fail late, deep inside a stage, or be read with a silent default. So a registry refuses such a
class when its package is imported (`check_registry`), and `build_model` checks what only a built model knows
(`check_built`: its embedding size, and AASIST's floor, which depends on its options).

Optional: `for_export()`, a copy of the model with the same math and no training-only path, which the ONNX exporter
uses where it exists (runtime/onnx_export.py; AASIST drops its time tiling, the LCNNs write their max-feature-maps
and pools in ONNX Runtime's fast operators); and `whole_utterance_convolutions`, a class attribute, "aten" or
"onednn" (the default): where its convolutions run on whole utterances (crop `full`), whose every new length makes
oneDNN build a primitive (pipeline.stages.extract.convolution_path; checked: a typo would silently keep the default).

SSL encoders (`ssl_models.SSLEncoder`) are parts of models, not front-ends: their contract (wave (B, T) -> features
(B, frames, embed_dim), `min_samples`, `frames(n)`) is the class's own docstring.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Literal, Mapping, Protocol, TypeVar, runtime_checkable

from common.errors import InputError

if TYPE_CHECKING:
    import torch

Kind = Literal["ASV", "CM"]
M = TypeVar("M")


@runtime_checkable
class SpeakerModel(Protocol):
    """An ASV front-end (`asv.MODELS`): a 16 kHz mono float32 waveform batch (B, T) -> embedding (B, embedding_dim),
    not length-normalised (cosine scoring normalises)."""

    embedding_dim: int   # D, set by the constructor (it may follow the options)
    min_samples: int     # the shortest T `forward` accepts: a class attribute, or a property where options change it

    def forward(self, wave: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Countermeasure(Protocol):
    """A CM front-end (`cm.MODELS`): waveform (B, T) -> (embedding (B, embedding_dim), logits (B, 2)), logits[:, 1]
    bona fide (the CM score the stages cache). `logits_from_embedding(embedding)` gives the same logits from the
    embedding alone, in eval mode (no dropout): the output layer(s) after the embedding `forward` returns."""

    embedding_dim: int
    min_samples: int

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor: ...


REGISTRIES = {"ASV": "asv.MODELS", "CM": "cm.MODELS"}
# where a model's convolutions may run on whole utterances (`whole_utterance_convolutions`)
CONVOLUTION_PATHS = ("onednn", "aten")
# What a class must state before it is built (methods defined, min_samples on the class), per kind.
METHODS: dict[str, tuple[str, ...]] = {"ASV": ("forward",), "CM": ("forward", "logits_from_embedding")}


class ModelContractError(TypeError):
    """A registered model breaks the contract: a bug in the model or its registration, not bad user input."""


def _refuse(kind: Kind, name: str, problem: str) -> ModelContractError:
    return ModelContractError(f"{REGISTRIES[kind]}[{name!r}]: {problem} (the {kind} model contract: "
                              "common/model_contract.py)")


def _is_count(value: Any) -> bool:
    """A positive int (a bool is not a size)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_model_class(cls: Any, name: str, kind: Kind) -> None:
    """What a registered class states before it is built: an `nn.Module` that defines the kind's methods and its
    `min_samples` (a positive int class attribute, or a property that the built model answers). One line naming the
    registry entry and what is missing."""
    from torch import nn

    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise _refuse(kind, name, f"{cls!r} is not an nn.Module class")
    for method in METHODS[kind]:
        if not callable(getattr(cls, method, None)) or getattr(cls, method) is getattr(nn.Module, method, None):
            raise _refuse(kind, name, f"{cls.__name__} does not define {method}()")
    floor = inspect.getattr_static(cls, "min_samples", None)
    if floor is None:
        raise _refuse(kind, name, f"{cls.__name__} does not state min_samples (the shortest input it accepts, in "
                                  "samples: a class attribute, or a property where its options change it)")
    if not isinstance(floor, property) and not _is_count(floor):
        raise _refuse(kind, name, f"{cls.__name__}.min_samples is {floor!r}, not a positive int")
    path = getattr(cls, "whole_utterance_convolutions", "onednn")
    if path not in CONVOLUTION_PATHS:
        raise _refuse(kind, name, f"{cls.__name__}.whole_utterance_convolutions is {path!r}, not one of "
                                  f"{', '.join(CONVOLUTION_PATHS)}")


def check_registry(table: Mapping[str, tuple[type, Mapping[str, Any]]], kind: Kind) -> None:
    """Every class of a registry (name -> (class, config)) against `check_model_class`: the registering package
    calls it at import, so a class that breaks the contract never gets a name."""
    for name, (cls, _config) in table.items():
        check_model_class(cls, name, kind)


def check_built(model: M, name: str, kind: Kind) -> M:
    """`model`, built from registry entry `name`, after checking what only a built model knows: `embedding_dim` and
    `min_samples` are positive ints. Their values may follow the options (a linear layer builds with 0 outputs), so
    a bad one is an InputError naming the model; the class is checked again first (for a registry changed after
    import)."""
    check_model_class(type(model), name, kind)
    for attribute in ("embedding_dim", "min_samples"):
        value = getattr(model, attribute, None)
        if not _is_count(value):
            raise InputError(f"{kind} model {name}: {attribute} is {value!r} with these options, not a positive int")
    return model
