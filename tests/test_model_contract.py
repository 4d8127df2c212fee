"""The front-end model contract (common/model_contract.py) over every registered model, and the registries refusing a
class that breaks it; the SSL encoders' own contract (ssl_models.SSLEncoder) over every entry of `ssl_models.ENCODERS`.

Each model of `asv.MODELS` and `cm.MODELS` is built with the small options of tests/model_fixtures.py and run on
random input at its `min_samples` and at two longer lengths: a new model is covered without a new test."""
from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

import asv
import cm
from asv import resnet_se34l
from cm import lcnn
from common.errors import InputError
from common.model_contract import (
    Countermeasure,
    ModelContractError,
    SpeakerModel,
    check_built,
    check_registry,
)
from pipeline.stages.frontends import input_floor
from ssl_models import ENCODERS, SSLEncoder, build_encoder
from tests.model_fixtures import REGISTERED, TINY, build_tiny
from tests.ssl_fixtures import TINY_ENCODER

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 2


@pytest.mark.parametrize("kind,name", REGISTERED, ids=[name for _, name in REGISTERED])
def test_every_registered_model_keeps_the_contract(kind, name):
    model = build_tiny(kind, name)
    protocol = SpeakerModel if kind == "asv" else Countermeasure
    assert isinstance(model, protocol) and isinstance(model, nn.Module)
    dim, floor = model.embedding_dim, model.min_samples
    assert type(dim) is int and dim >= 1 and type(floor) is int and floor >= 1
    # the floor the stages read before building anything (from the class, or a model built for it) is the model's
    assert input_floor({"arch": name, "model": TINY.get(name, {})}, kind).samples == floor
    g = torch.Generator().manual_seed(1)
    for samples in (floor, floor + 1237, max(floor, 16000) + 3):
        wave = torch.randn(BATCH, samples, generator=g)
        with torch.no_grad():
            out = model(wave)
        if kind == "asv":
            assert isinstance(out, torch.Tensor), (name, type(out))
            embedding = out
        else:
            assert isinstance(out, tuple) and len(out) == 2, (name, type(out))
            embedding, logits = out
            assert logits.shape == (BATCH, 2) and logits.dtype == torch.float32, (name, samples, logits.shape)
            assert torch.isfinite(logits).all(), (name, samples)
            with torch.no_grad():
                again = model.logits_from_embedding(embedding)
            # torch.allclose, not torch.testing.assert_close: that imports sympy on first use (6 s)
            assert again.shape == logits.shape and torch.allclose(again, logits, rtol=1e-5, atol=1e-5), \
                (name, samples, (again - logits).abs().max().item())
        assert embedding.shape == (BATCH, dim) and embedding.dtype == torch.float32, (name, samples, embedding.shape)
        assert torch.isfinite(embedding).all(), (name, samples)


class _Speaker(nn.Module):
    min_samples = 400

    def __init__(self, embedding_dim: int = 4):
        super().__init__()
        self.embedding_dim = embedding_dim

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave[:, :self.embedding_dim]


class _NoFloor(nn.Module):
    embedding_dim = 4

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave[:, :4]


class _ZeroFloor(_Speaker):
    min_samples = 0


class _BoolFloor(_Speaker):
    min_samples = True


class _MistypedConvolutions(_Speaker):
    whole_utterance_convolutions = "Aten"


class _NoForward(nn.Module):
    min_samples = 1
    embedding_dim = 4


class _CMWithoutHead(_Speaker):
    """forward and min_samples, no logits_from_embedding."""


class _NotAModule:
    min_samples = 1
    embedding_dim = 4

    def forward(self, wave):
        return wave


@pytest.mark.parametrize("kind,cls,needle", [
    ("ASV", _NoFloor, "_NoFloor does not state min_samples"),
    ("ASV", _ZeroFloor, "_ZeroFloor.min_samples is 0, not a positive int"),
    ("ASV", _BoolFloor, "_BoolFloor.min_samples is True, not a positive int"),
    ("ASV", _NoForward, "_NoForward does not define forward()"),
    ("ASV", _MistypedConvolutions, "whole_utterance_convolutions is 'Aten', not one of onednn, aten"),
    ("CM", _CMWithoutHead, "_CMWithoutHead does not define logits_from_embedding()"),
    ("CM", _NotAModule, "is not an nn.Module class"),
])
def test_a_registry_refuses_a_class_that_breaks_the_contract_in_one_line(kind, cls, needle):
    registry = {"Good": (_Speaker, {}), "Bad": (cls, {})} if kind == "ASV" else {"Bad": (cls, {})}
    with pytest.raises(ModelContractError) as caught:
        check_registry(registry, kind)
    message = str(caught.value)
    assert "\n" not in message and needle in message, message
    assert message.startswith(f"{'asv' if kind == 'ASV' else 'cm'}.MODELS['Bad']: "), message
    check_registry({"Good": (_Speaker, {})}, "ASV")   # and a class that keeps it passes


def test_the_packages_check_their_registry_when_imported(monkeypatch):
    """Importing asv / cm runs the check: a registered class that loses an attribute of the contract stops the
    import, naming the registry entry."""
    try:
        monkeypatch.delattr(resnet_se34l.ResNetSE34L, "min_samples")
        with pytest.raises(ModelContractError, match=r"^asv\.MODELS\['ResNetSE34L'\]: ResNetSE34L does not state "):
            importlib.reload(asv)
        monkeypatch.delattr(lcnn.LCNN, "logits_from_embedding")
        with pytest.raises(ModelContractError, match=r"^cm\.MODELS\['LCNN'\]: LCNN does not define logits_from_"):
            importlib.reload(cm)
    finally:
        monkeypatch.undo()
        importlib.reload(asv)
        importlib.reload(cm)
    assert asv.build_model("ResNetSE34L", **TINY["ResNetSE34L"]).min_samples == 400


def test_build_model_checks_what_only_a_built_model_knows(monkeypatch):
    monkeypatch.setitem(asv.MODELS, "Toy", (_Speaker, {"embedding_dim": 4}))
    assert asv.build_model("Toy").embedding_dim == 4
    with pytest.raises(InputError, match=r"^ASV model Toy: embedding_dim is 0 with these options, not a positive "
                                         r"int$"):
        asv.build_model("Toy", embedding_dim=0)
    # a class put into the registry after import is checked when it is built
    monkeypatch.setitem(asv.MODELS, "Floorless", (_NoFloor, {}))
    with pytest.raises(ModelContractError, match=r"^asv\.MODELS\['Floorless'\]: _NoFloor does not state "):
        asv.build_model("Floorless")
    # a property floor is read from the built model
    with pytest.raises(InputError, match="min_samples is -1"):
        check_built(type("Negative", (_Speaker,), {"min_samples": property(lambda self: -1)})(), "Negative", "ASV")
    assert check_built(cm.build_model("AASIST-L", **TINY["AASIST-L"]), "AASIST-L", "CM").min_samples > 1


@pytest.mark.parametrize("name", list(ENCODERS))
def test_every_ssl_encoder_states_its_geometry(name):
    """Built on the meta device (no memory, no initialisation: XLS-R 2B in a fraction of a second): the attributes
    the models built on an encoder read before running it."""
    with torch.device("meta"):
        enc = build_encoder(name=name)
    assert isinstance(enc, SSLEncoder) and enc.min_samples == 1
    for value in (enc.embed_dim, enc.num_layers, enc.receptive_field, enc.hop_samples):
        assert type(value) is int and value >= 1, (name, value)
    assert enc.frames(1) == enc.frames(enc.receptive_field) == 1 and enc.frames(enc.samples_for(7)) == 7


def test_an_ssl_encoder_gives_one_frame_per_hop_from_one_sample_on():
    torch.manual_seed(0)
    enc = build_encoder(name="wav2vec2_model", options=TINY_ENCODER).eval()
    for samples in (enc.min_samples, 16000 + 3):
        with torch.no_grad():
            out = enc(torch.randn(BATCH, samples))
        assert out.shape == (BATCH, enc.frames(samples), enc.embed_dim) and torch.isfinite(out).all()
