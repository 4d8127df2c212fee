"""RawBoost (data/rawboost.py): the three primitives, the algo combinations and the augmentation config."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from data.augment import AugmentChain, WaveAugment, build_augment, power_db
from data.rawboost import (
    DEFAULTS,
    RawBoost,
    isd_additive_noise,
    lnl_convolutive_noise,
    notch_filter_bank,
    notch_taps,
    peak_normalise,
    ssi_additive_noise,
)

SR = 16000
ALGOS = range(1, 9)


def _speech_like(n: int = SR, seed: int = 0, amp: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (amp * np.sin(2 * np.pi * 150 * t) + 0.1 * amp * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algo_keeps_length_and_dtype_and_is_seeded(algo):
    aug, x = RawBoost(algo), _speech_like()
    a, b, c = aug(x, np.random.default_rng(3)), aug(x, np.random.default_rng(3)), aug(x, np.random.default_rng(4))
    assert a.shape == x.shape and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.allclose(a, x)
    silent = aug(np.zeros(SR, np.float32), np.random.default_rng(0))
    assert np.isfinite(silent).all() and np.abs(silent).max() < 1e-12
    assert repr(aug).startswith(f"RawBoost(algo={algo}")


def test_algo_zero_is_identity():
    x = _speech_like()
    np.testing.assert_array_equal(RawBoost(0)(x, np.random.default_rng(0)), x)


def test_notch_taps_are_scipy_firwin_band_stops():
    fc, bw = np.array([20.0, 500.0, 4000.0, 7990.0, 8000.0]), np.array([100.0, 1000.0, 300.0, 500.0, 100.0])
    taps = np.array([11, 99, 1, 31, 51])
    h = notch_taps(fc, bw, taps, SR)
    assert h.shape == (5, 99)
    for i in range(5):
        f1, f2 = max(fc[i] - bw[i] / 2, 1e-3), min(fc[i] + bw[i] / 2, SR / 2 - 1e-3)
        ref = signal.firwin(int(taps[i]), [f1, f2], window="hamming", fs=SR)
        pad = (99 - taps[i]) // 2
        np.testing.assert_allclose(h[i, pad:pad + taps[i]], ref, atol=1e-12)
        assert not h[i, :pad].any() and not h[i, pad + taps[i]:].any()


def test_filter_bank_is_the_cascade_of_its_draws_at_the_requested_peak_gain():
    params = {"nBands": 3, "minCoeff": 5, "maxCoeff": 40}
    gains = np.array([0.0, -7.5])
    bank = notch_filter_bank(np.random.default_rng(11), 2, gains, SR, **params)
    rng = np.random.default_rng(11)  # the same draws, in the documented order
    fc, bw = rng.uniform(20, 8000, (2, 3)), rng.uniform(100, 1000, (2, 3))
    taps = np.floor(rng.uniform(5, 40, (2, 3))).astype(int)
    taps += 1 - taps % 2
    for i in range(2):
        b = np.ones(1)
        for k in range(3):
            f1, f2 = max(fc[i, k] - bw[i, k] / 2, 1e-3), min(fc[i, k] + bw[i, k] / 2, SR / 2 - 1e-3)
            b = np.convolve(b, signal.firwin(int(taps[i, k]), [f1, f2], window="hamming", fs=SR))
        _, response = signal.freqz(b, 1, fs=SR)
        b = 10 ** (gains[i] / 20) * b / np.abs(response).max()
        pad = (bank.shape[1] - len(b)) // 2
        np.testing.assert_allclose(bank[i, pad:pad + len(b)], b, atol=1e-12)
        assert np.abs(bank[i, :pad]).max(initial=0) < 1e-12 and np.abs(bank[i, pad + len(b):]).max(initial=0) < 1e-12


def test_lnl_linear_only_is_zero_phase_notch_filtering():
    x = _speech_like().astype(np.float64)
    params = {"N_f": 1, "minG": -6.0, "maxG": 0.0}
    y = lnl_convolutive_noise(x, np.random.default_rng(5), SR, **params)
    rng = np.random.default_rng(5)
    b = notch_filter_bank(rng, 1, None, SR, **params)[0] * 10 ** ((-6.0 + 6.0 * rng.random()) / 20)
    ref = np.convolve(x, b)[(len(b) - 1) // 2:][:len(x)]
    np.testing.assert_allclose(y, ref - ref.mean(), atol=1e-10)


def test_lnl_reshapes_the_spectrum_and_adds_harmonics_but_no_noise_floor():
    n = SR
    x = np.zeros(n)
    x[n // 2:] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(n // 2) / SR)  # silence, then a 1 kHz tone
    window, seg = np.hanning(4000), slice(n // 2 + 2000, n // 2 + 6000)  # 4 Hz bins: 1 kHz = bin 250

    def harmonics_db(y):
        power = np.abs(np.fft.rfft(y[seg] * window)) ** 2
        band = [power[k * 250 - 3:k * 250 + 4].sum() for k in (1, 2, 3)]
        return 10 * np.log10(max(band[1], band[2]) / band[0])

    for seed in range(4):
        y = lnl_convolutive_noise(x, np.random.default_rng(seed))
        linear = lnl_convolutive_noise(x, np.random.default_rng(seed), N_f=1)
        assert np.ptp(y[:n // 2 - 600]) < 1e-12  # silence stays silent (a constant: the mean removal)
        assert abs(y.mean()) < 1e-12
        assert harmonics_db(y) > -40.0 > -100.0 > harmonics_db(linear)  # x^2, x^3 terms: new frequencies
    noise = np.random.default_rng(0).standard_normal(4 * SR) * 0.1
    for seed in range(4):  # white noise in, coloured out: 200 Hz bands span more than 3 dB
        y = lnl_convolutive_noise(noise, np.random.default_rng(seed), N_f=1)
        power = np.abs(np.fft.rfft(y)) ** 2
        bands = 10 * np.log10(power[1:1 + 200 * 160].reshape(160, 200).sum(axis=1))
        assert np.ptp(bands) > 3.0


def test_isd_hits_at_most_p_percent_of_samples_in_proportion_to_them():
    x = _speech_like(amp=0.05).astype(np.float64)
    x[:1000] = 0.0
    fractions = []
    for seed in range(20):
        y = isd_additive_noise(x, np.random.default_rng(seed))
        changed = y != x
        fractions.append(changed.mean())
        assert changed.mean() <= DEFAULTS["P"] / 100
        assert not changed[:1000].any()  # signal-dependent: nothing added to silence
        assert np.all(np.abs(y - x) <= DEFAULTS["g_sd"] * np.abs(x) + 1e-15)
    assert 0.025 < np.mean(fractions) < 0.075  # the share is U[0, P] %
    assert np.array_equal(isd_additive_noise(x, np.random.default_rng(0), P=0), x)
    loud = isd_additive_noise(np.full(SR, 0.9), np.random.default_rng(0), g_sd=5)
    assert np.abs(loud).max() == pytest.approx(1.0)  # divided by its peak once that exceeds 1


def test_ssi_adds_stationary_signal_independent_noise_at_the_drawn_snr():
    x = _speech_like().astype(np.float64)
    x[: SR // 2] *= 1e-3  # a quiet first half
    snrs = []
    for seed in range(12):
        added = ssi_additive_noise(x, np.random.default_rng(seed)) - x
        snrs.append(power_db(x) - power_db(added))
        halves = power_db(added[: SR // 2]) - power_db(added[SR // 2:])
        assert abs(halves) < 1.5  # stationary: the same level where the signal is quiet
    assert DEFAULTS["SNRmin"] - 1e-6 <= min(snrs) and max(snrs) <= DEFAULTS["SNRmax"] + 1e-6
    assert np.ptp(snrs) > 5.0
    out = RawBoost(3, SNRmin=20, SNRmax=20)(x.astype(np.float32), np.random.default_rng(1))
    assert power_db(x) - power_db(out.astype(np.float64) - x) == pytest.approx(20.0, abs=0.01)
    other = _speech_like(seed=9, amp=0.3).astype(np.float64)  # another input, same draws: the same noise
    a = ssi_additive_noise(x, np.random.default_rng(2)) - x
    b = ssi_additive_noise(other, np.random.default_rng(2)) - other
    np.testing.assert_allclose(a / np.linalg.norm(x), b / np.linalg.norm(other), atol=1e-12)


@pytest.mark.parametrize("algo, steps", [(1, "1"), (2, "2"), (3, "3"), (4, "123"), (5, "12"), (6, "13"), (7, "23")])
def test_series_algos_compose_the_primitives(algo, steps):
    x = _speech_like()
    primitives = {"1": lnl_convolutive_noise, "2": isd_additive_noise, "3": ssi_additive_noise}
    rng, y = np.random.default_rng(7), x.astype(np.float64)
    for step in steps:
        y = primitives[step](y, rng)
    np.testing.assert_array_equal(RawBoost(algo)(x, np.random.default_rng(7)), y.astype(np.float32))


def test_parallel_algo_sums_lnl_and_isd_of_the_same_input():
    x = _speech_like(amp=0.6)
    rng, x64 = np.random.default_rng(8), x.astype(np.float64)
    ref = peak_normalise(lnl_convolutive_noise(x64, rng) + isd_additive_noise(x64, rng))
    out = RawBoost(8)(x, np.random.default_rng(8))
    np.testing.assert_array_equal(out, ref.astype(np.float32))
    assert np.abs(out).max() == pytest.approx(1.0)  # two copies of a 0.6 signal: normalised


@pytest.mark.parametrize("make, match", [
    (lambda: RawBoost(9), "unknown algo 9; choose 0-8"),
    (lambda: RawBoost(2.0), "'algo' must be an integer"),
    (lambda: RawBoost(3, snr_min=5), "unknown option 'snr_min'; valid options are"),
    (lambda: RawBoost(3, SNRmin=50), "'SNRmin' \\(50\\) must not exceed 'SNRmax'"),
    (lambda: RawBoost(1, maxF=9000), "'maxF' must be \\[0, 8000.0\\]"),
    (lambda: RawBoost(1, nBands="5"), "'nBands' must be an integer"),
    (lambda: RawBoost(2, P=150), "'P' must be \\[0, 100\\]"),
    (lambda: RawBoost(1, minBW=0), "'minBW' must be positive"),
    (lambda: build_augment({"rawboost": {"algo": 12}}), "unknown algo 12"),
    (lambda: build_augment({"rawboost": {"algo": 3, "SNR": 5}}), "unknown option 'SNR'"),
    (lambda: build_augment({"rawbost": {"algo": 3}}), "unknown key 'rawbost'; valid keys are .*'rawboost'"),
    (lambda: build_augment({"rawboost": 3}), "expected a mapping of options"),
    (lambda: RawBoost(1)(np.zeros((2, 10), np.float32), np.random.default_rng(0)), "1-D"),
])
def test_bad_settings_are_one_line_errors(make, match):
    with pytest.raises(ValueError, match=match) as err:
        make()
    assert "\n" not in str(err.value)


def test_build_augment_rawboost_entry():
    x = _speech_like()
    alone = build_augment({"rawboost": {"algo": 3, "SNRmin": 15}})
    assert isinstance(alone, RawBoost) and alone.algo == 3 and alone.params["SNRmin"] == 15
    assert build_augment({"rawboost": {}}).algo == DEFAULTS["algo"] == 5  # the SSL-AASIST LA default
    assert build_augment({"rawboost": True}).algo == 5
    assert isinstance(build_augment({"rawboost": None}), WaveAugment)
    both = build_augment({"types": ["noise"], "prob": 1.0, "rawboost": {"algo": 2}})
    assert isinstance(both, AugmentChain)
    rng = np.random.default_rng(4)
    ref = RawBoost(2)(WaveAugment({"types": ["noise"], "prob": 1.0})(x, rng), rng)
    np.testing.assert_array_equal(both(x, np.random.default_rng(4)), ref)


def test_cm_config_reaches_rawboost():
    from common.config import load_config
    from pipeline.recipes import cm_task

    overrides = ["output_dir=out", "database=db", "data.augment.enabled=true", "data.augment.options.rawboost.algo=6"]
    cfg = load_config(None, overrides, cm_task.SCHEMA)
    aug = build_augment(dict(cfg["data"]["augment"]["options"]))
    assert isinstance(aug, RawBoost) and aug.algo == 6
