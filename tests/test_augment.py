"""Waveform augmentation (generated and folder-based) and SpecAugment."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from data.audio import AudioError
from data.augment import (
    SpecAugment,
    WaveAugment,
    add_noises,
    build_augment,
    coloured_noise,
    power_db,
    read_segment,
    reverberate,
    spec_augment,
    synthetic_rir,
)

SR = 16000


def _speech_like(n: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (0.1 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def test_add_noises_hits_the_requested_snr():
    x = _speech_like()
    noise = coloured_noise(len(x), "pink", np.random.default_rng(1))
    out = add_noises(x, [noise], [7.5])
    assert out.dtype == np.float32 and out.shape == x.shape
    assert power_db(x) - power_db(out.astype(np.float64) - x) == pytest.approx(7.5, abs=0.01)


@pytest.mark.parametrize("kind, lo, hi", [("noise", 0, 15), ("music", 5, 15), ("speech", 13, 20)])
def test_generated_noise_types_stay_in_their_snr_range(kind, lo, hi):
    aug = WaveAugment({"types": [kind]})
    x = _speech_like()
    for seed in range(4):
        out = aug.apply(x, kind, np.random.default_rng(seed))
        assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
        snr = power_db(x) - power_db(out.astype(np.float64) - x)
        if kind == "speech":  # 3-7 talkers each at 13-20 dB: their powers add up (roughly: not orthogonal)
            assert lo - 10 * np.log10(7) - 1.0 <= snr <= hi + 1.0
        else:
            assert lo - 0.01 <= snr <= hi + 0.01


def test_babble_uses_three_to_seven_talkers(monkeypatch):
    aug = WaveAugment({"types": ["speech"]})
    counts = []
    original = aug._noise
    for seed in range(30):
        calls = []
        def counting(kind, n, rng, calls=calls):
            calls.append(kind)
            return original(kind, n, rng)
        monkeypatch.setattr(aug, "_noise", counting)
        aug.apply(_speech_like(1600), "speech", np.random.default_rng(seed))
        counts.append(len(calls))
    assert min(counts) >= 3 and max(counts) <= 7 and len(set(counts)) >= 3


def test_same_seed_same_output_and_different_seed_differs():
    aug = WaveAugment({"prob": 1.0})
    x = _speech_like()
    a = aug(x, np.random.default_rng(5))
    b = aug(x, np.random.default_rng(5))
    c = aug(x, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_prob_zero_is_identity_and_prob_one_always_changes():
    x = _speech_like()
    assert WaveAugment({"prob": 0.0})(x, np.random.default_rng(0)) is x
    aug = WaveAugment({"prob": 1.0})
    for seed in range(8):
        assert not np.allclose(aug(x, np.random.default_rng(seed)), x)


def test_coloured_noise_spectral_slopes():
    rng = np.random.default_rng(0)
    slopes = {}
    for colour in ("white", "pink", "brown"):
        x = coloured_noise(2 ** 16, colour, rng)
        power = np.abs(np.fft.rfft(x)) ** 2
        f = np.arange(len(power))
        band = (f > 100) & (f < 20000)
        slopes[colour] = np.polyfit(np.log(f[band]), np.log(power[band] + 1e-20), 1)[0]
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert slopes["white"] == pytest.approx(0.0, abs=0.1)
    assert slopes["pink"] == pytest.approx(-1.0, abs=0.1)
    assert slopes["brown"] == pytest.approx(-2.0, abs=0.1)


def test_synthetic_rir_decays_at_its_rt60():
    rt60 = 0.5
    rir = synthetic_rir(rt60, np.random.default_rng(0)).astype(np.float64)
    peak = int(np.argmax(np.abs(rir)))
    assert peak < 0.005 * SR + 1  # direct path first
    tail = rir[peak + 1:]
    # Energy in 50 ms windows falls ~60 dB per rt60: fit the decay slope of the envelope.
    win = int(0.05 * SR)
    energies = np.array([np.sum(tail[i:i + win] ** 2) for i in range(0, len(tail) - win, win)])
    times = np.arange(len(energies)) * 0.05
    slope = np.polyfit(times, 10 * np.log10(energies), 1)[0]
    assert slope == pytest.approx(-60.0 / rt60, rel=0.15)


def test_reverberate_normalises_rir_and_keeps_length():
    x = _speech_like()
    delta = np.zeros(100, dtype=np.float32)
    delta[0] = 3.0  # energy 9: normalised to a unit impulse -> identity
    np.testing.assert_allclose(reverberate(x, delta), x, atol=1e-6)
    delayed = np.zeros(10, dtype=np.float32)
    delayed[4] = -0.5
    out = reverberate(x, delayed)
    assert out.shape == x.shape
    np.testing.assert_allclose(out[4:], -x[:-4], atol=1e-6)
    with pytest.raises(ValueError, match="non-zero energy"):
        reverberate(x, np.zeros(10))


def _write_tree(root, sr=SR):
    t = np.arange(sr // 4) / sr  # 0.25 s: shorter than the input, so repeat-padding is exercised
    for kind, freq in (("noise", 1000.0), ("music", 2000.0), ("speech", 3000.0)):
        for i in range(2):
            d = root / "musan" / kind / f"src{i}"
            d.mkdir(parents=True)
            sf.write(d / f"{kind}-{i:04d}.wav", np.sin(2 * np.pi * freq * t).astype(np.float32) * 0.3, sr)
    rir_dir = root / "RIRS_NOISES" / "simulated_rirs" / "smallroom" / "Room001"
    rir_dir.mkdir(parents=True)
    rir = np.zeros(400, dtype=np.float32)
    rir[100] = 0.7
    sf.write(rir_dir / "Room001-00001.wav", rir, sr)
    (root / "musan" / "README").write_text("not audio")


@pytest.mark.parametrize("kind, freq", [("noise", 1000.0), ("music", 2000.0), ("speech", 3000.0)])
def test_musan_folder_files_are_mixed_in(tmp_path, kind, freq):
    _write_tree(tmp_path)
    aug = WaveAugment({"musan_dir": str(tmp_path / "musan"), "rir_dir": str(tmp_path / "RIRS_NOISES"), "types": [kind]})
    assert len(aug.noise_files[kind]) == 2
    x = _speech_like()
    added = aug.apply(x, kind, np.random.default_rng(0)).astype(np.float64) - x
    spectrum = np.abs(np.fft.rfft(added))
    assert np.argmax(spectrum) == pytest.approx(freq, abs=2)  # 1 s input: bin index = Hz


def test_rir_folder_is_used(tmp_path):
    _write_tree(tmp_path)
    aug = WaveAugment({"rir_dir": str(tmp_path / "RIRS_NOISES" / "simulated_rirs"), "types": ["reverb"]})
    x = _speech_like()
    out = aug.apply(x, "reverb", np.random.default_rng(0))
    np.testing.assert_allclose(out[100:], x[:-100], atol=1e-5)  # the stored RIR: a unit-energy delay of 100


def test_missing_or_empty_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        WaveAugment({"musan_dir": str(tmp_path / "nope")})
    (tmp_path / "musan" / "noise").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"musan.noise.*no \.wav files"):
        WaveAugment({"musan_dir": str(tmp_path / "musan"), "types": ["noise"]})
    (tmp_path / "rirs").mkdir()
    with pytest.raises(ValueError, match="rir_dir: folder .*rirs holds no .wav files"):
        WaveAugment({"rir_dir": str(tmp_path / "rirs")})


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown key 'snr_db'"):
        WaveAugment({"snr_db": 3})
    with pytest.raises(ValueError, match="unknown type 'babble'"):
        WaveAugment({"types": ["babble"]})
    with pytest.raises(ValueError, match="snr.music"):
        WaveAugment({"snr": {"music": [10, 5]}})
    with pytest.raises(ValueError, match="1-D"):
        WaveAugment().apply(np.zeros((2, 10), np.float32), "noise", np.random.default_rng(0))
    assert build_augment(None) is None and build_augment(False) is None
    assert isinstance(build_augment(True), WaveAugment)


def test_silence_stays_finite():
    out = WaveAugment({"prob": 1.0})(np.zeros(SR, np.float32), np.random.default_rng(0))
    assert np.isfinite(out).all() and np.abs(out).max() < 1e-3


def test_spec_augment_masks_bands_and_spans_and_is_seeded():
    x = torch.ones(4, 40, 100)
    g = torch.Generator().manual_seed(0)
    y = spec_augment(x, freq_masks=1, max_freq_width=5, time_masks=1, max_time_width=7, generator=g)
    assert torch.equal(x, torch.ones(4, 40, 100))  # not in place
    for b in range(4):
        zero_rows = (y[b] == 0).all(dim=1).sum().item()
        zero_cols = (y[b] == 0).all(dim=0).sum().item()
        assert zero_rows <= 5 and zero_cols <= 7
        # every zero lies in a fully masked row or column
        zeros = y[b] == 0
        assert torch.equal(zeros, (y[b] == 0).all(dim=1, keepdim=True) | (y[b] == 0).all(dim=0, keepdim=True))
    y2 = spec_augment(x, 1, 5, 1, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)
    many = spec_augment(torch.ones(64, 40, 100), 2, 8, 2, 10, generator=torch.Generator().manual_seed(1))
    assert (many == 0).any()


def test_spec_augment_module_only_in_training():
    m = SpecAugment(2, 8, 2, 10)
    x = torch.randn(3, 40, 50)
    m.eval()
    assert m(x) is x
    m.train()
    assert not torch.equal(m(x, torch.Generator().manual_seed(0)), x)
    with pytest.raises(ValueError, match=r"\(B, F, T\)"):
        m(torch.randn(40, 50))


def test_read_segment_reads_a_random_window_of_long_files(tmp_path):
    long = np.arange(5 * SR, dtype=np.float32) / (5 * SR)  # a ramp: the value tells the position
    sf.write(tmp_path / "long.wav", long, SR, subtype="FLOAT")
    seg = read_segment(tmp_path / "long.wav", SR, np.random.default_rng(3))
    start = int(round(seg[0] * 5 * SR))
    np.testing.assert_allclose(seg, long[start:start + SR], atol=1e-6)
    short = read_segment(tmp_path / "long.wav", 6 * SR, np.random.default_rng(3))
    assert len(short) == 6 * SR and short[5 * SR] == long[0]  # repeat-padded
    (tmp_path / "broken.wav").write_bytes(b"RIFF????WAVE")
    with pytest.raises(AudioError, match="broken.wav"):
        read_segment(tmp_path / "broken.wav", SR, np.random.default_rng(0))


def test_read_segment_falls_back_to_load_audio_for_files_libsndfile_refuses(tmp_path):
    from data.audio import load_audio
    from tests.flac_bytes import flac_bytes

    ramp = np.arange(3 * SR) - 20000  # one int16 step per sample: the value tells the position
    ramp[SR] = 40000  # one sample beyond the declared 16 bits: libsndfile refuses the file, FFmpeg reads it
    path = tmp_path / "noise.flac"
    path.write_bytes(flac_bytes(ramp))
    with pytest.raises(sf.LibsndfileError):
        sf.read(str(path))
    whole = load_audio(path)
    seg = read_segment(path, SR // 2, np.random.default_rng(4))
    start = int(np.flatnonzero(whole == seg[0])[0])
    np.testing.assert_array_equal(seg, whole[start:start + SR // 2])


def test_folder_mode_is_deterministic(tmp_path):
    _write_tree(tmp_path)
    aug = WaveAugment({"musan_dir": str(tmp_path / "musan"), "rir_dir": str(tmp_path / "RIRS_NOISES"), "prob": 1.0})
    x = _speech_like()
    for seed in range(6):
        np.testing.assert_array_equal(aug(x, np.random.default_rng(seed)), aug(x, np.random.default_rng(seed)))
