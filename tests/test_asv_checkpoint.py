"""Community checkpoint layouts load into our models; wrong ones fail with one clear line."""
from __future__ import annotations

import pytest
import torch
import torchaudio

import asv
from asv.checkpoint import load_asv_state, save_asv_state
from asv.losses import build_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _torchaudio_buffers(n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> dict[str, torch.Tensor]:
    """The buffers a seed's torchaudio MelSpectrogram puts into its state dict."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                                               f_min=f_min, f_max=f_max, window_fn=torch.hamming_window, n_mels=n_mels)
    return dict(mel.state_dict())


PRE_EMPHASIS = torch.tensor([-0.97, 1.0]).view(1, 1, 2)


def voxceleb_trainer_state(model, loss, with_pre_emphasis: bool, n_mels: int) -> dict[str, torch.Tensor]:
    """Our state renamed as SpeakerNet stores it: `__S__.` model, `__L__.` loss, torchfb buffers included."""
    state = {f"__S__.{k}": v.clone() for k, v in model.state_dict().items()}
    if with_pre_emphasis:   # ResNetSE34V2: torchfb = Sequential(PreEmphasis, MelSpectrogram)
        state["__S__.torchfb.0.flipped_filter"] = PRE_EMPHASIS
        state.update({f"__S__.torchfb.1.{k}": v for k, v in _torchaudio_buffers(n_mels).items()})
    else:                   # ResNetSE34L: torchfb = MelSpectrogram
        state.update({f"__S__.torchfb.{k}": v for k, v in _torchaudio_buffers(n_mels).items()})
    if loss is not None:
        state.update({f"__L__.{k}": v.clone() for k, v in loss.state_dict().items()})
    return state


def ecapa_state(model, loss) -> dict[str, torch.Tensor]:
    """Our state renamed as TaoRuijie's ECAPAModel stores it, with its torchfbank buffers."""
    state = {f"speaker_encoder.{k}": v.clone() for k, v in model.state_dict().items()}
    state["speaker_encoder.torchfbank.0.flipped_filter"] = PRE_EMPHASIS
    state.update({f"speaker_encoder.torchfbank.1.{k}": v for k, v in _torchaudio_buffers(80, 20.0, 7600.0).items()})
    state.update({f"speaker_loss.{k}": v.clone() for k, v in loss.state_dict().items()})
    return state


def _perturbed(module):
    """A trained-looking copy source: every parameter and BN statistic moved away from its initial value."""
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.add_(0.01 * torch.randn_like(t))
    return module


def _assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return _perturbed(asv.build_model("ResNetSE34L")).eval()


def test_voxceleb_trainer_resnetse34v2_with_loss(tmp_path):
    torch.manual_seed(1)
    src, src_loss = _perturbed(asv.build_model("ResNetSE34V2")), _perturbed(build_loss("aamsoftmax", 512, 7))
    path = tmp_path / "baseline_v2_ap.model"
    torch.save(voxceleb_trainer_state(src, src_loss, True, 64), path)
    dst, dst_loss = asv.build_model("ResNetSE34V2"), build_loss("aamsoftmax", 512, 7)
    report = load_asv_state(dst, dst_loss, path)
    assert report.layout == "voxceleb_trainer"
    assert sorted(report.dropped_frontend) == ["torchfb.0.flipped_filter", "torchfb.1.mel_scale.fb",
                                               "torchfb.1.spectrogram.window"]
    _assert_same(src, dst)
    _assert_same(src_loss, dst_loss)
    wave = torch.randn(1, 12000)
    with torch.no_grad():
        assert torch.equal(src.eval()(wave), dst.eval()(wave))


def test_voxceleb_trainer_containers_and_ddp_prefixes(tmp_path, lite):
    state = voxceleb_trainer_state(lite, build_loss("angleproto", 512, 2), False, 40)
    variants = {
        "flat": state,
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "new_format": {"model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []},
                       "epoch": 3},
        "legacy": {"model": {k[len("__S__."):]: v for k, v in state.items() if k.startswith("__S__.")}},
    }
    for name, ckpt in variants.items():
        path = tmp_path / f"{name}.model"
        torch.save(ckpt, path)
        dst = asv.build_model("ResNetSE34L")
        report = load_asv_state(dst, None, path)
        _assert_same(lite, dst)
        assert report.dropped_frontend == ["torchfb.spectrogram.window", "torchfb.mel_scale.fb"], name
        assert report.ignored_loss == ([] if name == "legacy" else ["b", "w"]), name


def test_ecapa_layout_with_loss(tmp_path):
    torch.manual_seed(2)
    src, src_loss = _perturbed(asv.build_model("ECAPA-TDNN")), _perturbed(build_loss("aamsoftmax", 192, 5))
    path = tmp_path / "pretrain.model"
    state = ecapa_state(src, src_loss)
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    dst, dst_loss = asv.build_model("ECAPA-TDNN"), build_loss("aamsoftmax", 192, 5)
    report = load_asv_state(dst, dst_loss, path)
    assert report.layout == "ECAPA-TDNN (TaoRuijie)" and len(report.dropped_frontend) == 3
    _assert_same(src, dst)
    _assert_same(src_loss, dst_loss)


def test_our_format_round_trip_and_bare_state(tmp_path, lite):
    loss = _perturbed(build_loss("softmaxproto", 512, 3))
    path = tmp_path / "ours.pt"
    save_asv_state(path, lite, loss, arch="ResNetSE34L", epoch=4)
    dst, dst_loss = asv.build_model("ResNetSE34L"), build_loss("softmaxproto", 512, 3)
    assert load_asv_state(dst, dst_loss, path).layout == "ours"
    _assert_same(lite, dst)
    _assert_same(loss, dst_loss)
    bare = {k: v for k, v in lite.state_dict().items() if not k.endswith("num_batches_tracked")}   # old torch
    dst = asv.build_model("ResNetSE34L")
    assert load_asv_state(dst, None, bare).layout == "bare model state"
    assert torch.equal(dst.fc.weight, lite.fc.weight)


def test_wrong_architecture_fails_with_one_clear_line(tmp_path, lite):
    path = tmp_path / "ckpt.pt"
    torch.save(voxceleb_trainer_state(lite, None, False, 40), path)
    with pytest.raises(ValueError) as err:
        load_asv_state(asv.build_model("ResNetSE34V2"), None, path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("ckpt.pt: voxceleb_trainer checkpoint does not fit: ")
    assert "9 missing keys (conv1.bias, attention.0.weight, " in message
    assert "3 unexpected keys (attention, sap_linear.weight, sap_linear.bias)" in message
    assert "246 shape mismatches (" in message
    assert "conv1.weight: checkpoint (16, 1, 7, 7) vs model (32, 1, 3, 3)" in message
    assert "torchfb.mel_scale.fb: checkpoint (257, 40) vs model (257, 64)" in message
    assert message.endswith("— is this a ResNetSE34L (SAP) checkpoint?")
    # a different configuration of the right architecture is named too
    ecapa = ecapa_state(asv.build_model("ECAPA-TDNN", C=1024), build_loss("aamsoftmax", 192, 2))
    with pytest.raises(ValueError, match=r"^<state dict>: .*shape mismatch.* is this an ECAPA-TDNN \(C=1024\) "
                                         r"checkpoint\?$"):
        load_asv_state(asv.build_model("ECAPA-TDNN"), None, ecapa)


def test_loss_mismatch_front_end_mismatch_and_non_strict(lite):
    state = voxceleb_trainer_state(lite, build_loss("amsoftmax", 512, 3), False, 40)
    with pytest.raises(ValueError, match=r"1 missing key \(loss weight\), 1 unexpected key \(loss W\)"
                                         r" \(its loss looks like amsoftmax\)$"):   # no architecture hint
        load_asv_state(asv.build_model("ResNetSE34L"), build_loss("aamsoftmax", 512, 3), state)
    no_loss = voxceleb_trainer_state(lite, None, False, 40)
    with pytest.raises(ValueError, match=r"1 missing key \(loss weight\)"):
        load_asv_state(asv.build_model("ResNetSE34L"), build_loss("aamsoftmax", 512, 3), no_loss)
    # same n_mels, different mel range (an ECAPA-style 20-7600 Hz filterbank): the front-ends disagree
    bad_fb = dict(no_loss)
    bad_fb["__S__.torchfb.mel_scale.fb"] = _torchaudio_buffers(40, 20.0, 7600.0)["mel_scale.fb"]
    with pytest.raises(ValueError, match=r"torchfb.mel_scale.fb: values differ"):
        load_asv_state(asv.build_model("ResNetSE34L"), None, bad_fb)
    # pre-emphasis buffer for a model without pre-emphasis is unexpected
    with pytest.raises(ValueError, match=r"unexpected key \(torchfb.0.flipped_filter\)"):
        load_asv_state(asv.build_model("ResNetSE34L"), None,
                       {**no_loss, "__S__.torchfb.0.flipped_filter": PRE_EMPHASIS})
    # non-strict: loads what fits, reports the rest
    partial = {k: v for k, v in no_loss.items() if not k.startswith("__S__.fc.")}
    partial["__S__.extra.weight"] = torch.zeros(1)
    dst = asv.build_model("ResNetSE34L")
    fc_before = dst.fc.weight.clone()
    report = load_asv_state(dst, None, partial, strict=False)
    assert report.missing == ["fc.weight", "fc.bias"] and report.unexpected == ["extra.weight"]
    assert torch.equal(dst.layer1[0].conv1.weight, lite.layer1[0].conv1.weight)
    assert torch.equal(dst.fc.weight, fc_before)


class _Pickled:
    pass


def test_unreadable_files(tmp_path):
    model = asv.build_model("ResNetSE34L")
    with pytest.raises(ValueError, match=r"absent.pt: checkpoint file not found"):
        load_asv_state(model, None, tmp_path / "absent.pt")
    path = tmp_path / "pickled.pt"
    torch.save({"model": _Pickled()}, path)
    with pytest.raises(ValueError, match=r"^pickled.pt: not a loadable weights-only checkpoint"):
        load_asv_state(model, None, path)
    path = tmp_path / "other.pt"
    torch.save({"optimizer": {"lr": 0.1}}, path)
    with pytest.raises(ValueError, match=r"^other.pt: no model state dict found \(top-level keys: optimizer\)"):
        load_asv_state(model, None, path)
