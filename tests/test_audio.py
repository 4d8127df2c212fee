"""data/audio.py: loading (resampling, mono mix-down, errors that name the file) and crop policies."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from data.audio import (AASIST_EVAL_SAMPLES, AudioError, crop, crop_even, crop_first, crop_random, load_audio,
                        repeat_pad)


def _sine(freq: float, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("wav", "FLOAT")])
def test_load_16k_roundtrip(tmp_path, ext, subtype):
    x = _sine(440, 16000, 0.5)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 16000, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == len(x)
    np.testing.assert_allclose(y, x, atol=1e-4)


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_resampling_keeps_duration_and_pitch(tmp_path, sr):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(1000, sr, 1.0), sr)
    y = load_audio(path)
    assert abs(len(y) - 16000) <= 1
    assert abs(_peak_hz(y, 16000) - 1000) < 5


def test_refused_sample_rate_names_file(tmp_path):
    path = tmp_path / "eight_k.wav"
    sf.write(path, _sine(440, 8000, 0.2), 8000)
    with pytest.raises(AudioError, match=r"eight_k\.wav.*8000 Hz"):
        load_audio(path, resample=False)


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = _sine(300, 16000, 0.2), _sine(700, 16000, 0.2)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 16000)
    y = load_audio(path)
    assert y.shape == left.shape
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-4)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nothere\.flac: audio file does not exist"):
        load_audio(tmp_path / "nothere.flac")


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: 0 samples"):
        load_audio(path)
    zero_bytes = tmp_path / "zero.flac"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match=r"zero\.flac: cannot read audio"):
        load_audio(zero_bytes)


def test_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _sine(440, 16000, 0.01), 16000)
    with pytest.raises(AudioError, match=r"short\.wav: 160 samples.*at least 1000"):
        load_audio(path, min_samples=1000)


def test_not_audio(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("LA_0079 LA_T_1138215 - - bonafide\n")
    with pytest.raises(AudioError, match=r"text\.wav: cannot read audio"):
        load_audio(path)


@pytest.mark.parametrize("ext", ["wav", "flac"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file(tmp_path, ext, keep):
    full = tmp_path / f"full.{ext}"
    sf.write(full, np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32), 16000)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(AudioError, match=r"cut\.(wav|flac): "):
        load_audio(cut)


def test_header_only_wav(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, np.zeros(1000, np.float32), 16000, subtype="PCM_16")
    cut = tmp_path / "head.wav"
    cut.write_bytes(full.read_bytes()[:44])
    with pytest.raises(AudioError, match=r"head\.wav: truncated"):
        load_audio(cut)


def test_nan_and_inf_are_refused(tmp_path):
    x = _sine(440, 16000, 0.1)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: .*NaN"):
        load_audio(path)
    x[100] = np.inf
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav"):
        load_audio(path)


# ---- cropping ----------------------------------------------------------------------------------
def test_repeat_pad_and_first():
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(x, 12), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    np.testing.assert_array_equal(crop_first(x, 3), [0, 1, 2])
    np.testing.assert_array_equal(crop_first(x, 5), x)
    assert len(crop_first(np.ones(100, np.float32), AASIST_EVAL_SAMPLES)) == 64600
    with pytest.raises(AudioError):
        repeat_pad(np.zeros(0, np.float32), 4)


def test_crop_random_is_a_seeded_contiguous_segment():
    x = np.arange(1000, dtype=np.float32)
    a = crop_random(x, 100, np.random.default_rng(3))
    b = crop_random(x, 100, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert len(a) == 100 and np.all(np.diff(a) == 1) and 0 <= a[0] <= 900
    starts = {int(crop_random(x, 100, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(starts) > 10  # actually random across seeds
    short = crop_random(np.arange(30, dtype=np.float32), 100, np.random.default_rng(0))
    np.testing.assert_array_equal(short, repeat_pad(np.arange(30, dtype=np.float32), 100))
    whole = crop_random(x, 1000, np.random.default_rng(0))
    np.testing.assert_array_equal(whole, x)


def test_crop_even():
    x = np.arange(1000, dtype=np.float32)
    w = crop_even(x, 100, 5)
    assert w.shape == (5, 100)
    np.testing.assert_array_equal(w[:, 0], [0, 225, 450, 675, 900])
    assert crop_even(np.arange(10, dtype=np.float32), 100, 3).shape == (3, 100)


def test_crop_dispatch():
    x = np.arange(1000, dtype=np.float32)
    np.testing.assert_array_equal(crop(x, "full", 10), x)
    np.testing.assert_array_equal(crop(x, "first", None), x)
    np.testing.assert_array_equal(crop(x, "first", 10), x[:10])
    assert len(crop(x, "random", 10, np.random.default_rng(0))) == 10
    with pytest.raises(ValueError, match="unknown crop policy 'middle'"):
        crop(x, "middle", 10)
