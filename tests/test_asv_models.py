"""Speaker models: shapes, sizes, seed-compatible names and front-end, determinism, training, scoring."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio

import asv
from asv.blocks import context_attention
from asv.features import LogMelFrontend
from asv.losses import build_loss
from asv.scoring import cosine_scores, eval_samples, extract_embeddings, score_trials, trial_eer

pytestmark = pytest.mark.usefixtures("one_thread")


# Parameter counts of the seed architectures (embedding network only, no loss head). ResNetSE34V2 = the 8.0M
# "H/ASP" model and ResNetSE34L = the 1.4M "Fast ResNet-34" of voxceleb_trainer; ECAPA-TDNN C=1024 is what
# TaoRuijie's ECAPAModel prints as "14.73" (= params / 2**20).
EXPECTED = {
    ("ResNetSE34V2", ()): (512, 8_028_492),
    ("ResNetSE34L", ()): (512, 1_437_078),
    ("ECAPA-TDNN", ()): (192, 6_978_176),
    ("ECAPA-TDNN", (("C", 1024),)): (192, 15_444_544),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {key: asv.build_model(key[0], **dict(key[1])).eval() for key in EXPECTED}


@pytest.mark.parametrize("key", list(EXPECTED), ids=lambda k: k[0] + "".join(f"-{a}{b}" for a, b in k[1]))
def test_shape_size_and_determinism(models, key):
    model = models[key]
    dim, params = EXPECTED[key]
    assert model.embedding_dim == dim
    assert sum(p.numel() for p in model.parameters()) == params
    if key[1]:   # the large ECAPA: size and shape only, the checks below are architecture-generic
        with torch.inference_mode():
            assert model(torch.randn(1, 16000)).shape == (1, dim)
        return
    torch.manual_seed(1)
    wave = torch.randn(2, 16000)
    with torch.inference_mode():
        a = model(wave)
        b = model(wave)
        single = model(wave[1:])
        longer = model(torch.randn(1, 24000))
    assert a.shape == (2, dim) and longer.shape == (1, dim) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-4)   # no batch leakage in eval mode


def test_state_dict_uses_seed_names_and_no_frontend_buffers(models):
    v2 = models[("ResNetSE34V2", ())].state_dict()
    lite = models[("ResNetSE34L", ())].state_dict()
    ecapa = models[("ECAPA-TDNN", ())].state_dict()
    for key in ("conv1.bias", "layer1.0.se.fc.0.weight", "layer2.0.downsample.1.running_var", "attention.0.weight",
                "attention.2.running_mean", "attention.3.weight", "fc.weight"):
        assert key in v2
    assert v2["attention.0.weight"].shape == (128, 256 * 8, 1) and v2["fc.weight"].shape == (512, 256 * 8 * 2)
    for key in ("attention", "sap_linear.weight", "layer4.2.se.fc.2.bias"):
        assert key in lite
    assert "conv1.bias" not in lite and lite["layer4.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    for key in ("layer1.convs.6.weight", "layer3.bns.0.running_mean", "layer2.se.se.1.weight", "layer2.se.se.3.bias",
                "layer4.weight", "attention.4.weight", "bn5.weight", "fc6.weight", "bn6.running_var"):
        assert key in ecapa
    assert ecapa["attention.0.weight"].shape == (256, 4608, 1)
    for state in (v2, lite, ecapa):
        assert not any(k.startswith(("features.", "torchfb")) for k in state)


def _seed_frontend(wave, n_mels, f_min, f_max, pre_emphasis):
    """The seeds' front-end built from torchaudio, to check ours against."""
    x = wave
    if pre_emphasis:
        x = F.conv1d(F.pad(x.unsqueeze(1), (1, 0), "reflect"), torch.tensor([[[-0.97, 1.0]]])).squeeze(1)
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                                               f_min=f_min, f_max=f_max, window_fn=torch.hamming_window, n_mels=n_mels)
    return (mel(x) + 1e-6).log()


def test_frontend_matches_seed_torchaudio_stack():
    torch.manual_seed(2)
    wave = torch.randn(2, 8000)
    ref = _seed_frontend(wave, 64, 0.0, None, True)
    torch.testing.assert_close(LogMelFrontend(64)(wave), torch.nn.functional.instance_norm(ref), atol=1e-4, rtol=1e-4)
    ref = _seed_frontend(wave, 80, 20.0, 7600.0, True)
    ours = LogMelFrontend(80, 20.0, 7600.0, 0.97, norm="mean")(wave)
    torch.testing.assert_close(ours, ref - ref.mean(dim=-1, keepdim=True), atol=1e-4, rtol=1e-4)
    ref = _seed_frontend(wave, 40, 0.0, None, False)
    torch.testing.assert_close(LogMelFrontend(40, pre_emphasis=None)(wave), F.instance_norm(ref), atol=1e-4, rtol=1e-4)


def test_ecapa_attention_shortcut_equals_seed_formula(models):
    model = models[("ECAPA-TDNN", ())]
    torch.manual_seed(3)
    with torch.no_grad():
        model.attention[2].running_mean.normal_()          # make the BN non-trivial
        x = torch.relu(torch.randn(2, 1536, 50))
        t = x.shape[-1]
        global_x = torch.cat((x, x.mean(dim=2, keepdim=True).repeat(1, 1, t),
                              torch.sqrt(torch.var(x, dim=2, keepdim=True).clamp(min=1e-4)).repeat(1, 1, t)), dim=1)
        torch.testing.assert_close(context_attention(model.attention, x), model.attention(global_x),
                                   atol=1e-5, rtol=1e-4)
        model.attention[2].running_mean.zero_()


def test_frontend_gets_no_gradient_and_aug_hook(models):
    model = asv.build_model("ResNetSE34L", spec_augment=lambda f: torch.zeros_like(f)).eval()
    wave = torch.randn(1, 16000, requires_grad=True)
    out = model(wave)
    out.sum().backward()
    assert wave.grad is None                              # features computed without autograd, as in the seeds
    with torch.no_grad():
        assert not torch.allclose(model(wave, aug=True), out)
    with pytest.raises(ValueError, match="without spec_augment"):
        models[("ECAPA-TDNN", ())](torch.randn(1, 16000), aug=True)
    # from a config: data.augment.SpecAugment settings; masking only in training mode, state dict unchanged
    model = asv.build_model("ResNetSE34L", spec_augment={"freq_masks": 2, "max_freq_width": 20})
    assert model.state_dict().keys() == models[("ResNetSE34L", ())].state_dict().keys()
    wave = torch.randn(2, 16000)
    torch.manual_seed(7)
    with torch.no_grad():
        assert not torch.allclose(model(wave, aug=True), model(wave))
        model.eval()
        assert torch.equal(model(wave, aug=True), model(wave))
    with pytest.raises(ValueError, match="ECAPA-TDNN: bad spec_augment settings"):
        asv.build_model("ECAPA-TDNN", spec_augment={"masks": 3})


def test_bad_input_and_dispatch_errors(models):
    model = models[("ResNetSE34L", ())]
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        model(torch.randn(16000))
    with pytest.raises(ValueError, match="shorter than one"):
        model(torch.randn(1, 100))
    with pytest.raises(ValueError, match="ResNetSE34V2, ResNetSE34L, ECAPA-TDNN"):
        asv.build_model("ResNet34")
    with pytest.raises(ValueError, match="'channel'"):
        asv.build_model("ECAPA-TDNN", channel=1024)
    with pytest.raises(ValueError, match="encoder_type"):
        asv.build_model("ResNetSE34V2", encoder_type="TAP")


@pytest.mark.parametrize("arch,encoder,width", [("ResNetSE34V2", "SAP", 256 * 8), ("ResNetSE34L", "ASP", 256)])
def test_alternative_pooling(arch, encoder, width):
    model = asv.build_model(arch, encoder_type=encoder, embedding_dim=64).eval()
    assert model.fc.weight.shape == (64, width)
    with torch.no_grad():
        assert model(torch.randn(2, 12000)).shape == (2, 64)


def test_training_steps_reduce_loss():
    """A few AAM-softmax steps on two fixed random 'speakers' fit them: the whole model receives gradients."""
    torch.manual_seed(4)
    model = asv.build_model("ResNetSE34L", embedding_dim=32, channels=(8, 16, 32, 64), layers=(1, 1, 1, 1))
    loss_fn = build_loss("aamsoftmax", 32, 2, margin=0.1, scale=10.0)
    wave = torch.randn(4, 1, 8000)
    label = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=3e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss, acc = loss_fn(model(wave.flatten(0, 1)).unsqueeze(1), label)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert model.conv1.weight.grad.abs().sum() > 0
    assert losses[-1] < 0.7 * losses[0], losses


def test_extract_embeddings_and_scores(models):
    model = models[("ResNetSE34L", ())]
    rng = np.random.default_rng(5)
    short, long = rng.standard_normal(9000).astype(np.float32), rng.standard_normal(40000).astype(np.float32)
    full = extract_embeddings(model, [short, long])
    crops = extract_embeddings(model, [short, long], num_crops=3, eval_frames=100)
    assert full.shape == crops.shape == (2, 512)
    torch.testing.assert_close(full.norm(dim=1), torch.ones(2))
    # crop mode = mean of the normalised embeddings of the evenly spaced crops, renormalised
    n = eval_samples(100)
    assert n == 16240
    starts = np.linspace(0, len(long) - n, 3).astype(int)
    with torch.no_grad():
        manual = F.normalize(model(torch.from_numpy(np.stack([long[s:s + n] for s in starts]))), dim=1).mean(0)
    torch.testing.assert_close(crops[1], F.normalize(manual, dim=0), atol=1e-5, rtol=1e-4)
    model.train()
    extract_embeddings(model, [short])
    assert model.training                                   # mode restored
    model.eval()
    scores = score_trials({"a": full[0], "b": full[1], "a2": 3 * full[0]}, [("a", "a2"), ("a", "b")])
    assert scores[0] == pytest.approx(1.0, abs=1e-6) and scores[1] < 1.0
    np.testing.assert_allclose(cosine_scores(full, full), np.ones(2), atol=1e-6)
    with pytest.raises(ValueError, match="no embedding for 1 trial ids \\(zz\\)"):
        score_trials({"a": full[0]}, [("a", "zz")])
    assert trial_eer(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 0.0
