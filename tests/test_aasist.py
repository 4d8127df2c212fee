"""AASIST / AASIST-L: parity with the official outputs, the tiled eval path, checkpoints, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cm import build_model
from cm.aasist import CONFIGS
from cm.checkpoint import load_cm_state, save_cm_state
from tests.conftest import reference_path

ARCHS = [("AASIST", "AASIST"), ("AASIST-L", "AASIST_L")]


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(reference_path("aasist", "aasist_reference_outputs.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("arch,key", ARCHS)
def test_official_weights_reproduce_reference_outputs(arch, key, reference):
    model = build_model(arch).eval()
    load_cm_state(model, reference_path("aasist", f"{arch}.pth"))
    for name in ("input_64600", "input_32000"):
        with torch.inference_mode():
            embedding, logits = model(torch.from_numpy(reference[name]))
        assert embedding.shape == (len(reference[name]), 160) and logits.shape == (len(reference[name]), 2)
        np.testing.assert_allclose(embedding.numpy(), reference[f"{key}_{name}_embedding"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(logits.numpy(), reference[f"{key}_{name}_logits"], rtol=0, atol=1e-4)



def test_asvspoof5_track1_baseline_loads_as_cm_checkpoint_and_reproduces_official_outputs(reference):
    """The ASVspoof 5 organisers' Track 1 AASIST (asvspoof-challenge/asvspoof5 Baseline-AASIST best.pth) is the
    AASIST architecture with other weights: set as `cm.checkpoint` with `cm.arch: AASIST`, it must give the official
    code's outputs on the inputs of the 2019 reference (aasist_asvspoof5_reference_outputs.npz, README there)."""
    from common.config import check_config
    from pipeline.stages.frontends import CM_SECTION, build_cm
    path = reference_path("aasist", "AASIST_ASVspoof5.pth")
    with np.load(reference_path("aasist", "aasist_asvspoof5_reference_outputs.npz")) as z:
        official = {k: z[k] for k in z.files}
    section = check_config({"arch": "AASIST", "checkpoint": str(path)}, CM_SECTION, "cm")
    model = build_cm(section)
    for name in ("input_64600", "input_32000"):
        with torch.inference_mode():
            embedding, logits = model(torch.from_numpy(reference[name]))
        np.testing.assert_allclose(embedding.numpy(), official[f"AASIST_ASVspoof5_{name}_embedding"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(logits.numpy(), official[f"AASIST_ASVspoof5_{name}_logits"], rtol=0, atol=1e-4)
    # other weights than the 2019 model's: the test cannot pass by loading AASIST.pth by mistake
    assert not np.allclose(official["AASIST_ASVspoof5_input_32000_logits"], reference["AASIST_input_32000_logits"],
                           atol=1e-2)


@pytest.mark.parametrize("length", [2315, 9001, 20000])
def test_tiled_eval_matches_whole_map_eval(length):
    """The tile halos and the zero padding at both sequence ends, at lengths where the widths do not divide by 3."""
    torch.manual_seed(0)
    whole = build_model("AASIST-L", tile_frames=0)
    for m in whole.modules():  # non-trivial running statistics, so that BN folding is exercised
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    tiled = build_model("AASIST-L", tile_frames=100)
    tiled.load_state_dict(whole.state_dict())
    wave = torch.randn(2, length) * 0.1
    with torch.inference_mode():
        a, b = whole.eval()(wave), tiled.eval()(wave)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-4)


def test_wrong_architecture_checkpoint_is_refused_with_a_clear_message():
    model = build_model("AASIST")
    with pytest.raises(ValueError, match=(r"AASIST-L\.pth: .*mis-shaped.*"
                                          r"looks like an AASIST-L checkpoint, config says AASIST")):
        load_cm_state(model, reference_path("aasist", "AASIST-L.pth"))


def test_ddp_prefix_our_format_and_bad_files(tmp_path):
    source = build_model("AASIST-L")
    ddp_state = {"module." + k: v for k, v in source.state_dict().items()}
    torch.save(ddp_state, tmp_path / "ddp.pth")
    target = build_model("AASIST-L")
    assert load_cm_state(target, tmp_path / "ddp.pth") == {}
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())

    save_cm_state(tmp_path / "ours.pt", source, epoch=3)
    assert load_cm_state(build_model("AASIST-L"), tmp_path / "ours.pt") == {"arch": "AASIST-L", "epoch": 3}

    partial = dict(source.state_dict())
    partial.pop("out_layer.bias")
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 missing keys \(out_layer.bias\); 1 unexpected keys \(extra.weight\)"):
        load_cm_state(build_model("AASIST-L"), partial)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth: "):
        load_cm_state(target, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match=r"missing\.pth: checkpoint file not found"):
        load_cm_state(target, tmp_path / "missing.pth")


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match=(r"unknown CM model 'RawNet2' "
                                          r"\(valid: AASIST, AASIST-L, LCNN, LCNN-LFCC-LPS, LFCC-LCNN-ASVspoof2021, "
                                          r"SSL-AASIST\)")):
        build_model("RawNet2")
    with pytest.raises(ValueError, match=r"unknown keyword 'gat_dim' for CM model AASIST"):
        build_model("AASIST", gat_dim=[1, 2])


def test_too_short_input_is_an_error():
    with pytest.raises(ValueError, match="at least 2315 samples"):
        build_model("AASIST-L").eval()(torch.zeros(1, 2000))


def test_frequency_mask_zeroes_one_contiguous_band():
    sinc = build_model("AASIST-L").conv_time
    torch.manual_seed(1)
    widths = set()
    for _ in range(50):
        zeroed = (sinc.filters(mask=True).squeeze(1).abs().sum(1) == 0).nonzero().flatten()
        if len(zeroed):
            assert torch.equal(zeroed, torch.arange(zeroed[0], zeroed[0] + len(zeroed)))
        widths.add(len(zeroed))
    assert max(widths) < 20 and len(widths) > 5
    assert torch.equal(sinc.filters(mask=False).squeeze(1), sinc.band_pass)


def test_training_step_reduces_loss_and_reaches_every_used_parameter():
    torch.manual_seed(0)
    model = build_model("AASIST-L", freq_aug=True).train()
    wave, labels = torch.randn(4, 3000) * 0.1, torch.tensor([0, 1, 0, 1])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        torch.manual_seed(123)  # the same dropout and frequency masks at every step: a fixed objective
        return torch.nn.functional.cross_entropy(model(wave)[1], labels)

    before = loss()
    before.backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused == {n for n, _ in model.named_parameters() if ".bn1." in n}  # bn1 is dead in the official forward
    for _ in range(8):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    with torch.no_grad():
        assert loss() < before.detach() * 0.5


@pytest.mark.parametrize("arch,key", ARCHS)
def test_bench_baseline_has_the_official_outputs(arch, key, reference):
    """bench/official_aasist.py times the official structure; it must compute the official function."""
    from bench.official_aasist import OfficialStructureAASIST
    model = OfficialStructureAASIST(**CONFIGS[arch]).eval()
    load_cm_state(model, reference_path("aasist", f"{arch}.pth"))
    with torch.inference_mode():
        embedding, logits = model(torch.from_numpy(reference["input_32000"]))
    np.testing.assert_allclose(embedding.numpy(), reference[f"{key}_input_32000_embedding"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), reference[f"{key}_input_32000_logits"], rtol=0, atol=1e-4)


def test_gradients_flow_in_eval_mode():
    """Eval mode (BatchNorm statistics frozen) with autograd on: the in-place inference shortcuts step aside, and
    the outputs equal those computed without autograd."""
    torch.manual_seed(0)
    model = build_model("AASIST-L").eval()
    wave = torch.randn(2, 16000, requires_grad=True)
    _, logits = model(wave)
    logits.sum().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(wave)[1], logits.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames", [3153, 3152, 3151])
def test_front_end_pool_without_autograd_is_max_pool_of_the_magnitude(frames):
    """abs_pool3x3's strided maxima (no autograd) and its amax (autograd) are the official
    max_pool2d(|y|, (3, 3)), bit for bit, whatever the frame count's remainder by 3."""
    from cm import aasist_speed
    torch.manual_seed(0)
    y = torch.randn(2, 70, frames)
    official = torch.nn.functional.max_pool2d(y.abs().unsqueeze(1), (3, 3))
    with torch.no_grad():
        fast = aasist_speed.abs_pool3x3(y.clone(), 23)
    trained = aasist_speed.abs_pool3x3(y.clone().requires_grad_(), 23)
    assert torch.equal(fast, official) and torch.equal(trained.detach(), official)


def test_chunked_selu_is_selu_up_to_float_rounding():
    """aasist_speed.selu_ (exp in cache-sized chunks) against F.selu, on dense maps of both memory layouts and
    across chunk ends; a strided view falls back to F.selu_ itself."""
    from cm import aasist_speed
    torch.manual_seed(0)
    y = torch.randn(2, 8, 5, aasist_speed.SELU_CHUNK // 40 + 7) * 3
    for x in (y.clone(), y.clone().contiguous(memory_format=torch.channels_last), y.clone()[..., ::2]):
        expected = torch.nn.functional.selu(x)
        with torch.no_grad():
            out = aasist_speed.selu_(x)
        assert out is x
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=2e-7)
