"""MFA-Conformer: the published size and state-dict names, eval/train behaviour, SASV2 checkpoints load strictly."""
from __future__ import annotations

import pytest
import torch
import torchaudio

import asv
from asv.checkpoint import guess_architecture, load_asv_state
from asv.losses import build_loss
from common.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

# sum of parameters of the SASV2 baseline's MFA_Conformer.MainModel (6 blocks, d_model 256, 192-d output)
PUBLISHED_PARAMS = 21_924_288
CONCAT_LINEAR = 6 * (512 * 256 + 256)   # the unused, frozen WeNet concat_linear of each block

# SASV2's models/MFA_Conformer.py front-end: torchfbank = Sequential(PreEmphasis, MelSpectrogram(...)) keeps these
SASV2_FBANK = ["torchfbank.0.flipped_filter", "torchfbank.1.mel_scale.fb", "torchfbank.1.spectrogram.window"]


@pytest.fixture(scope="module")
def model():
    """The full published configuration, moved off its initial values so a wrong load would show."""
    torch.manual_seed(0)
    net = asv.build_model("MFA-Conformer")
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(0.01 * torch.randn_like(t))
    return net.eval()


def sasv2_state(net, loss, ddp: bool) -> dict[str, torch.Tensor]:
    """Our state renamed as SASVNet.saveParameters writes it: `__S__.` model with its torchaudio buffers, `__L__.`
    loss, and `module.` on every key when saved from the DDP-wrapped model."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                                               f_min=20, f_max=7600, window_fn=torch.hamming_window, n_mels=80)
    state = {f"__S__.{k}": v.clone() for k, v in net.state_dict().items()}
    state["__S__.torchfbank.0.flipped_filter"] = torch.tensor([[[-0.97, 1.0]]])
    state.update({f"__S__.torchfbank.1.{k}": v for k, v in mel.state_dict().items()})
    state.update({f"__L__.{k}": v.clone() for k, v in loss.state_dict().items()})
    return {("module." if ddp else "") + k: v for k, v in state.items()}


def test_published_size_and_state_dict_names(model):
    assert model.embedding_dim == 192 and model.min_samples == 640
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == PUBLISHED_PARAMS - CONCAT_LINEAR
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conformer.embed.conv.2.weight"] == (256, 256, 3, 3)
    assert shapes["conformer.embed.out.0.weight"] == (256, 256 * 39)
    assert shapes["conformer.encoders.5.self_attn.pos_bias_u"] == (4, 64)
    assert shapes["conformer.encoders.5.self_attn.linear_pos.weight"] == (256, 256)
    assert shapes["conformer.encoders.0.conv_module.depthwise_conv.weight"] == (256, 1, 15)
    assert shapes["conformer.encoders.0.feed_forward_macaron.w_1.weight"] == (2048, 256)
    assert shapes["conformer.encoders.3.concat_linear.weight"] == (256, 512)
    assert shapes["conformer.after_norm.weight"] == (1536,)
    assert shapes["attention.0.weight"] == (256, 4608, 1) and shapes["bn.weight"] == (3072,)
    assert shapes["fc.weight"] == (192, 3072)
    assert not any(k.startswith(("features.", "torchfbank.")) for k in shapes)
    assert guess_architecture(model.state_dict()) == "MFA-Conformer (6 blocks, d_model=256)"


def test_eval_shape_determinism_and_no_batch_leakage(model):
    torch.manual_seed(1)
    wave = torch.randn(2, 8000)
    with torch.inference_mode():
        a, b, single = model(wave), model(wave), model(wave[1:])
    assert a.shape == (2, 192) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-4)


def test_variable_lengths_and_the_shortest_input(model):
    # STFT frames = samples // 160 + 1: 5, 6, 7 and 78 frames -> 2, 2, 3 and 38 after the stride-2 subsampling
    with torch.inference_mode():
        for n in (640, 800, 961, 12345):
            out = model(torch.randn(1, n))
            assert out.shape == (1, 192) and torch.isfinite(out).all(), n
        with pytest.raises(InputError, match="639 samples is shorter than the 640"):
            model(torch.randn(1, 639))


def test_training_with_spec_augment_and_dropout():
    """aug=True runs SpecAugment, dropout acts only in training, and every trainable parameter gets a gradient
    (what DistributedDataParallel without find_unused_parameters needs); the unused concat_linear gets none."""
    torch.manual_seed(2)
    net = asv.build_model("MFA-Conformer", num_blocks=2, d_model=64, ffn_dim=128, spec_augment=True).train()
    wave = torch.randn(3, 4000)
    net(wave, aug=True).square().sum().backward()
    for name, p in net.named_parameters():
        assert (p.grad is not None) == p.requires_grad == ("concat_linear" not in name), name
    with torch.no_grad():
        assert not torch.equal(net(wave), net(wave))           # dropout in training
        net.eval()
        assert torch.equal(net(wave), net(wave))
    with pytest.raises(InputError, match="built without spec_augment"):
        asv.build_model("MFA-Conformer", num_blocks=1, d_model=32, ffn_dim=32)(wave, aug=True)


@pytest.mark.parametrize("ddp", [False, True], ids=["flat", "ddp"])
def test_sasv2_checkpoint_round_trips_strictly(tmp_path, model, ddp):
    torch.manual_seed(3)
    loss = build_loss("aamsoftmax", 192, 5)
    path = tmp_path / "model_000000001.model"
    torch.save(sasv2_state(model, loss, ddp), path)
    dst, dst_loss = asv.build_model("MFA-Conformer"), build_loss("aamsoftmax", 192, 5)
    report = load_asv_state(dst, dst_loss, path)
    assert report.layout == "voxceleb_trainer" and sorted(report.dropped_frontend) == SASV2_FBANK
    src_state, dst_state = model.state_dict(), dst.state_dict()
    assert src_state.keys() == dst_state.keys()
    assert all(torch.equal(src_state[k], dst_state[k]) for k in src_state)
    assert torch.equal(loss.weight, dst_loss.weight)
    wave = torch.randn(2, 6000)
    with torch.inference_mode():
        assert torch.equal(model(wave), dst.eval()(wave))


def test_ecapa_checkpoint_is_refused_with_one_line():
    torch.manual_seed(4)
    ecapa = asv.build_model("ECAPA-TDNN").state_dict()
    with pytest.raises(InputError) as err:
        load_asv_state(asv.build_model("MFA-Conformer", num_blocks=1, d_model=32, ffn_dim=32), None, ecapa)
    message = str(err.value)
    assert "\n" not in message and message.startswith("<state dict>: bare model state checkpoint does not fit: ")
    assert "missing keys (conformer.embed.conv.0.weight, " in message
    assert "unexpected keys (conv1.weight, conv1.bias, " in message
    assert "shape mismatches (attention.0.weight: checkpoint (256, 4608, 1) vs model (256, 96, 1)" in message
    assert message.endswith("is this an ECAPA-TDNN (C=512) checkpoint?")
