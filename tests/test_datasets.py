"""data/datasets.py and data/samplers.py on small fake corpora written with soundfile."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from data.asvspoof import LADatabase, MissingFilesError, SASVTrial, utterances_by_speaker
from data.audio import AudioError, CropSpec, crop_first, load_audio
from data.datasets import CMDataset, SASVEvalDataset, SASVWaveEvalDataset, SpeakerDataset
from data.embeddings import EmbeddingTable
from data.samplers import SpeakerBatchSampler
from data.trial_sampling import (
    SASVEmbeddingTrialDataset,
    SASVTrialSampler,
    SASVWaveTrialDataset,
    baseline2_train_dataset,
)
from data.voxceleb import VoxCeleb
from pipeline.stages.enrolment import speaker_models

TRAIN_SPEAKERS = ["LA_0079", "LA_0080", "LA_0081", "LA_0082"]


def _write_audio(path: Path, n: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32), 16000)


@pytest.fixture(scope="module")
def la(tmp_path_factory) -> LADatabase:
    """4 train speakers x (3 bona fide + 3 spoof) utterances, lengths 300..1500 samples."""
    root = tmp_path_factory.mktemp("LA")
    db = LADatabase(root)
    lines, k = [], 0
    for s, spk in enumerate(TRAIN_SPEAKERS):
        for j in range(3):
            lines.append(f"{spk} LA_T_{s}{j}0 - - bonafide")
            lines.append(f"{spk} LA_T_{s}{j}1 - A0{j + 1} spoof")
    db.cm_protocol_path("train").parent.mkdir(parents=True)
    db.cm_protocol_path("train").write_text("\n".join(lines) + "\n")
    for line in lines:
        k += 1
        _write_audio(db.audio("train", line.split()[1]), 300 + 50 * k, seed=k)
    return db


# ---- speaker batch sampler -----------------------------------------------------------------------
LABELS = [spk for spk in range(10) for _ in range(3 + spk % 4)]  # 10 speakers, 3..6 utterances


def test_batch_sampler_batches():
    sampler = SpeakerBatchSampler(LABELS, speakers_per_batch=4, utts_per_speaker=2, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) >= 4
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # no utterance twice in an epoch
    for b in batches:
        labels = np.array([LABELS[i] for i in b]).reshape(4, 2)
        assert (labels == labels[:, :1]).all()  # speaker-major: row = one speaker's M utterances
        assert len(set(labels[:, 0])) == 4  # no speaker twice in a batch
    groups = sum(c // 2 for c in Counter(LABELS).values())  # 19 groups of 2 utterances
    assert len(batches) == groups // 4  # the packing loses no full batch here


def test_batch_sampler_seed_and_epoch():
    a = SpeakerBatchSampler(LABELS, 3, 2, seed=5)
    b = SpeakerBatchSampler(LABELS, 3, 2, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(SpeakerBatchSampler(LABELS, 3, 2, seed=6)) != first


def test_batch_sampler_distributed_shares():
    full = SpeakerBatchSampler(LABELS, 2, 2, seed=3)
    shares = [list(SpeakerBatchSampler(LABELS, 2, 2, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(full) // 3
    as_sets = [{tuple(b) for b in s} for s in shares]
    assert not (as_sets[0] & as_sets[1]) and not (as_sets[1] & as_sets[2]) and not (as_sets[0] & as_sets[2])
    assert set().union(*as_sets) <= {tuple(b) for b in full}
    sampler = SpeakerBatchSampler(LABELS, 2, 2, seed=3, rank=1, world_size=3)
    sampler.set_epoch(4)
    assert len(list(sampler)) == len(sampler)


def test_batch_sampler_limits_and_errors():
    sampler = SpeakerBatchSampler(LABELS, 2, 1, seed=0, max_utts_per_speaker=2)
    counts = Counter(LABELS[i] for b in sampler for i in b)
    assert max(counts.values()) <= 2
    with pytest.raises(ValueError, match="only 2 speakers have >= 6 utterances; a batch needs 4"):
        SpeakerBatchSampler(LABELS, 4, 6)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        SpeakerBatchSampler(LABELS, 2, 2, rank=2, world_size=2)


def test_speaker_dataset_with_batch_sampler(tmp_path):
    lines = []
    for s in range(4):
        for u in range(3):
            rel = f"id0000{s}/vid/0000{u}.wav"
            _write_audio(tmp_path / "wav" / rel, 400 + 100 * u, seed=10 * s + u)
            lines.append(f"id0000{s} {rel}")
    (tmp_path / "train_list.txt").write_text("\n".join(lines) + "\n")
    ds = SpeakerDataset.from_voxceleb(VoxCeleb(tmp_path), n_samples=600, seed=2)
    sampler = SpeakerBatchSampler(ds.labels, speakers_per_batch=2, utts_per_speaker=3, seed=0)
    wave, label = next(iter(DataLoader(ds, batch_sampler=sampler)))
    assert wave.shape == (6, 600) and wave.dtype == torch.float32
    assert (label.view(2, 3) == label.view(2, 3)[:, :1]).all() and label[0] != label[3]
    x0, _ = ds[0]
    np.testing.assert_array_equal(x0.numpy(), ds[0][0].numpy())  # seeded crop
    ds.set_epoch(1)
    assert len(ds[4][0]) == 600


# ---- CM dataset ------------------------------------------------------------------------------------
def test_cm_dataset(la):
    train = CMDataset.from_database(la, "train", n_samples=500, train=True, seed=0)
    assert len(train) == 24 and sum(train.labels) == 12
    assert train.labels[0] == 1 and train.labels[1] == 0  # 1 = bona fide (AASIST)
    assert train.ids[:2] == ["LA_T_000", "LA_T_001"]
    x, y = train[23]
    full = load_audio(train.paths[23])
    assert x.shape == (500,) and y == 0
    start = int(np.flatnonzero(np.isclose(full, x[0].item()))[0])
    np.testing.assert_allclose(x.numpy(), full[start:start + 500])  # a contiguous crop of the file
    np.testing.assert_array_equal(train[23][0].numpy(), x.numpy())
    starts = set()
    for epoch in range(6):
        train.set_epoch(epoch)
        starts.add(float(train[23][0][0]))
    assert len(starts) > 1  # re-cropped each epoch

    ev = CMDataset.from_database(la, "train", n_samples=2000, train=False)
    x, _ = ev[0]  # the first file is 350 samples long: first-N repeat-pad
    np.testing.assert_array_equal(x.numpy(), crop_first(load_audio(ev.paths[0]), 2000))
    assert len(CMDataset.from_database(la, "train", train=False)[0][0]) == 64600  # AASIST default
    with pytest.raises(ValueError, match="CM labels must be 1"):
        CMDataset([la.audio("train", "x")], [2])


def test_missing_audio_fails_before_compute(tmp_path, la):
    db = LADatabase(tmp_path)
    db.cm_protocol_path("train").parent.mkdir(parents=True)
    db.cm_protocol_path("train").write_text(la.cm_protocol_path("train").read_text())
    with pytest.raises(MissingFilesError, match=r"24 of 24 files missing"):
        CMDataset.from_database(db, "train")
    with pytest.raises(MissingFilesError, match=r"24 of 24 files missing"):
        SASVWaveTrialDataset.from_database(db)


@pytest.mark.parametrize("workers", [0, 1])
def test_audio_errors_surface_from_workers(tmp_path, workers):
    good, bad = tmp_path / "good.flac", tmp_path / "broken.flac"
    _write_audio(good, 800, 0)
    bad.write_bytes(good.read_bytes()[:300])
    ds = CMDataset([good, bad], [1, 0], n_samples=400)
    with pytest.raises(AudioError, match=r"broken\.flac"):
        list(DataLoader(ds, batch_size=2, num_workers=workers))


def test_crop_spec_windows(la):
    """The scoring crops (data.audio.CropSpec, what every stage and verify.py use)."""
    wave = load_audio(la.audio("train", "LA_T_000"))
    n = len(wave)
    assert CropSpec("full").windows(wave).shape == (1, n)
    first = CropSpec("first", n + 100).windows(wave)               # repeat-padded past the end
    assert first.shape == (1, n + 100) and np.array_equal(first[0, n:], wave[:100])
    even = CropSpec("even", 200, 4).windows(wave)
    assert even.shape == (4, 200) and np.array_equal(even[-1], wave[n - 200:]) and even.dtype == np.float32
    # refused by the rules of the config's crop section (data.audio.CROP_RULES), in the schema's words
    for bad, message in (({"policy": "random"}, "'crop.policy' must be one of first, full, even, got 'random'"),
                         ({"samples": 0}, "'crop.samples' must be an integer >= 1, got 0"),
                         ({"policy": "even", "count": 0}, "'crop.count' must be an integer >= 1, got 0")):
        with pytest.raises(ValueError) as refused:
            CropSpec(**bad)
        assert str(refused.value) == message
    assert CropSpec.from_config({"policy": "even", "samples": 200, "count": 4}) == CropSpec("even", 200, 4)


# ---- SASV trial sampling ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lists(la):
    return utterances_by_speaker(la.cm_entries("train"))


@pytest.mark.parametrize("scheme,expect", [
    ("2class", {("target", 1): 50, ("nontarget", 0): 25, ("spoof", 0): 25}),
    ("4class", {("target", 0): 25, ("nontarget", 1): 25, ("spoof", 2): 25, ("nontarget_spoof", 3): 25}),
])
def test_trial_sampler_schemes(lists, scheme, expect):
    bona, spoof = lists
    spk_of = {u: s for d in (bona, spoof) for s, us in d.items() for u in us}
    sampler = SASVTrialSampler(bona, spoof, scheme)
    trials = sampler.epoch_trials(100, seed=0, epoch=0)
    assert Counter((t.kind, t.label) for t in trials) == expect
    assert len({t.kind for t in trials[:20]}) > 1  # shuffled, not blocks
    for t in trials:
        assert t.enrol in bona[t.speaker]
        if t.kind == "target":
            assert t.test in bona[t.speaker] and t.test != t.enrol
        elif t.kind == "nontarget":
            assert spk_of[t.test] != t.speaker and t.test in bona[spk_of[t.test]]
        elif t.kind == "spoof":
            assert t.test in spoof[t.speaker]
        else:
            assert spk_of[t.test] != t.speaker and t.test in spoof[spk_of[t.test]]
    assert sampler.epoch_trials(100, 0, 0) == trials
    assert sampler.epoch_trials(100, 0, 1) != trials
    assert sampler.epoch_trials(100, 1, 0) != trials
    odd = sampler.epoch_trials(7, 0, 0)
    assert len(odd) == 7


def test_trial_sampler_errors(lists):
    bona, spoof = lists
    with pytest.raises(ValueError, match="unknown trial scheme '3class'"):
        SASVTrialSampler(bona, spoof, "3class")
    with pytest.raises(ValueError, match="cannot draw 'spoof' trials"):
        SASVTrialSampler(bona, {}, "2class")
    with pytest.raises(ValueError, match="cannot draw 'nontarget' trials from 1 speakers"):
        SASVTrialSampler({"LA_0079": bona["LA_0079"]}, spoof, "2class")
    one_spoofer = SASVTrialSampler(bona, {"LA_0079": spoof["LA_0079"]}, "4class")
    for t in one_spoofer.epoch_trials(40, 0, 0):
        if t.kind == "nontarget_spoof":
            assert t.speaker != "LA_0079" and t.test in spoof["LA_0079"]


def _tables(la, dim_asv=6, dim_cm=4):
    ids = [e.utt for e in la.cm_entries("train")]
    rng = np.random.default_rng(0)
    return (EmbeddingTable(ids, rng.standard_normal((len(ids), dim_asv)), "asv.npz"),
            EmbeddingTable(ids, rng.standard_normal((len(ids), dim_cm)), "cm.npz"))


def test_embedding_and_wave_trials_share_sampling(la, lists):
    asv, cm = _tables(la)
    sampler = SASVTrialSampler(*lists, scheme="4class")
    emb = SASVEmbeddingTrialDataset(sampler, asv, cm, epoch_length=16, seed=3)
    wav = SASVWaveTrialDataset(sampler, {e.utt: la.audio("train", e.utt) for e in la.cm_entries("train")},
                               epoch_length=16, n_samples=700, enrol_samples=500, seed=3)
    assert emb.trials == wav.trials
    emb.set_epoch(2)
    wav.set_epoch(2)
    assert emb.trials == wav.trials == sampler.epoch_trials(16, 3, 2)
    enr_asv, tst_asv, tst_cm, label = emb[5]
    t = emb.trials[5]
    np.testing.assert_array_equal(enr_asv.numpy(), asv[t.enrol])
    np.testing.assert_array_equal(tst_asv.numpy(), asv[t.test])
    np.testing.assert_array_equal(tst_cm.numpy(), cm[t.test])
    assert label == t.label
    enr_w, tst_w, label = wav[5]
    assert enr_w.shape == (500,) and tst_w.shape == (700,) and label == t.label
    batch = next(iter(DataLoader(emb, batch_size=8)))
    assert [b.shape for b in batch] == [(8, 6), (8, 6), (8, 4), (8,)]


def test_wave_trials_from_database(la):
    ds = SASVWaveTrialDataset.from_database(la, scheme="2class", n_samples=400, seed=1)
    assert len(ds) == 24
    enr, tst, labels = next(iter(DataLoader(ds, batch_size=24)))
    assert enr.shape == tst.shape == (24, 400)
    assert int(labels.sum()) == 12


def test_embedding_trials_need_all_embeddings(la, lists):
    asv, cm = _tables(la)
    partial = EmbeddingTable(cm.ids[:-2], cm.embeddings[:-2], "cm_partial.npz")
    with pytest.raises(ValueError, match=r"cm_partial\.npz: 2 utterance ids needed by .* have no embedding"):
        SASVEmbeddingTrialDataset(SASVTrialSampler(*lists), asv, partial, epoch_length=4)
    with pytest.raises(ValueError, match="appears twice"):
        EmbeddingTable(["a", "a"], np.zeros((2, 3)))


def test_baseline2_train_dataset(la, tmp_path):
    from common.io import save_embeddings
    asv, cm = _tables(la)
    save_embeddings(tmp_path / "cm.npz", cm.ids, cm.embeddings)
    ds = baseline2_train_dataset(la.cm_entries("train"), asv, tmp_path / "cm.npz", seed=0)
    assert len(ds) == 24 and ds.sampler.scheme == "2class"
    assert Counter(t.label for t in ds.trials) == {1: 12, 0: 12}
    assert Counter(t.kind for t in ds.trials) == {"target": 12, "nontarget": 6, "spoof": 6}
    longer = baseline2_train_dataset(la.cm_entries("train"), asv, tmp_path / "cm.npz", seed=0, epoch_length=100)
    assert len(longer) == 100 and Counter(t.kind for t in longer.trials) == {"target": 50, "nontarget": 25, "spoof": 25}


def test_speaker_models_and_eval_dataset(la):
    asv, cm = _tables(la)
    enrol = {"LA_0079": ["LA_T_000", "LA_T_010"], "LA_0080": ["LA_T_100"]}
    models = speaker_models(enrol, asv, "raw")
    np.testing.assert_allclose(models["LA_0079"], (asv["LA_T_000"] + asv["LA_T_010"]) / 2, rtol=1e-6)
    normed = speaker_models(enrol, asv, "unit")
    np.testing.assert_allclose(normed["LA_0080"], asv["LA_T_100"] / np.linalg.norm(asv["LA_T_100"]), rtol=1e-6)
    trials = [SASVTrial("LA_0079", "LA_T_101", "bonafide", "nontarget"),
              SASVTrial("LA_0080", "LA_T_101", "A01", "spoof")]
    ds = SASVEvalDataset(trials, models, asv, cm)
    enr, tst_asv, tst_cm = ds[1]
    np.testing.assert_array_equal(enr.numpy(), models["LA_0080"])
    np.testing.assert_array_equal(tst_asv.numpy(), asv["LA_T_101"])
    np.testing.assert_array_equal(tst_cm.numpy(), cm["LA_T_101"])
    assert [b.shape for b in next(iter(DataLoader(ds, batch_size=2)))] == [(2, 6), (2, 6), (2, 4)]
    with pytest.raises(ValueError, match="1 utterance ids needed by the SASV trial list \\(speaker models\\)"):
        SASVEvalDataset(trials + [SASVTrial("LA_0099", "LA_T_101", "bonafide", "nontarget")], models, asv, cm)
    with pytest.raises(ValueError, match=r"asv\.npz: 1 utterance ids needed by the enrolment lists"):
        speaker_models({"LA_0079": ["nope"]}, asv, "raw")

    wave = SASVWaveEvalDataset(trials, {"LA_0079": la.audio("train", "LA_T_000"),
                                        "LA_0080": la.audio("train", "LA_T_100")},
                               {"LA_T_101": la.audio("train", "LA_T_101")}, n_samples=900, enrol_samples=1200)
    e, t = wave[0]
    assert e.shape == (1200,) and t.shape == (900,)
    with pytest.raises(ValueError, match="1 trial speakers have no audio path, e.g. LA_0080"):
        SASVWaveEvalDataset(trials, {"LA_0079": la.audio("train", "LA_T_000")},
                            {"LA_T_101": la.audio("train", "LA_T_101")})


# ---- million-line lists: compact paths, the sampler's batches ------------------------------------------
def test_path_list_is_a_sequence_of_paths(tmp_path):
    from data.pathlist import PathList

    rels = ["id00012/21Uxsk56VDQ/00001.wav", "id00005/ä-ö/00002.wav", "x.wav"]
    paths = PathList(tmp_path, iter(rels))
    assert len(paths) == 3 and list(paths) == [tmp_path / r for r in rels]
    assert paths[-2] == tmp_path / rels[1] and paths.relative(1) == rels[1]
    assert list(paths[1:]) == [tmp_path / r for r in rels[1:]]
    assert list(paths[::2]) == [tmp_path / rels[0], tmp_path / "x.wav"]
    assert list(paths[2:1]) == [] and list(paths.strings()) == [str(tmp_path / r) for r in rels]
    with pytest.raises(IndexError):
        paths[3]
    assert paths.nbytes == len("".join(rels).encode()) + 8 * 4
    ds = SpeakerDataset(paths, [1, 0, 1])
    assert ds.paths is paths and ds.labels.dtype == np.int64   # kept compact, not copied into Python lists


def _reference_batches(labels, B, M, seed, epoch, max_utts=None):
    """The sampler's definition, written plainly: per speaker its utterances in the epoch's shuffled order (at
    most max_utts), cut into groups of M, groups shuffled, packed in order into batches of B distinct speakers;
    a group whose speaker is in the open batch waits and is retried, in order, when that batch closes.
    Per-utterance dicts and lists: what the sampler did before it had to handle 1.09 M utterances."""
    rng = np.random.default_rng([seed, epoch])
    by_speaker = {}
    for i in rng.permutation(len(labels)).tolist():
        by_speaker.setdefault(labels[i], []).append(i)
    groups = []
    for spk in sorted(by_speaker):
        idx = by_speaker[spk][:max_utts]
        groups += [(spk, idx[k:k + M]) for k in range(0, len(idx) - len(idx) % M, M)]
    groups = [groups[k] for k in rng.permutation(len(groups)).tolist()]
    batches, current, deferred = [], [], []
    for spk, idx in groups:
        if spk in {s for s, _ in current}:
            deferred.append((spk, idx))
            continue
        current.append((spk, idx))
        if len(current) == B:
            batches.append([i for _, g in current for i in g])
            current, still = [], []
            for d in deferred:                      # one pass over the waiting groups, in order
                if d[0] in {s for s, _ in current}:
                    still.append(d)
                    continue
                current.append(d)
                if len(current) == B:
                    batches.append([i for _, g in current for i in g])
                    current = []
            deferred = still
    return batches


def test_batch_sampler_matches_its_definition():
    """The vectorised sampler (argsort grouping, one packing pass) gives the batches of the plain definition."""
    rng = np.random.default_rng(7)
    checked = 0
    for case in range(60):
        n_spk = int(rng.integers(2, 12))
        labels = (rng.integers(0, n_spk, int(rng.integers(n_spk, 120))) * 37).tolist()
        B, M = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        max_utts = [None, int(rng.integers(M, 6))][case % 2]
        try:
            sampler = SpeakerBatchSampler(labels, B, M, seed=case, max_utts_per_speaker=max_utts)
        except ValueError:
            continue
        for epoch in (0, 2):
            sampler.set_epoch(epoch)
            assert list(sampler) == _reference_batches(labels, B, M, case, epoch, max_utts), (case, epoch)
        checked += 1
    assert checked > 40
