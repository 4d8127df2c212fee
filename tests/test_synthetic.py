"""The synthetic corpus generator: determinism, exact layouts, and measured realism of speakers and spoofs.

The realism tests train deliberately simple models (MFCC statistics + LDA for speakers; spectral statistics +
logistic regression for spoofing) on a small custom preset and check the properties the pipeline relies on:
speakers are separable but not trivially, spoofs fool a speaker model, and a CM learns the training attacks
but only partly generalises to unseen eval attacks.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.fft import dct
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import synthetic
from synthetic import Preset
from synthetic.attacks import EVAL_ATTACKS, TRAIN_ATTACKS
from tests.conftest import ROOT, reference_path, sweep_eer

SPLITS = ("train", "dev", "eval")
CM_NAME = {"train": "ASVspoof2019.LA.cm.train.trn.txt", "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
           "eval": "ASVspoof2019.LA.cm.eval.trl.txt"}
ASV = "ASVspoof2019_LA_asv_protocols/ASVspoof2019.LA.asv"

# Small enough for ~10 s of generation on a busy 2-core machine, big enough for EERs with some meaning.
REALISM = Preset(name="test-realism", train_speakers=16, dev_speakers=8, eval_speakers=8, train_bonafide=10,
                 enrol_utts=3, trial_utts=6, train_spoofs=30, dev_spoofs=10, eval_spoofs=5, min_dur=1.0, max_dur=1.5,
                 vox_train_speakers=16, vox_test_speakers=2, vox_utts=4, vox_test_utts=2, vox_videos=2)


# ----------------------------------------------------------------------------------------------- helpers
def _frames_power(x: np.ndarray, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10


def _mel_fb(n_mels: int = 40, n_fft: int = 512, sr: int = 16000) -> np.ndarray:
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = imel(np.linspace(mel(60), mel(7600), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


_MEL = _mel_fb()


def _speech(power: np.ndarray) -> np.ndarray:
    energy = 10 * np.log10(power.sum(axis=1))
    return energy > energy.max() - 30


def asv_features(x: np.ndarray) -> np.ndarray:
    """Mean and std of 20 MFCCs over speech frames."""
    p = _frames_power(x)
    mfcc = dct(np.log(p @ _MEL.T), type=2, norm="ortho", axis=1)[:, 1:21]
    m = mfcc[_speech(p)]
    return np.concatenate([m.mean(0), m.std(0)])


def cm_features(x: np.ndarray) -> np.ndarray:
    """Linear-frequency cepstral statistics, spectral flatness, high-band energy and sample-level statistics."""
    p = _frames_power(x)
    speech = _speech(p)
    bands = np.log(p[:, 1:].reshape(len(p), 32, 8).mean(axis=2))
    lfcc = dct(bands, type=2, norm="ortho", axis=1)[:, :20]
    dl = np.diff(lfcc, axis=0)
    flat = np.log(p[:, 1:].reshape(len(p), 8, 32)).mean(2) - np.log(p[:, 1:].reshape(len(p), 8, 32).mean(2))
    quiet = ~speech
    q = bands[quiet].mean(0) - bands[speech].mean(0) if quiet.any() else np.zeros(32)
    d = np.diff(x)
    cep = np.fft.irfft(np.log(p[speech]), axis=1)[:, 32:200]              # pitch region of the cepstrum
    cpp = cep.max(axis=1) - cep.mean(axis=1)                                # cepstral peak prominence
    flux = np.sqrt((np.diff(np.log(p[:, 4:200]), axis=0) ** 2).mean(1))[speech[1:] & speech[:-1]]
    mask = np.zeros(len(x), dtype=bool)
    mask[:len(speech) * 160] = np.repeat(speech, 160)[:len(x)]
    seg = x[mask] if mask.sum() > 1000 else x
    seg = (seg - seg.mean()) / (seg.std() + 1e-9)
    return np.concatenate([lfcc[speech].mean(0), lfcc[speech].std(0), dl[speech[1:]].std(0),
                           flat[speech].mean(0), flat[speech].std(0), q[::4],
                           [np.log(np.mean(d ** 2) / np.mean(x ** 2) + 1e-12), cpp.mean(), cpp.std(),
                            np.percentile(flux, 50), np.percentile(flux, 95), flux.max(), np.log(np.mean(seg ** 4)),
                            np.log(np.abs(seg).max())]])


def read_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def load(la: Path, split: str, utt: str) -> np.ndarray:
    return sf.read(str(la / f"ASVspoof2019_LA_{split}" / "flac" / f"{utt}.flac"), dtype="float32")[0]


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> synthetic.CorpusPaths:
    return synthetic.generate_corpus(tmp_path_factory.mktemp("tiny"), "tiny", seed=0)


@pytest.fixture(scope="module")
def realism(tmp_path_factory) -> synthetic.CorpusPaths:
    return synthetic.generate_corpus(tmp_path_factory.mktemp("realism"), REALISM, seed=1)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synthetic_corpus.json"}


# ----------------------------------------------------------------------------------------------- tests
def test_same_seed_gives_identical_bytes_and_other_seed_differs(tiny, tmp_path):
    again = synthetic.generate_corpus(tmp_path / "again", "tiny", seed=0, workers=2)  # worker count must not matter
    a, b = _digest(tiny.root), _digest(again.root)
    assert a == b and len(a) > 50
    other = synthetic.generate_corpus(tmp_path / "other", "tiny", seed=1)
    x = load(tiny.la, "train", read_lines(tiny.la / "ASVspoof2019_LA_cm_protocols" / CM_NAME["train"])[0][1])
    first_other = read_lines(other.la / "ASVspoof2019_LA_cm_protocols" / CM_NAME["train"])[0][1]
    y = load(other.la, "train", first_other)
    assert not (len(x) == len(y) and np.array_equal(x, y))
    assert set(_digest(other.root).values()).isdisjoint(a.values())


def test_layout_protocols_and_files(tiny):
    la = tiny.la
    assert tiny.enr_audio == la / "enr_audio" and tiny.voxceleb == tiny.root / "VoxCeleb"
    speakers = {}
    cm_utts = {}
    for split in SPLITS:
        prefix = {"train": "LA_T_", "dev": "LA_D_", "eval": "LA_E_"}[split]
        rows = read_lines(la / "ASVspoof2019_LA_cm_protocols" / CM_NAME[split])
        assert rows and all(len(r) == 5 and r[2] == "-" for r in rows)
        for spk, utt, _, system, key in rows:
            assert len(spk) == 7 and spk.startswith("LA_00") and spk[3:].isdigit()
            assert utt.startswith(prefix) and len(utt) == 12 and utt[5:].isdigit()
            assert (key, system == "-") in {("bonafide", True), ("spoof", False)}
            info = sf.info(str(la / f"ASVspoof2019_LA_{split}" / "flac" / f"{utt}.flac"))
            assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        systems = {r[3] for r in rows} - {"-"}
        assert systems == set(TRAIN_ATTACKS if split != "eval" else EVAL_ATTACKS)
        speakers[split] = {r[0] for r in rows}
        cm_utts[split] = {r[1]: r for r in rows}
        n_flac = len(list((la / f"ASVspoof2019_LA_{split}" / "flac").glob("*.flac")))
        n_enrol = 0
        if split != "train":
            enrol = {}
            for g in ("female", "male"):
                for spk, utts in read_lines(la / f"{ASV}.{split}.{g}.trn.txt"):
                    enrol[spk] = (g, utts.split(","))
            n_enrol = sum(len(u) for _, u in enrol.values())
            assert {g for g, _ in enrol.values()} == {"female", "male"} and set(enrol) == speakers[split]
            for _, utts in enrol.values():
                assert utts == sorted(utts) and not set(utts) & set(cm_utts[split])  # not CM trials
                for u in utts:
                    assert (la / f"ASVspoof2019_LA_{split}" / "flac" / f"{u}.flac").is_file()
            gender = {spk: g for spk, (g, _) in enrol.items()}
            gi = read_lines(la / f"{ASV}.{split}.gi.trn.txt")
            assert {r[0] for r in gi} == set(enrol)
            for spk, name in gi:
                assert name == f"{spk}_{enrol[spk][1][0]}"
                joined = sf.read(str(tiny.enr_audio / split / f"{name}.flac"), dtype="float32")[0]
                parts = [load(la, split, u) for u in enrol[spk][1]]
                assert np.array_equal(joined, np.concatenate(parts))
            keys = set()
            for spk, utt, attack, key in read_lines(la / f"{ASV}.{split}.gi.trl.txt"):
                owner, _, _, system, cm_key = cm_utts[split][utt]
                keys.add(key)
                if key == "target":
                    assert (attack, cm_key, owner) == ("bonafide", "bonafide", spk)
                elif key == "nontarget":
                    assert attack == "bonafide" and cm_key == "bonafide" and owner != spk
                    assert gender[owner] == gender[spk]
                else:
                    assert key == "spoof" and attack == system and owner == spk
            assert keys == {"target", "nontarget", "spoof"}
        assert n_flac == len(rows) + n_enrol  # every flac is a CM trial or an enrolment utterance
    assert not (speakers["train"] & speakers["dev"] or speakers["train"] & speakers["eval"]
                or speakers["dev"] & speakers["eval"])

    vox = tiny.voxceleb
    train = read_lines(vox / "train_list.txt")
    for spk, rel in train:
        parts = rel.split("/")
        assert parts[0] == spk and len(spk) == 7 and spk[2:].isdigit() and len(parts[1]) == 11
        assert len(parts[2]) == 9 and parts[2].endswith(".wav")
        assert sf.info(str(vox / "wav" / rel)).samplerate == 16000
    trials = read_lines(vox / "veri_test.txt")
    assert {t[0] for t in trials} == {"0", "1"}
    test_spk = set()
    for label, a, b in trials:
        assert (vox / "wav" / a).is_file() and (vox / "wav" / b).is_file()
        assert (label == "1") == (a.split("/")[0] == b.split("/")[0])
        test_spk |= {a.split("/")[0], b.split("/")[0]}
    assert not test_spk & {s for s, _ in train}
    assert len(list((vox / "wav").rglob("*.wav"))) == len(train) + len({f for t in trials for f in t[1:]})


def test_skips_complete_output_and_force_regenerates(tiny, tmp_path):
    out = tmp_path / "c"
    small = Preset(name="mini", train_speakers=2, dev_speakers=4, eval_speakers=4, train_bonafide=1, enrol_utts=1,
                   trial_utts=1, train_spoofs=1, dev_spoofs=1, eval_spoofs=1, min_dur=0.6, max_dur=0.6,
                   vox_train_speakers=1, vox_test_speakers=2, vox_utts=1, vox_test_utts=2, vox_videos=1)
    paths = synthetic.generate_corpus(out, small, seed=3)
    manifest = json.loads((out / "synthetic_corpus.json").read_text())
    assert manifest["seed"] == 3 and manifest["preset"]["name"] == "mini"
    marker = paths.la / "ASVspoof2019_LA_train" / "flac" / "stale.flac"
    marker.write_bytes(b"x")  # a skipped run must not look at it; a forced run must remove it
    stamp = (out / "synthetic_corpus.json").stat().st_mtime_ns
    marker.unlink()
    synthetic.generate_corpus(out, small, seed=3)
    assert (out / "synthetic_corpus.json").stat().st_mtime_ns == stamp  # skipped
    marker.write_bytes(b"x")
    synthetic.generate_corpus(out, small, seed=3)  # counts differ now: incomplete, so regenerated
    assert not marker.exists()
    stamp = (out / "synthetic_corpus.json").stat().st_mtime_ns
    synthetic.generate_corpus(out, small, seed=3, force=True)
    assert (out / "synthetic_corpus.json").stat().st_mtime_ns != stamp
    foreign = tmp_path / "foreign"
    (foreign / "LA").mkdir(parents=True)
    with pytest.raises(ValueError, match="not written by the synthetic generator"):
        synthetic.generate_corpus(foreign, small, seed=3)
    with pytest.raises(ValueError, match="unknown preset"):
        synthetic.generate_corpus(out, "huge")


def test_a_file_swapped_with_its_mtime_copied_back_is_regenerated(tmp_path):
    import os
    import time

    from synthetic.layout import why_incomplete
    out = tmp_path / "c"
    small = Preset(name="mini", train_speakers=2, dev_speakers=4, eval_speakers=4, train_bonafide=1, enrol_utts=1,
                   trial_utts=1, train_spoofs=1, dev_spoofs=1, eval_spoofs=1, min_dur=0.6, max_dur=0.6,
                   vox_train_speakers=1, vox_test_speakers=2, vox_utts=1, vox_test_utts=2, vox_videos=1)
    paths = synthetic.generate_corpus(out, small, seed=3)
    assert why_incomplete(paths, small, seed=3) is None
    target = sorted((paths.la / "ASVspoof2019_LA_dev" / "flac").glob("*.flac"))[0]
    written, stamp = target.read_bytes(), target.stat()
    time.sleep(0.02)                                  # a later change time even on a coarse kernel clock
    target.write_bytes(bytes(reversed(written)))      # other bytes, same size, then `touch -r`
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stamp.st_size, stamp.st_mtime_ns)
    assert why_incomplete(paths, small, seed=3).startswith("files changed since it was written")
    synthetic.generate_corpus(out, small, seed=3)
    assert target.read_bytes() == written and why_incomplete(paths, small, seed=3) is None


def test_cli_reports_and_skips(tiny):
    r = subprocess.run([sys.executable, "generate_corpus.py", "--out", str(tiny.root), "--preset", "tiny"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "already complete" in r.stdout and str(tiny.la) in r.stdout


def _asv_scores(paths: synthetic.CorpusPaths, split: str, lda: LinearDiscriminantAnalysis):
    la = paths.la
    enrol = {}
    for g in ("female", "male"):
        for spk, utts in read_lines(la / f"{ASV}.{split}.{g}.trn.txt"):
            e = lda.transform(np.stack([asv_features(load(la, split, u)) for u in utts.split(",")]))
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            enrol[spk] = e.mean(0) / np.linalg.norm(e.mean(0))
    cache: dict[str, np.ndarray] = {}
    scores: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    for spk, utt, _, key in read_lines(la / f"{ASV}.{split}.gi.trl.txt"):
        if utt not in cache:
            v = lda.transform(asv_features(load(la, split, utt))[None])[0]
            cache[utt] = v / np.linalg.norm(v)
        scores[key].append(float(cache[utt] @ enrol[spk]))
    return {k: np.array(v) for k, v in scores.items()}


def test_speaker_model_separates_speakers_and_spoofs_fool_it(realism):
    """MFCC stats + LDA trained on VoxCeleb and LA train speakers, cosine-scored on dev and eval trials."""
    feats, labels = [], []
    for spk, rel in read_lines(realism.voxceleb / "train_list.txt"):
        feats.append(asv_features(sf.read(str(realism.voxceleb / "wav" / rel), dtype="float32")[0]))
        labels.append(spk)
    for spk, utt, _, _, key in read_lines(realism.la / "ASVspoof2019_LA_cm_protocols" / CM_NAME["train"]):
        if key == "bonafide":
            feats.append(asv_features(load(realism.la, "train", utt)))
            labels.append(spk)
    lda = LinearDiscriminantAnalysis(n_components=16, solver="eigen", shrinkage=0.1).fit(np.stack(feats), labels)
    for split in ("dev", "eval"):
        s = _asv_scores(realism, split, lda)
        sv = sweep_eer(s["target"], s["nontarget"])
        spf = sweep_eer(s["target"], s["spoof"])
        print(f"{split}: SV-EER {sv:.3f}  SPF-EER {spf:.3f}")
        assert 0.005 < sv < 0.25, f"{split} SV-EER {sv:.3f}: speakers must be separable, but not trivially"
        assert spf > 0.20 and spf > sv + 0.1, f"{split} SPF-EER {spf:.3f} (SV-EER {sv:.3f}): spoofs must fool ASV"


def test_countermeasure_learns_seen_attacks_and_partly_generalises(realism):
    """Logistic regression on spectral statistics: low EER on dev (A01-A06), clearly higher on eval (A07-A19)."""
    data = {}
    for split in SPLITS:
        rows = read_lines(realism.la / "ASVspoof2019_LA_cm_protocols" / CM_NAME[split])
        x = np.stack([cm_features(load(realism.la, split, r[1])) for r in rows])
        data[split] = (x, np.array([r[4] == "bonafide" for r in rows]))
    scaler = StandardScaler().fit(data["train"][0])
    cm = LogisticRegression(C=0.5, max_iter=2000, class_weight="balanced")
    cm.fit(scaler.transform(data["train"][0]), data["train"][1])
    result = {}
    for split in ("dev", "eval"):
        x, y = data[split]
        score = cm.decision_function(scaler.transform(x))
        result[split] = sweep_eer(score[y], score[~y])
    print(f"CM EER dev {result['dev']:.3f} eval {result['eval']:.3f}")
    assert result["dev"] < 0.20, f"CM dev EER {result['dev']:.3f}: training attacks must be learnable"
    assert result["eval"] > result["dev"] + 0.05, f"CM eval EER {result['eval']:.3f} vs dev {result['dev']:.3f}"
    assert result["eval"] < 0.5


def _trial_counts(lines: list[str]) -> dict[str, int]:
    counts = {"target": 0, "nontarget": 0, "spoof": 0}
    for line in lines:
        counts[line.split()[3]] += 1
    return counts


@pytest.mark.parametrize("split", ["dev", "eval"])
def test_default_trial_lists_are_spoof_heavy_like_the_real_ones(split):
    """SASV-EER pools nontarget and spoof trials: most negatives are spoofs in the real lists (dev 79 %, eval
    66 %), and the default corpus keeps them the majority, so its SASV-EER is not mostly an SV-EER."""
    from synthetic.layout import plan_corpus
    from synthetic.presets import get_preset

    texts = plan_corpus(get_preset("default"), seed=0)[2]
    ours = _trial_counts(texts[f"LA/{ASV}.{split}.gi.trl.txt"])
    share = ours["spoof"] / (ours["spoof"] + ours["nontarget"])
    assert 0.55 <= share <= 0.85, f"{split}: spoof share of the negatives {share:.2f} ({ours})"
    assert ours["nontarget"] >= ours["target"]  # enough nontarget trials for an SV-EER with some meaning


def test_real_trial_lists_are_spoof_heavy():
    """The figures the test above is built on, read from the official ASVspoof 2019 LA protocols."""
    for split, expected in (("dev", (1484, 5768, 22296)), ("eval", (5370, 33327, 63882))):
        lines = reference_path("protocols", "ASVspoof2019_LA",
                               f"ASVspoof2019.LA.asv.{split}.gi.trl.txt").read_text().splitlines()
        real = _trial_counts(lines)
        assert (real["target"], real["nontarget"], real["spoof"]) == expected
        assert real["spoof"] / (real["spoof"] + real["nontarget"]) > 0.6


# ----------------------------------------------------------------------------------------------- presets at scale
# Digests of the plans (protocol texts, file paths and RNG keys) of the existing presets: a change of either
# changes every corpus made from them, which needs a GENERATOR_VERSION bump (and then new digests here).
PLAN_DIGESTS = {"tiny": "a38e6d19e4ca28527d291a2de4f490ea82a364517460c8f19af0dc01f4fe66e5",
                "default": "c07afe7bc7fa643acbe7e89cd431750d293a4afff76c41159d87683b0f799e28"}


@pytest.mark.parametrize("name", sorted(PLAN_DIGESTS))
def test_existing_presets_plan_unchanged(name):
    from synthetic.layout import GENERATOR_VERSION, plan_corpus

    _, jobs, texts, _ = plan_corpus(synthetic.get_preset(name), seed=0)
    rows = [[j.path, list(j.key), j.voice, j.attack, j.source, list(j.channel_key)] for j in jobs]
    digest = hashlib.sha256(json.dumps([texts, rows], sort_keys=True).encode()).hexdigest()
    assert GENERATOR_VERSION == 2 and digest == PLAN_DIGESTS[name]


def protocol_summary(cm: dict[str, list[str]], trials: dict[str, list[str]],
                     enrol: dict[tuple[str, str], list[str]]) -> dict:
    """What the `scale` preset must share with the official lists: per split, CM lines by system and key, speakers
    and their bona fide / spoof counts; per dev/eval split, enrolled speakers and utterances per gender, trials by
    key and attack, per claimed speaker its target / nontarget / spoof counts (with its gender), distinct nontarget
    utterances, and that nontarget trials use every bona fide utterance of a speaker who is never enrolled."""
    out: dict = {}
    for split, lines in cm.items():
        rows = [line.split() for line in lines]
        owner = {r[1]: r[0] for r in rows}
        per_spk = {key: sorted(Counter(r[0] for r in rows if r[4] == key).values()) for key in ("bonafide", "spoof")}
        out[split] = {"cm": sorted(Counter((r[3], r[4]) for r in rows).items()), "speakers": len(set(owner.values())),
                      "per_speaker": per_spk}
        if split == "train":
            continue
        gender = {}
        for g in ("female", "male"):
            for line in enrol[split, g]:
                spk, utts = line.split()
                gender[spk] = g
                out[split].setdefault(f"enrol_{g}", []).append(len(utts.split(",")))
                assert not set(utts.split(",")) & set(owner)       # enrolment utterances are not CM trials
        trl = [line.split() for line in trials[split]]
        bona = Counter(r[0] for r in rows if r[4] == "bonafide")
        pairs = Counter((t[0], owner[t[1]]) for t in trl if t[3] == "nontarget")
        out[split].update(
            trials=sorted(Counter(t[3] for t in trl).items()), attacks=sorted(Counter(t[2] for t in trl).items()),
            per_claim=sorted(Counter((gender[t[0]], t[3]) for t in trl).items()),
            per_claimed_speaker=sorted((gender[s], k, n) for (s, k), n in Counter((t[0], t[3]) for t in trl).items()),
            spoof_owner_is_claim=all(owner[t[1]] == t[0] for t in trl if t[3] != "nontarget"),
            nontarget_utts=len({t[1] for t in trl if t[3] == "nontarget"}),
            nontarget_whole_speakers=all(n == bona[o] and o not in gender for (_, o), n in pairs.items()),
            nontarget_pairs=len(pairs))
        for e in out[split]:
            if e.startswith("enrol_"):
                out[split][e].sort()
    return out


def _summary_of(read) -> dict:
    cm = {s: read(f"ASVspoof2019.LA.cm.{s}.{'trn' if s == 'train' else 'trl'}.txt") for s in SPLITS}
    trials = {s: read(f"ASVspoof2019.LA.asv.{s}.gi.trl.txt") for s in ("dev", "eval")}
    enrol = {(s, g): read(f"ASVspoof2019.LA.asv.{s}.{g}.trn.txt") for s in ("dev", "eval") for g in ("female", "male")}
    return protocol_summary(cm, trials, enrol)


def test_scale_preset_plans_the_real_asvspoof2019_la_counts():
    """The `scale` preset's planned protocols (no audio rendered) against the official ASVspoof 2019 LA files."""
    from synthetic.layout import plan_corpus

    folder = reference_path("protocols", "ASVspoof2019_LA")
    texts = plan_corpus(synthetic.get_preset("scale"), seed=0)[2]
    by_name = {Path(k).name: v for k, v in texts.items()}
    ours = _summary_of(lambda name: by_name[name])
    real = _summary_of(lambda name: (folder / name).read_text().splitlines())
    for split in SPLITS:
        assert ours[split] == real[split], split
    assert sum(len(v) for v in ours.values()) > 0
    assert len(by_name["ASVspoof2019.LA.asv.eval.gi.trl.txt"]) == 102_579


def test_scale_preset_counts_without_reference():
    """Totals of the `scale` plan that the docs quote (checked also where the official files are absent)."""
    from synthetic.layout import plan_corpus

    _, jobs, texts, enrol_sets = plan_corpus(synthetic.get_preset("scale"), seed=0)
    count = {s: sum(1 for j in jobs if j.path.startswith(f"LA/ASVspoof2019_LA_{s}/")) for s in SPLITS}
    assert count == {"train": 25_380, "dev": 24_844 + 142, "eval": 71_237 + 696}
    for split, expected in (("dev", (1484, 5768, 22296)), ("eval", (5370, 33327, 63882))):
        c = _trial_counts(texts[f"LA/{ASV}.{split}.gi.trl.txt"])
        assert (c["target"], c["nontarget"], c["spoof"]) == expected
    assert len(enrol_sets["dev"]) == 10 and len(enrol_sets["eval"]) == 48
    assert len({j.path for j in jobs}) == len(jobs)                # ids are unique within a split


def test_scaled_preset_shrinks_utterances_and_trials_not_speakers():
    from synthetic.layout import plan_corpus
    from synthetic.presets import scaled

    full, quarter = synthetic.get_preset("scale"), scaled(synthetic.get_preset("scale"), 0.25)
    t_full = plan_corpus(full, seed=0)[2]
    t_quarter = plan_corpus(quarter, seed=0)[2]
    for name in t_full:
        if "cm_protocols" in name or "gi.trl" in name:
            assert 0.23 < len(t_quarter[name]) / len(t_full[name]) < 0.27, name
        elif "LA/" in name:
            assert len(t_quarter[name]) == len(t_full[name]), name      # enrolment lists: same speakers
    with pytest.raises(ValueError, match="no la_groups"):
        scaled(synthetic.get_preset("tiny"), 0.5)
    with pytest.raises(ValueError, match="fraction"):
        scaled(full, 0.0)


def test_preset_groups_are_validated():
    from synthetic.presets import LAGroups, SpeakerGroup

    train = (SpeakerGroup("female", 2, bonafide=2, spoofs_per_attack=1),)
    test = (SpeakerGroup("male", 1, bonafide=1, spoofs_per_attack=1, enrol_utts=1, nontarget_speakers=2,
                         nontarget_utts=1, claims=2),)
    Preset(name="ok", la_groups=LAGroups(train, test, test))
    bad_claims = (SpeakerGroup("male", 1, 1, 1, enrol_utts=1, nontarget_speakers=1, nontarget_utts=1, claims=2),)
    with pytest.raises(ValueError, match=r"la_groups.dev\[0\].*claims <= nontarget_speakers"):
        Preset(name="x", la_groups=LAGroups(train, bad_claims, test))
    with pytest.raises(ValueError, match=r"la_groups.train\[0\]: train speakers are not enrolled"):
        Preset(name="x", la_groups=LAGroups(test, test, test))
    with pytest.raises(ValueError, match="gender"):
        Preset(name="x", la_groups=LAGroups((SpeakerGroup("other", 2, 1, 1),), test, test))
    with pytest.raises(ValueError, match="min_dur"):
        Preset(name="x", min_dur=0.1, max_dur=0.3)
