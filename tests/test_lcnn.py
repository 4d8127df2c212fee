"""LFCC-LCNN countermeasure: features, shapes, errors, checkpoints and a few training steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.fft import dct

from cm import build_model
from cm.checkpoint import load_cm_state, save_cm_state
from cm.features import LFCC, NIILFCC, PowerSpectrumForExport, dct_matrix
from cm.lcnn import CONFIGS, MaxFeatureMap, MaxPool2x2
from cm.losses import build_loss


def test_dct_matrix_is_scipys_orthonormal_dct():
    x = np.random.default_rng(0).normal(size=(5, 20))
    np.testing.assert_allclose(x @ dct_matrix(20, 13).double().numpy().T, dct(x, type=2, norm="ortho")[:, :13],
                               atol=1e-5)


def test_lfcc_has_cepstra_deltas_and_10ms_frames():
    feats = LFCC()(torch.randn(2, 16000) * 0.1)
    assert feats.shape == (2, 60, 101)
    # a constant signal gives constant cepstra: deltas vanish away from the edges
    flat = LFCC()(torch.ones(1, 8000) * 0.3 + 1e-3 * torch.randn(1, 8000))
    assert flat[0, 20:, 5:-5].abs().max() < 0.05 * flat[0, :20, 5:-5].abs().max()


def test_any_length_gives_fixed_size_outputs():
    model = build_model("LCNN").eval()
    with torch.inference_mode():
        for n in (model.min_samples, 16000, 40123):
            embedding, logits = model(torch.randn(3, n) * 0.1)
            assert embedding.shape == (3, 128) and logits.shape == (3, 2)
    assert model.embedding_dim == 128
    assert build_model("LCNN", embedding_dim=64, channels=[16, 24, 32, 16])(torch.randn(2, 8000))[0].shape == (2, 64)
    assert build_model("LCNN", features="lps", channels=[8, 8, 8, 8])(torch.randn(2, 8000))[1].shape == (2, 2)


def test_bad_inputs_and_keywords_are_errors():
    model = build_model("LCNN")
    with pytest.raises(ValueError, match=f"at least {model.min_samples} samples"):
        model(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        model(torch.zeros(16000))
    with pytest.raises(ValueError, match="unknown keyword 'filts' for CM model LCNN"):
        build_model("LCNN", filts=[1])
    with pytest.raises(ValueError, match="4 stage widths"):
        build_model("LCNN", channels=[8, 8])
    with pytest.raises(ValueError, match="features must be 'lfcc' or 'lps'"):
        build_model("LCNN", features="mfcc")
    with pytest.raises(ValueError, match="each feature type once"):
        build_model("LCNN", features=["lfcc", "lfcc"])
    with pytest.raises(ValueError, match=r"1 channel lists for 2 feature streams"):
        build_model("LCNN", features=["lfcc", "lps"], channels=[[8, 8, 8, 8]])


def test_two_streams_each_see_their_features_and_share_one_embedding():
    torch.manual_seed(0)
    model = build_model("LCNN-LFCC-LPS").eval()
    assert [type(s.features).__name__ for s in model.streams] == ["LFCC", "LogPowerSpectrum"]
    # pooled width: LFCC body 32 channels x 60 // 16 rows, LPS body 16 channels x 256 // 16 rows; mean + std
    assert model.embedding.in_features == 2 * (32 * 3 + 16 * 16)
    wave = torch.randn(2, 16000) * 0.1
    with torch.inference_mode():
        embedding, logits = model(wave)
        assert embedding.shape == (2, 128) and logits.shape == (2, 2)
        # the second stream matters: changing its body changes the output
        model.streams[1].body[0][0].weight.mul_(2.0)
        assert not torch.allclose(model(wave)[1], logits)
    shared = build_model("LCNN", features=["lfcc", "lps"], channels=[8, 8, 8, 8])
    assert [s.width for s in shared.streams] == [8 * 3, 8 * 16]


def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    torch.manual_seed(0)
    model = build_model("LCNN").eval()
    save_cm_state(tmp_path / "lcnn.pt", model, arch="LCNN")
    other = build_model("LCNN").eval()
    load_cm_state(other, tmp_path / "lcnn.pt")
    wave = torch.randn(2, 9000) * 0.1
    with torch.inference_mode():
        assert torch.equal(model(wave)[1], other(wave)[1])
    with pytest.raises(ValueError, match=(r"lcnn\.pt: checkpoint does not fit the AASIST-L model"
                                          r".*looks like an LCNN checkpoint")):
        load_cm_state(build_model("AASIST-L"), tmp_path / "lcnn.pt")
    with pytest.raises(ValueError, match=(r"lcnn\.pt: checkpoint does not fit the LCNN-LFCC-LPS model"
                                          r".*looks like an LCNN checkpoint")):
        load_cm_state(build_model("LCNN-LFCC-LPS"), tmp_path / "lcnn.pt")


@pytest.mark.parametrize("loss_name", ["WeightedCE", "OCSoftmax"])
def test_training_steps_reduce_the_loss(loss_name):
    torch.manual_seed(0)
    model = build_model("LCNN", channels=[8, 12, 16, 8], embedding_dim=32).train()
    loss_fn = build_loss(loss_name, model.embedding_dim)
    # bona fide: broadband noise; spoof: the same noise low-passed (a band-limited vocoder)
    noise = torch.randn(8, 8000) * 0.1
    lowpassed = torch.nn.functional.avg_pool1d(noise.unsqueeze(1), 5, 1, 2).squeeze(1)
    wave, labels = torch.cat([noise[:4], lowpassed[4:]]), torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    optimiser = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=3e-3)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks every step: a fixed objective
        return loss_fn(*model(wave), labels)

    before = loss().item()
    for _ in range(15):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    assert loss().item() < 0.5 * before
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused == (set() if loss_name == "WeightedCE" else {"out_layer.weight", "out_layer.bias"})


@pytest.mark.parametrize("arch,options", [("LCNN", {}), ("LCNN-LFCC-LPS", {}), ("LFCC-LCNN-ASVspoof2021", {}),
                                          ("AASIST-L", {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]],
                                                        "gat_dims": [8, 8]})])
def test_logits_from_a_cached_embedding_equal_the_forward_logits(arch, options):
    """The ablation's log-odds / posterior CM scores come from cached embeddings through this head."""
    torch.manual_seed(0)
    model = build_model(arch, **options).eval()
    with torch.no_grad():
        embedding, logits = model(torch.randn(2, 16000) * 0.1)
        torch.testing.assert_close(model.logits_from_embedding(embedding), logits)


@pytest.mark.parametrize("shape", [(2, 6, 9, 7), (1, 4, 8, 10)])
def test_fast_max_feature_map_and_pool_equal_the_plain_ops(shape):
    """The fast MFM and 2x2 pool (cm.lcnn) give torch.maximum's / max_pool2d's values and gradients, odd sizes
    included; exact ties split the MFM gradient in half, as torch.maximum does."""
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    a, b = x.chunk(2, dim=1)
    for fast, plain, source in ((MaxFeatureMap(), lambda t: torch.maximum(*t.chunk(2, dim=1)), x),
                                (MaxPool2x2(), lambda t: F.max_pool2d(t, 2), x[:, :3])):
        y_plain = plain(source)
        grad = torch.randn_like(y_plain)
        (g_plain,) = torch.autograd.grad(y_plain, x, grad)
        y_fast = fast(source)
        (g_fast,) = torch.autograd.grad(y_fast, x, grad)
        assert torch.equal(y_fast, y_plain) and torch.equal(g_fast, g_plain)
        with torch.inference_mode():
            assert torch.equal(fast(source.detach()), y_plain.detach())
    tie = torch.ones(1, 2, 1, 1, requires_grad=True)
    (g,) = torch.autograd.grad(MaxFeatureMap()(tie).sum(), tie)
    assert g.flatten().tolist() == [0.5, 0.5]


def test_the_asvspoof2021_baseline_is_its_published_network():
    """asvspoof-challenge/2021 baseline_LA/model.py: NII LFCC (1024-point FFT, 0-4 kHz, energy in c0), the LCNN body
    of `LCNN`, dropout 0.7, two BLSTM(96 -> 2 x 48) with a skip, time average, Linear(96, 1) through a sigmoid."""
    torch.manual_seed(0)
    model = build_model("LFCC-LCNN-ASVspoof2021").eval()
    (stream,) = model.streams
    assert isinstance(stream.features, NIILFCC) and stream.features.n_fft == 1024
    assert stream.features.kept_bins == 256 and stream.features.energy and not stream.cmn
    assert model.dropout == 0.7 and model.embedding_dim == 96 == stream.width     # 32 channels x 60 // 16 rows
    toolkit = build_model("LCNN")
    assert isinstance(toolkit.streams[0].features, LFCC) and toolkit.streams[0].cmn      # today's LCNN unchanged
    body = [tuple(p.shape) for p in stream.body.parameters()]
    assert body == [tuple(p.shape) for p in toolkit.streams[0].body.parameters()]
    lstm = {k: tuple(v.shape) for k, v in model.blstm.state_dict().items()}
    assert lstm["lstm1.weight_ih_l0"] == (192, 96) and lstm["lstm2.weight_hh_l0_reverse"] == (192, 48)
    assert tuple(model.out_layer.weight.shape) == (1, 96)
    with torch.inference_mode():
        embedding, logits = model(torch.randn(3, 9000) * 0.1)
    assert embedding.shape == (3, 96) and logits.shape == (3, 2) and torch.equal(logits[:, 0], torch.zeros(3))


def test_the_baseline_loss_is_binary_cross_entropy():
    """Logits (0, s) make unweighted softmax cross-entropy the baseline's BCELoss on sigmoid(s)."""
    torch.manual_seed(0)
    model = build_model("LFCC-LCNN-ASVspoof2021").train()
    labels = torch.tensor([1, 0, 1, 0])
    torch.manual_seed(1)
    embedding, logits = model(torch.randn(4, 6000) * 0.1)
    ce = build_loss("WeightedCE", spoof_weight=1.0, bonafide_weight=1.0)(embedding, logits, labels)
    bce = F.binary_cross_entropy(torch.sigmoid(logits[:, 1]), labels.float())
    torch.testing.assert_close(ce, bce)


def test_the_baseline_learns():
    torch.manual_seed(0)
    model = build_model("LFCC-LCNN-ASVspoof2021", channels=[8, 12, 16, 8], dropout=0.0).train()
    loss_fn = build_loss("WeightedCE", spoof_weight=1.0, bonafide_weight=1.0)
    noise = torch.randn(8, 8000) * 0.1
    lowpassed = torch.nn.functional.avg_pool1d(noise.unsqueeze(1), 5, 1, 2).squeeze(1)
    wave, labels = torch.cat([noise[:4], lowpassed[4:]]), torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = loss_fn(*model(wave), labels).item()
    for _ in range(15):
        optimiser.zero_grad()
        loss_fn(*model(wave), labels).backward()
        optimiser.step()
    assert loss_fn(*model(wave), labels).item() < 0.5 * before
    assert all(p.grad is not None for p in model.parameters())


def test_front_end_and_pooling_options_are_checked():
    for options, message in (({"frontend": "kaldi"}, "frontend must be 'toolkit' .* or 'nii'"),
                             ({"energy": True}, r"max_freq \(1.0\) and energy \(True\) are options of frontend 'nii'"),
                             ({"max_freq": 0.5}, "are options of frontend 'nii'"),
                             ({"pooling": "attention"}, "pooling must be 'stats' .* or 'blstm'"),
                             ({"embedding_dim": None}, "pooling 'stats' needs an embedding_dim")):
        with pytest.raises(ValueError, match=message):
            build_model("LCNN", **options)
    with pytest.raises(ValueError, match="embedding_dim must be null or 96, got 64"):
        build_model("LFCC-LCNN-ASVspoof2021", embedding_dim=64)
    assert build_model("LFCC-LCNN-ASVspoof2021", embedding_dim=96).embedding_dim == 96
    both = build_model("LCNN-LFCC-LPS", frontend="nii", energy=True)            # the NII LFCC in the two-stream model
    assert [type(s.features).__name__ for s in both.streams] == ["NIILFCC", "LogPowerSpectrum"]
    with pytest.raises(ValueError, match=r"lcnn\.pt: checkpoint does not fit the LFCC-LCNN-ASVspoof2021 model"
                                         r".*looks like an LCNN checkpoint"):
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            save_cm_state(f"{tmp}/lcnn.pt", build_model("LCNN"), arch="LCNN")
            load_cm_state(build_model("LFCC-LCNN-ASVspoof2021"), f"{tmp}/lcnn.pt")


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_the_export_copy_computes_the_same_function(arch):
    """for_export(): every conv + MaxFeatureMap as b + relu(a - b) and nn.MaxPool2d, the BLSTMs through ONNX's LSTM
    operator (runtime/onnx_ops.py), with trained-looking BatchNorm statistics: the same embedding and logits up to
    float rounding, and the original model left as it was."""
    torch.manual_seed(0)
    model = build_model(arch).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    export = model.for_export().eval()
    assert not any(isinstance(m, (MaxFeatureMap, MaxPool2x2, torch.nn.LSTM)) for m in export.modules())
    assert any(isinstance(m, MaxFeatureMap) for m in model.modules())
    assert any(isinstance(m, torch.nn.LSTM) for m in model.modules()) == (model.pooling == "blstm")
    wave = torch.randn(2, 9000) * 0.1
    with torch.inference_mode():
        for eager, exported in zip(model(wave), export(wave), strict=True):
            torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("win_length", [320, 321])
def test_the_export_spectrum_is_the_stft_power(win_length):
    """PowerSpectrumForExport (the exported LCNNs' spectra: a DFT convolution over the window's samples) against
    torchaudio's power spectrogram (reflect padding, every bin) and NII's torch.stft (constant padding, the kept
    bins of a 1024-point FFT), from the LCNN's shortest input to an odd 1.5 s; an even and an odd window."""
    import torchaudio

    spectrogram = torchaudio.transforms.Spectrogram(n_fft=512, win_length=win_length, hop_length=160, power=2.0)
    nii = NIILFCC(n_fft=1024, win_length=win_length, max_freq=0.5, energy=True)
    g = torch.Generator().manual_seed(0)
    for samples in (2400, 9001, 24007):
        wave = torch.randn(2, samples, generator=g) * 0.1
        want = spectrogram(wave)
        got = PowerSpectrumForExport.of(spectrogram)(wave)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.max()))
        spec = torch.stft(wave, 1024, 160, win_length, window=nii.window.float(), center=True, pad_mode="constant",
                          onesided=True, return_complex=True)
        want = spec.abs().square()[:, :nii.kept_bins]
        got = nii.export_power_spectrum()(wave)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.max()))
    with pytest.raises(ValueError, match="only a centred one-sided power spectrogram"):
        PowerSpectrumForExport.of(torchaudio.transforms.Spectrogram(n_fft=512, power=1.0))


def test_export_spectra_are_shared_only_when_they_are_the_same():
    """for_export() gives streams one spectrum module when `same_as` holds: the same frames, window and bins."""
    import torchaudio

    def spectrum(**options):
        settings = {"n_fft": 512, "win_length": 320, "hop_length": 160, "power": 2.0, **options}
        return PowerSpectrumForExport.of(torchaudio.transforms.Spectrogram(**settings))

    assert spectrum().same_as(spectrum())
    for other in ({"win_length": 321}, {"hop_length": 80}, {"n_fft": 1024}, {"pad_mode": "constant"},
                  {"window_fn": torch.hamming_window}):
        assert not spectrum().same_as(spectrum(**other)), other
    export = build_model("LCNN-LFCC-LPS").for_export()
    assert export.streams[0].features.spectrogram is export.streams[1].features.spectrogram
