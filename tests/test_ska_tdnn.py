"""SKA-TDNN: the SASV2 baseline's size and state-dict names, eval-mode behaviour, the augmented training path,
and strict loading of SASV2-layout checkpoints (wrong architectures fail with one line)."""
from __future__ import annotations

import pytest
import torch
import torchaudio

import asv
from asv.checkpoint import load_asv_state
from asv.losses import build_loss
from common.errors import InputError
from data.augment import SpecAugment

pytestmark = pytest.mark.usefixtures("one_thread")

# sasv-challenge/SASV2_Baseline models/SKA_TDNN.py MainModel(): trainable parameters of the embedding network
SASV2_PARAMETERS = 30_835_104
WAVE_SAMPLES = 6400   # 0.4 s (41 frames): enough for every layer, fast on one thread


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter and BN statistic moved off its initial value, so a load that skips a key shows."""
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.add_(0.01 * torch.randn_like(t))
    return module


def sasv2_state(model: torch.nn.Module, loss: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """`model` saved as SASV2's SASVNet.saveParameters does under DDP: `module.__S__.` model keys with the
    torchfbank = Sequential(PreEmphasis, MelSpectrogram) buffers, `module.__L__.` loss keys."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                                               f_min=20, f_max=7600, window_fn=torch.hamming_window, n_mels=80)
    state = {f"__S__.{k}": v.clone() for k, v in model.state_dict().items()}
    state["__S__.torchfbank.0.flipped_filter"] = torch.tensor([-0.97, 1.0]).view(1, 1, 2)
    state.update({f"__S__.torchfbank.1.{k}": v for k, v in mel.state_dict().items()})
    if loss is not None:
        state.update({f"__L__.{k}": v.clone() for k, v in loss.state_dict().items()})
    return {f"module.{k}": v for k, v in state.items()}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return _perturbed(asv.build_model("SKA-TDNN")).eval()


def test_size_and_sasv2_names(model):
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == SASV2_PARAMETERS
    assert model.embedding_dim == 192 and model.min_samples == 400
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["frt_conv1.weight"] == (128, 1, 3, 3) and "frt_conv1.bias" in shapes
    assert shapes["frt_block2.conv1.weight"] == (128, 128, 3, 3) and "frt_block2.conv1.bias" not in shapes
    assert shapes["frt_block1.skfwse.convs.1.conv.weight"] == (128, 128, 5, 5)
    assert shapes["frt_block1.skfwse.convs.0.bn.running_var"] == (128,)
    assert shapes["frt_block1.skfwse.fc.weight"] == (16, 40)          # one attention weight per frequency bin
    assert shapes["frt_block1.skfwse.fcs.1.weight"] == (40, 16)
    assert shapes["frt_block1.skcwse.fc.weight"] == (16, 128)         # one per channel
    assert shapes["conv1.weight"] == (1024, 2560, 5)                  # 128 channels x 20 bins after two halvings
    assert shapes["layer3.convs.6.weight"] == (128, 128, 3)
    assert shapes["layer1.se.se.3.weight"] == (1024, 128, 1)          # SE without BatchNorm, as in SASV2
    assert shapes["attention.0.weight"] == (256, 4608, 1) and shapes["fc6.weight"] == (192, 3072)
    assert not any(k.startswith(("features.", "torchfbank.")) for k in shapes)   # front-end buffers not persistent


def test_eval_shape_determinism_and_no_batch_leakage(model):
    torch.manual_seed(1)
    wave = torch.randn(3, WAVE_SAMPLES)
    with torch.inference_mode():
        a = model(wave)
        b = model(wave)
        single = model(wave[2:])
        shortest = model(torch.randn(1, model.min_samples))
    assert a.shape == (3, 192) and a.dtype == torch.float32 and shortest.shape == (1, 192)
    assert torch.isfinite(a).all() and torch.isfinite(shortest).all()
    assert torch.equal(a, b)
    torch.testing.assert_close(single[0], a[2], rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match=r"^SKA-TDNN: input of 399 samples is shorter than one 400-sample"):
        model(torch.randn(1, 399))
    with pytest.raises(InputError, match=r"^SKA-TDNN: forward\(aug=True\) but the model was built without"):
        model(wave, aug=True)


def test_augmented_training_step():
    """aug=True applies SpecAugment to the (B, n_mels, frames) features and gradients reach the 2-D front."""
    seen = []

    def recording_spec_augment(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return SpecAugment()(x)

    torch.manual_seed(2)
    small = asv.build_model("SKA-TDNN", C=64, n_mels=40, spec_augment=recording_spec_augment).train()
    out = small(torch.randn(2, WAVE_SAMPLES), aug=True)
    assert out.shape == (2, 192) and torch.isfinite(out).all()
    assert seen == [(2, 40, 41)]
    out.pow(2).sum().backward()
    assert small.frt_block1.skfwse.fcs[0].weight.grad.abs().sum() > 0
    assert small.conv1.weight.shape == (64, 128 * 10, 5)               # 40 mels -> 20 -> 10 bins
    with pytest.raises(InputError, match=r"^SKA-TDNN: C must be a multiple of the Res2 scale 8, got 60$"):
        asv.build_model("SKA-TDNN", C=60)


def test_sasv2_checkpoint_round_trip(tmp_path, model):
    torch.manual_seed(3)
    loss = _perturbed(build_loss("aamsoftmax", 192, 5))
    path = tmp_path / "model_000010.model"
    torch.save(sasv2_state(model, loss), path)
    dst, dst_loss = asv.build_model("SKA-TDNN").eval(), build_loss("aamsoftmax", 192, 5)
    report = load_asv_state(dst, dst_loss, path)
    assert report.layout == "voxceleb_trainer"
    assert sorted(report.dropped_frontend) == ["torchfbank.0.flipped_filter", "torchfbank.1.mel_scale.fb",
                                               "torchfbank.1.spectrogram.window"]
    assert not (report.missing or report.unexpected or report.mismatched or report.ignored_loss)
    assert torch.equal(dst_loss.weight, loss.weight)
    wave = torch.randn(2, WAVE_SAMPLES)
    with torch.inference_mode():
        assert torch.equal(dst(wave), model(wave))


def test_other_architectures_fail_with_one_line(model):
    ecapa = asv.build_model("ECAPA-TDNN", C=1024)
    with pytest.raises(InputError) as err:
        load_asv_state(asv.build_model("SKA-TDNN"), None, sasv2_state(ecapa, None))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("<state dict>: voxceleb_trainer checkpoint does not fit: ")
    assert "missing keys (frt_conv1.weight, " in message
    assert "conv1.weight: checkpoint (1024, 80, 5) vs model (1024, 2560, 5)" in message
    assert message.endswith("is this an ECAPA-TDNN (C=1024) checkpoint?")

    with pytest.raises(InputError, match=r"^<state dict>: .*unexpected keys \(.*is this a ResNetSE34L \(SAP\) "
                                         r"checkpoint\?$"):
        load_asv_state(asv.build_model("SKA-TDNN"), None, {f"__S__.{k}": v for k, v in
                                                           asv.build_model("ResNetSE34L").state_dict().items()})
    # and the other way round: an SKA-TDNN checkpoint is named as such, not as the ECAPA-TDNN it contains
    with pytest.raises(InputError, match=r"unexpected keys \(frt_conv1.weight, .* is this a SKA-TDNN \(C=1024\) "
                                         r"checkpoint\?$"):
        load_asv_state(ecapa, None, sasv2_state(model, None))
