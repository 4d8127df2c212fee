"""The LFCC of the ASVspoof 2021 LFCC-LCNN baseline (cm.features.NIILFCC) against its definition, restated here in
plain numpy (loops and explicit formulas, no torch): pre-emphasis 0.97, periodic Hamming window centred in the FFT
frame, zero-padded centred frames, the kept bins up to max_freq, NII's triangles on nominal bin frequencies,
log10 with float32 eps, orthonormal DCT-II, optional log energy in c0, +-1-frame deltas with repeated edges."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cm.features import EPS, LFCC, NIILFCC, nii_delta

BASELINE = {"n_fft": 1024, "max_freq": 0.5, "energy": True}     # the ASVspoof 2021 LFCC-LCNN baseline
NII_DEFAULTS = {"n_fft": 512, "max_freq": 1.0, "energy": False}  # NII's LFCC defaults (0-8 kHz, no energy)


def reference_lfcc(x: np.ndarray, n_fft: int, max_freq: float, energy: bool, n_filters: int = 20,
                   n_ceps: int = 20, win: int = 320, hop: int = 160, sr: int = 16000) -> np.ndarray:
    """(3 * n_ceps, frames) from the definition, in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = x.copy()
    y[1:] = x[1:] - 0.97 * x[:-1]
    window = np.zeros(n_fft)                                  # periodic Hamming, centred in the FFT frame
    left = (n_fft - win) // 2
    window[left:left + win] = [0.54 - 0.46 * np.cos(2 * np.pi * n / win) for n in range(win)]
    padded = np.concatenate([np.zeros(n_fft // 2), y, np.zeros(n_fft // 2)])
    frames = 1 + len(x) // hop
    spectrum = np.stack([np.fft.rfft(padded[t * hop:t * hop + n_fft] * window) for t in range(frames)])
    kept = int(max_freq * (n_fft // 2 + 1))
    power = np.abs(spectrum[:, :kept]) ** 2
    nominal = [(sr / 2) * max_freq * j / (kept - 1) for j in range(kept)]
    edges = [nominal[0] + (nominal[-1] - nominal[0]) * i / (n_filters + 1) for i in range(n_filters + 2)]
    bank = np.zeros((kept, n_filters))
    for i in range(n_filters):
        a, b, c = edges[i], edges[i + 1], edges[i + 2]
        for j, f in enumerate(nominal):
            if a < f < b:
                bank[j, i] = (f - a) / (b - a)
            elif b < f < c:
                bank[j, i] = (c - f) / (c - b)
            elif f == b:
                bank[j, i] = 1.0
    eps = float(np.finfo(np.float32).eps)
    log_bank = np.log10(power @ bank + eps)                   # (frames, filters)
    ceps = np.zeros((frames, n_ceps))
    for k in range(n_ceps):
        scale = np.sqrt(1 / n_filters) if k == 0 else np.sqrt(2 / n_filters)
        ceps[:, k] = scale * sum(log_bank[:, m] * np.cos(np.pi * k * (2 * m + 1) / (2 * n_filters))
                                 for m in range(n_filters))
    if energy:
        ceps[:, 0] = np.log10(power.sum(axis=1) / n_fft + eps)

    def delta(v: np.ndarray) -> np.ndarray:
        last = len(v) - 1
        return np.stack([v[min(t + 1, last)] - v[max(t - 1, 0)] for t in range(len(v))])

    d = delta(ceps)
    return np.concatenate([ceps, d, delta(d)], axis=1).T


def signals() -> dict[str, np.ndarray]:
    """A few signals of 1 s + 77 samples (not a whole number of hops): a tone in noise, a chirp over 0-6 kHz
    (bands near zero power), white noise, noise after a quarter second of digital silence."""
    rng = np.random.default_rng(0)
    t = np.arange(16077) / 16000
    silence_first = 0.1 * rng.normal(size=t.size)
    silence_first[:4000] = 0.0
    return {"tone": 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.normal(size=t.size),
            "chirp": 0.2 * np.sin(2 * np.pi * (100 * t + 3000 * t ** 2)),
            "noise": 0.1 * rng.normal(size=t.size), "silence_first": silence_first}


@pytest.mark.parametrize("options", [BASELINE, NII_DEFAULTS], ids=["baseline", "nii_defaults"])
def test_nii_lfcc_is_its_definition(options):
    front = NIILFCC(**options)
    for name, x in signals().items():
        expected = reference_lfcc(x, **options)
        got = front(torch.tensor(x)[None])                    # float64 input: computed in float64
        assert got.shape == (1, 60, 1 + len(x) // 160) and got.dtype == torch.float64
        np.testing.assert_allclose(got[0].numpy(), expected, rtol=0, atol=1e-5, err_msg=name)
        single = front(torch.tensor(x, dtype=torch.float32)[None])
        assert single.dtype == torch.float32
        # float32 rounding: ~2e-6 on these signals, up to ~1e-4 where a band holds almost no power (chirp)
        np.testing.assert_allclose(single[0].numpy(), expected, rtol=0, atol=3e-4, err_msg=name)


def test_nii_lfcc_batches_frames_and_leaves_the_input_alone():
    front = NIILFCC(**BASELINE)
    batch = torch.tensor(np.stack([signals()["tone"], signals()["noise"]]), dtype=torch.float32)
    before = batch.clone()
    out = front(batch)
    assert torch.equal(batch, before)                         # pre-emphasis on a copy (NII's earlier code did not)
    assert out.shape == (2, 60, 101) and front.n_out == 60 and front.kept_bins == 256
    torch.testing.assert_close(out[1:], front(batch[1:]))
    assert front(torch.zeros(1, 2400)).shape == (1, 60, 16)   # 1 + T // 160 frames, any length


def test_nii_deltas_repeat_the_edge_frames():
    ramp = torch.arange(6, dtype=torch.float64).repeat(2, 1)              # c_t = t
    d = nii_delta(ramp)
    assert d[0].tolist() == [1, 2, 2, 2, 2, 1]                           # c[1]-c[0], c[t+1]-c[t-1], c[5]-c[4]
    assert nii_delta(d)[0].tolist() == [1, 1, 0, 0, -1, -1]
    out = NIILFCC(**BASELINE)(torch.tensor(signals()["tone"])[None])[0]
    c, dc, ddc = out[:20], out[20:40], out[40:]
    torch.testing.assert_close(dc[:, 0], c[:, 1] - c[:, 0])
    torch.testing.assert_close(dc[:, -1], c[:, -1] - c[:, -2])
    torch.testing.assert_close(ddc[:, 1], dc[:, 2] - dc[:, 0])


def test_energy_replaces_c0_only_and_silence_sits_on_the_eps_floor():
    x = torch.tensor(signals()["tone"])[None]
    with_energy, without = NIILFCC(energy=True)(x)[0], NIILFCC(energy=False)(x)[0]
    assert torch.equal(with_energy[1:20], without[1:20]) and not torch.allclose(with_energy[0], without[0])
    silent = torch.zeros(1, 3200, dtype=torch.float64)
    plain = NIILFCC()(silent)[0]                   # every filter at log10(eps): c0 = sqrt(20) log10(eps), rest 0
    torch.testing.assert_close(plain[0], torch.full((21,), np.sqrt(20) * np.log10(EPS), dtype=torch.float64))
    assert plain[1:].abs().max() < 1e-9
    torch.testing.assert_close(NIILFCC(energy=True)(silent)[0, 0], torch.full((21,), np.log10(EPS),
                                                                              dtype=torch.float64))


def test_the_toolkit_lfcc_is_another_definition():
    """Both exist on purpose (docs): same shape, different numbers (log base, window, pre-emphasis, deltas)."""
    x = torch.tensor(signals()["tone"], dtype=torch.float32)[None]
    toolkit, nii = LFCC()(x), NIILFCC()(x)
    assert toolkit.shape == nii.shape and not torch.allclose(toolkit, nii, atol=0.1)


def test_bad_options_are_errors():
    with pytest.raises(ValueError, match=r"n_ceps \(30\) cannot exceed n_filters \(20\)"):
        NIILFCC(n_ceps=30)
    with pytest.raises(ValueError, match=r"max_freq is a fraction of the Nyquist frequency in \(0, 1\], got 1.5"):
        NIILFCC(max_freq=1.5)
    with pytest.raises(ValueError, match="the window .320 samples. cannot exceed n_fft .256."):
        NIILFCC(n_fft=256)
    with pytest.raises(ValueError, match="too few for 20 filters"):
        NIILFCC(max_freq=0.05)
