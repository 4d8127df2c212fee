"""data/audio.py: loading (resampling, mono mix-down, errors that name the file) and crop policies."""
from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from data import ffmpeg_audio
from data.audio import AASIST_EVAL_SAMPLES, AudioError, crop, crop_even, crop_first, crop_random, load_audio, repeat_pad
from tests.conftest import reference_path
from tests.flac_bytes import flac_bytes

ENROLMENT_FLAC = ("audio", "enr_audio_LA_0069_LA_D_1600475.flac")


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


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match=r"sub\.flac: audio file is not a file"):
        (tmp_path / "sub.flac").mkdir()
        load_audio(tmp_path / "sub.flac")


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


# ---- the FFmpeg (PyAV) fallback -----------------------------------------------------------------
def _pyav_int16(path) -> np.ndarray:
    """A direct FFmpeg decode of a 16-bit mono file, as int16."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray() for f in c.decode(audio=0)]
    assert {f.dtype for f in frames} == {np.dtype(np.int16)} and {f.shape[0] for f in frames} == {1}
    return np.concatenate(frames, axis=1)[0]


def _wrap16(x: np.ndarray) -> np.ndarray:
    """What FFmpeg's 16-bit output holds for an int32 sample: its low 16 bits."""
    return ((x + 32768) % 65536 - 32768).astype(np.int16)


def _loud_signal(n: int, loud_at: int) -> np.ndarray:
    """A 16-bit-range signal with one burst beyond 16-bit full scale, like the ASVspoof enrolment files."""
    rng = np.random.default_rng(5)
    x = (12000 * np.sin(2 * np.pi * 300 * np.arange(n) / 16000)).astype(np.int64) + rng.integers(-300, 300, n)
    x[loud_at:loud_at + 8] = [32768, 66869, 88242, 132908, 128633, -32769, -40892, 40000]
    return x


def test_flac_beyond_its_declared_16_bits_decodes_as_ffmpeg_does(tmp_path):
    """The property of the real enrolment files: libsndfile (libFLAC >= 1.4) refuses, FFmpeg decodes."""
    x = _loud_signal(20000, loud_at=5000)  # 5 frames of 4096, the burst in the second
    path = tmp_path / "enr_LA_0000.flac"
    path.write_bytes(flac_bytes(x, sample_rate=16000, bits_per_sample=16))
    with pytest.raises(sf.LibsndfileError, match="flac decoder"):
        sf.read(str(path))  # the premise: without the fallback this file is lost

    direct = _pyav_int16(path)
    np.testing.assert_array_equal(direct, _wrap16(x))  # the crafted stream holds x exactly
    y = load_audio(path)
    assert y.dtype == np.float32 and len(y) == len(x) == 20000
    np.testing.assert_array_equal(y, direct.astype(np.float32) / 32768)
    inside = np.abs(x) < 32768
    assert inside.sum() == len(x) - 8
    np.testing.assert_array_equal((y[inside] * 32768).astype(np.int64), x[inside])  # lossless round trip


@pytest.mark.parametrize("bits", [8, 16, 24])
def test_the_fallback_scales_samples_exactly_as_libsndfile(tmp_path, bits):
    """Whichever decoder reads a file, the floats are the same: x / 2**(bits - 1) (FFmpeg gives 24-bit as s32)."""
    full = 1 << (bits - 1)
    x = np.random.default_rng(bits).integers(-full, full, 9000)
    x[:2] = [-full, full - 1]
    path = tmp_path / f"in_range_{bits}.flac"
    path.write_bytes(flac_bytes(x, bits_per_sample=bits))
    by_libsndfile = sf.read(str(path), dtype="float32")[0]
    by_ffmpeg, rate = ffmpeg_audio.decode(path)
    assert rate == 16000 and by_ffmpeg.shape == (9000, 1)
    np.testing.assert_array_equal(by_ffmpeg[:, 0], by_libsndfile)
    np.testing.assert_array_equal(by_libsndfile, (x / full).astype(np.float32))
    x[4500] = full + 5  # beyond the declared size: libsndfile refuses, FFmpeg keeps the low `bits` bits
    path.write_bytes(flac_bytes(x, bits_per_sample=bits))
    wrapped = (x + full) % (2 * full) - full
    np.testing.assert_array_equal(load_audio(path), (wrapped / full).astype(np.float32))


def test_files_libsndfile_reads_never_reach_the_fallback(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ffmpeg_audio, "decode", lambda p: calls.append(p) or pytest.fail("fallback used"))
    path = tmp_path / "a.flac"
    sf.write(path, _sine(440, 16000, 0.3), 16000, subtype="PCM_16")
    assert len(load_audio(path)) == 4800 and calls == []


def test_shared_enrolment_file_decodes_like_ffmpeg():
    path = reference_path(*ENROLMENT_FLAC)
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        declared = int(stream.duration * stream.time_base * stream.codec_context.sample_rate)  # STREAMINFO's count
        assert (stream.codec_context.sample_rate, stream.codec_context.channels) == (16000, 1)
    assert abs(declared / 16000 - 82.5) < 0.01
    y = load_audio(path)
    assert y.dtype == np.float32 and y.shape == (declared,)
    grid = y * 32768
    np.testing.assert_array_equal(grid, np.round(grid))
    assert grid.min() >= -32768 and grid.max() <= 32767
    np.testing.assert_array_equal(y, _pyav_int16(path).astype(np.float32) / 32768)


def _write_m4a(path, x: np.ndarray, sample_rate: int) -> None:
    """AAC in an MP4 container (how VoxCeleb2 ships), encoded by the FFmpeg inside PyAV; x is (samples, 2)."""
    with av.open(str(path), "w", format="mp4") as c:
        stream = c.add_stream("aac", rate=sample_rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T, dtype=np.float32), format="fltp",
                                           layout="stereo")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)


def test_aac_m4a_decodes_mixes_down_and_resamples(tmp_path):
    sr = 44100
    x = np.stack([_sine(1000, sr, 1.0), _sine(1000, sr, 1.0) * 0.5], axis=1)
    path = tmp_path / "id10001" / "00001.m4a"
    path.parent.mkdir()
    _write_m4a(path, x, sr)
    with pytest.raises(sf.LibsndfileError):
        sf.read(str(path))  # libsndfile has no AAC decoder
    with av.open(str(path)) as c:
        direct = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)  # fltp: (2, samples)
    y = load_audio(path)
    expected = AF.resample(torch.from_numpy(direct.mean(axis=0)), sr, 16000).numpy()
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert abs(len(y) - 16000) < 0.05 * 16000  # AAC adds up to a frame of codec delay
    assert abs(_peak_hz(y, 16000) - 1000) < 5
    with pytest.raises(AudioError, match=r"00001\.m4a: sample rate 44100 Hz"):
        load_audio(path, resample=False)


def _broken_files(tmp_path) -> dict[str, object]:
    """name -> path of files that neither decoder can read in full."""
    good = tmp_path / "good.flac"
    sf.write(good, np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32), 16000)
    data = good.read_bytes()
    crafted = flac_bytes(_loud_signal(3 * 4096, loud_at=100), block=4096)
    files = {"cut_mid_frame.flac": data[:int(len(data) * 0.7)],
             # cut exactly where frame 2 starts: FFmpeg stops there quietly, STREAMINFO says 12288 samples
             "cut_at_frame.flac": crafted[:crafted.index(bytes([0xFF, 0xF8, 0x70, 0x00, 0x02]))],
             "zero_bytes.flac": b"",
             "random.flac": np.random.default_rng(1).bytes(3000),
             "text.wav": b"LA_0079 LA_T_1138215 - - bonafide\n"}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return {name: tmp_path / name for name in files}


def test_files_both_decoders_refuse_get_one_line_naming_both(tmp_path):
    for name, path in _broken_files(tmp_path).items():
        with pytest.raises(AudioError) as info:
            load_audio(path)
        message = str(info.value)
        assert message.startswith(f"{path}: cannot read audio: libsndfile: ") and "; FFmpeg (PyAV): " in message
        assert "\n" not in message and "Traceback" not in message, name
        assert info.value.__cause__ is None and info.value.__suppress_context__, name  # raised `from None`
    cut = str(tmp_path / "cut_at_frame.flac")
    with pytest.raises(AudioError, match="FLAC header declares 12288 samples, the file holds 8192"):
        load_audio(cut)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.97])
def test_flac_with_a_damaged_frame_is_refused_not_decoded(tmp_path, where):
    """FFmpeg by default logs a CRC mismatch and outputs the damaged frame; the fallback must refuse it."""
    path = tmp_path / "flipped.flac"
    sf.write(path, np.random.default_rng(2).uniform(-0.5, 0.5, 48000).astype(np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"flipped\.flac: cannot read audio: libsndfile: .*; FFmpeg \(PyAV\): "):
        load_audio(path)


def test_wav_cut_mid_data_is_refused_before_decoding(tmp_path, monkeypatch):
    full = tmp_path / "full.wav"
    sf.write(full, _sine(440, 16000, 0.5), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:10000])
    monkeypatch.setattr(ffmpeg_audio, "decode", lambda p: pytest.fail("FFmpeg would read the cut WAV"))
    with pytest.raises(AudioError, match=r"cut\.wav: truncated WAV file: header declares 16000 bytes"):
        load_audio(cut)


def test_skip_bad_audio_in_the_stages_lists_files_both_decoders_refuse(tmp_path):
    from data.audio import CropSpec
    from pipeline.stages.extract import extract

    good = tmp_path / "good.flac"
    sf.write(good, _sine(440, 16000, 0.2), 16000, subtype="PCM_16")
    crafted = tmp_path / "crafted.flac"
    crafted.write_bytes(flac_bytes(_loud_signal(3200, loud_at=10)))
    broken = _broken_files(tmp_path)
    items = [("LA_G", good), ("LA_B", broken["random.flac"]), ("LA_F", crafted), ("LA_Z", broken["zero_bytes.flac"])]

    def embed(waves: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"energy": (waves ** 2).mean(dim=1, keepdim=True)}

    out = extract(items, embed, CropSpec("full"), skip_bad_audio=True, desc="test")
    assert out.ids == ["LA_G", "LA_F"]
    assert [s.split(":")[0] for s in out.skipped] == ["LA_B", "LA_Z"]
    assert "random.flac: cannot read audio: libsndfile:" in out.skipped[0]
    np.testing.assert_allclose(out.arrays["energy"][1, 0], float((load_audio(crafted) ** 2).mean()), rtol=1e-5)
    with pytest.raises(AudioError, match=r"random\.flac: cannot read audio"):
        extract(items, embed, CropSpec("full"), skip_bad_audio=False, desc="test")
