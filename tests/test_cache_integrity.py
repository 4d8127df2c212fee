"""Caches that cannot be fooled or break a run: a file's identity (common/file_identity.py) sees an audio file
swapped under a copied-back modification time, and a damaged cached .npz or checkpoint is one line (readers) or
recomputed (the stage that writes it), never a traceback."""
from __future__ import annotations

import io
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import save_cm_score
import save_sasv_score
from common.errors import DamagedFileError, InputError
from common.file_identity import describe_changes, file_identity, identities
from common.io import file_sha256, load_arrays, load_embeddings, load_weights, save_arrays, save_embeddings
from data.asvspoof import LADatabase
from data.score_files import read_cm_scores
from engine.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from pipeline.stages.cache import CACHE_VERSION, Inputs, load_cache, save_cache
from tests.pipeline_fixtures import (
    assert_one_line_error,
    call,
    copy_corpus,
    frontends,
    sasv_args,
    staged,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name

TICK = 0.02   # longer than a coarse kernel clock tick (4 ms at HZ=250), so a rewrite gets a later change time


def swap_keeping_size_and_mtime(path: Path, wave: np.ndarray) -> None:
    """Writes `wave` into `path` as a WAV of exactly the file's current size, in place (same inode), then
    copies its old modification time back (`touch -r`): a swap that (size, mtime) cannot see."""
    before = os.stat(path)
    size = before.st_size
    subtype, width = ("PCM_16", 2) if (size - 44) % 2 == 0 else ("PCM_U8", 1)
    buffer = io.BytesIO()
    n = (size - 44) // width
    sf.write(buffer, np.resize(wave, n), 16000, subtype=subtype, format="WAV")
    data = buffer.getvalue()
    assert len(data) == size, (len(data), size)
    time.sleep(TICK)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


# ---------------------------------------------------------------------------------------------
# File identity
# ---------------------------------------------------------------------------------------------
def test_identity_sees_a_swap_in_place_or_by_rename_with_the_mtime_copied_back(tmp_path):
    a, b = tmp_path / "a.flac", tmp_path / "b.flac"
    a.write_bytes(b"1" * 100)
    b.write_bytes(b"2" * 100)
    paths = [str(a), str(b)]
    old = identities(paths)
    a.read_bytes()                                        # reading changes nothing
    assert describe_changes(old, identities(paths), paths) is None
    stamp = os.stat(a)
    time.sleep(TICK)
    a.write_bytes(b"3" * 100)                             # rewritten in place, then `touch -r`
    os.utime(a, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    new = identities(paths)
    assert (new[0, 0], new[0, 1]) == (old[0, 0], old[0, 1])   # size and mtime cannot tell
    said = describe_changes(old, new, paths, "audio file")
    assert said.startswith("1 audio file(s) changed since it was made (change time: 1), e.g. ") and str(a) in said
    other = tmp_path / "other"                            # another file moved into b's place, mtime copied
    other.write_bytes(b"4" * 100)
    stamp = os.stat(b)
    os.replace(other, b)
    os.utime(b, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    said = describe_changes(old, identities(paths), paths, "audio file")
    assert said.startswith("2 audio file(s) changed since") and "inode: 1" in said, said
    b.unlink()
    assert "missing now: 1" in describe_changes(old, identities(paths), paths)
    assert file_identity(b) is None and (identities([b]) == -1).all()


def test_file_sha256_hashes_again_after_a_swap_with_the_mtime_copied_back(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"a" * 64)
    first = file_sha256(path)
    stamp = os.stat(path)
    time.sleep(TICK)
    path.write_bytes(b"b" * 64)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert file_sha256(path) != first


# ---------------------------------------------------------------------------------------------
# Damaged files: what each kind of damage does to a cache, an array file and a checkpoint
# ---------------------------------------------------------------------------------------------
def _member_offset(data: bytes, member: str, into: int) -> int:
    """A byte `into` bytes into the stored data of `member` of a zip archive."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    header = 30 + len(info.filename.encode()) + int.from_bytes(data[info.header_offset + 28:info.header_offset + 30],
                                                                "little")
    assert into < info.compress_size
    return info.header_offset + header + into


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x10
    return bytes(out)


def damaged(kind: str, good: bytes, data_member: str, meta_member: str) -> bytes:
    """`good` (a zip archive's bytes) with one kind of damage."""
    if kind == "truncated":
        return good[:len(good) // 2]
    if kind == "empty":
        return b""
    if kind == "bit flip in the data":
        return _flip(good, _member_offset(good, data_member, 200))
    if kind == "bit flip in the metadata":
        return _flip(good, _member_offset(good, meta_member, 140))
    if kind == "not a zip file":
        return b"UTT1 0.5\nUTT2 0.7\n" * 20
    raise ValueError(kind)


KINDS = ["truncated", "empty", "bit flip in the data", "bit flip in the metadata", "not a zip file"]
SAID = {"truncated": "damaged (not a zip archive", "empty": "damaged (empty or cut short)",
        "bit flip in the data": "damaged (bad CRC-32 of embeddings.npy)",
        "bit flip in the metadata": "damaged (bad CRC-32 of made_by.npy)",
        "not a zip file": "damaged (not an .npz archive)",
        "foreign .npz": "holds no cache record"}


def _write_foreign(path: Path) -> None:
    save_embeddings(path, ["a", "b"], np.ones((2, 64), np.float32))      # a valid .npz without the cache record


@pytest.mark.parametrize("kind", [*KINDS, "foreign .npz"])
@pytest.mark.parametrize("arrays", [True, False], ids=["read", "check"])
def test_load_cache_says_damaged_for_every_kind_of_damage(tmp_path, kind, arrays):
    audio = tmp_path / "a.flac"
    audio.write_bytes(b"x" * 10)
    inputs = Inputs.of([("a", audio), ("b", audio)])
    path = tmp_path / "cache.npz"
    save_cache(path, {"arch": "x"}, inputs, {"ids": np.asarray(["a", "b"]),
                                             "embeddings": np.ones((2, 64), np.float32)})
    assert load_cache(path, {"arch": "x"}, inputs, False, arrays=arrays)[0] is not None
    if kind == "foreign .npz":
        _write_foreign(path)
    else:
        path.write_bytes(damaged(kind, path.read_bytes(), "embeddings.npy", "made_by.npy"))
    cached, why = load_cache(path, {"arch": "x"}, inputs, False, arrays=arrays)
    assert cached is None and why.startswith(SAID[kind]), why
    assert "\n" not in why


def test_caches_of_other_versions_are_named(tmp_path):
    path = tmp_path / "old.npz"
    for version, age in ((2, "an older"), (CACHE_VERSION + 1, "a newer")):
        save_arrays(path, cache_version=np.asarray(version), made_by=np.asarray("{}"))
        assert load_cache(path, {}, Inputs.of([]), False) == (
            None, f"written by {age} version of the toolkit (cache version {version}, this one uses {CACHE_VERSION})")


@pytest.mark.parametrize("kind", [*KINDS, "a single .npy array"])
def test_load_arrays_and_load_embeddings_name_a_damaged_file(tmp_path, kind):
    path = tmp_path / "e.npz"
    save_arrays(path, made_by=np.asarray("x" * 200), embeddings=np.ones((4, 64), np.float32))
    if kind == "a single .npy array":
        buffer = io.BytesIO()
        np.save(buffer, np.ones(3))
        path.write_bytes(buffer.getvalue())
    else:
        path.write_bytes(damaged(kind, path.read_bytes(), "embeddings.npy", "made_by.npy"))
    for reader in (load_arrays, load_embeddings):
        with pytest.raises(DamagedFileError, match=rf"^{path}: damaged \(") as raised:
            reader(path)
        assert "\n" not in str(raised.value)


def test_load_embeddings_names_a_file_without_ids(tmp_path):
    path = tmp_path / "e.npz"
    save_arrays(path, scores=np.zeros(3))
    with pytest.raises(InputError, match=r"e\.npz: not an embedding file \(needs arrays 'ids' and 'embeddings'"):
        load_embeddings(path)


@pytest.mark.parametrize("kind", ["truncated", "empty", "bit flip in a tensor", "bit flip in the pickle",
                                  "not a zip file"])
def test_damaged_checkpoints_are_one_line(tmp_path, kind):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"format": FORMAT, "model": {"w": torch.arange(4096.0)}})
    good = path.read_bytes()
    names = zipfile.ZipFile(io.BytesIO(good)).namelist()
    tensor = next(n for n in names if n.endswith("/data/0"))
    pickle = next(n for n in names if n.endswith("/data.pkl"))
    bad = {"truncated": good[:len(good) // 2], "empty": b"",
           "bit flip in a tensor": _flip(good, _member_offset(good, tensor, 8000)),
           "bit flip in the pickle": _flip(good, _member_offset(good, pickle, 60)),
           "not a zip file": b"not a checkpoint\n" * 10}[kind]
    path.write_bytes(bad)
    with pytest.raises(CheckpointError, match=rf"^{path}: not a loadable checkpoint, damaged or cut short\?") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"^last\.pt: not a loadable weights-only checkpoint") as e:
        load_weights(path)
    assert "\n" not in str(e.value)
    if kind.startswith("bit flip"):
        assert "bad CRC-32 of" in str(e.value)     # torch.load alone would load the flipped weight silently


# ---------------------------------------------------------------------------------------------
# The stages: a swapped audio file is rescored; a damaged cache is recomputed by its stage, named by readers
# ---------------------------------------------------------------------------------------------
def test_audio_swapped_with_its_mtime_copied_back_is_rescored(tiny_corpus, frontends, tmp_path, capsys, one_thread):
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus")
    db = LADatabase(corpus.la)
    entries = db.cm_entries("dev")
    utt, donor = entries[0].utt, next(e.utt for e in entries if e.key != entries[0].key)
    args = sasv_args(corpus, frontends, tmp_path / "out", "splits=[dev]")
    assert call(save_cm_score.main, args, capsys)[0] == 0
    scores = tmp_path / "out" / "scores" / "cm_dev.txt"
    before = dict(zip(read_cm_scores(scores).utt, read_cm_scores(scores).score, strict=True))
    donor_wave, _ = sf.read(str(db.audio("dev", donor)), dtype="float32")
    swap_keeping_size_and_mtime(db.audio("dev", utt), donor_wave[::-1].copy())
    rc, err = call(save_cm_score.main, args, capsys)
    assert rc == 0, err
    assert "recomputing" in err and "1 audio file(s) changed since it was made (change time: 1)" in err, err
    assert str(db.audio("dev", utt)) in err
    after = dict(zip(read_cm_scores(scores).utt, read_cm_scores(scores).score, strict=True))
    assert after[utt] != pytest.approx(before[utt], abs=1e-6)
    assert all(after[u] == pytest.approx(before[u], abs=1e-5) for u in before if u != utt)
    rc, err = call(save_cm_score.main, args, capsys)
    assert rc == 0 and "up to date, skipped" in err and "recomputing" not in err, err


@pytest.fixture
def staged_copy(staged, tmp_path) -> Path:
    """A private copy of the staged output folder (its caches still current: they name the shared corpus)."""
    out = tmp_path / "out"
    shutil.copytree(staged.out, out)
    return out


@pytest.mark.parametrize("kind", [*KINDS, "foreign .npz"])
def test_damaged_cache_stops_readers_in_one_line_and_its_stage_recomputes_it(staged_copy, tiny_corpus, frontends,
                                                                           capsys, one_thread, kind):
    cache = staged_copy / "embeddings" / "cm_dev.npz"
    good = cache.read_bytes()
    if kind == "foreign .npz":
        _write_foreign(cache)
    else:
        cache.write_bytes(damaged(kind, good, "embeddings.npy", "made_by.npy"))
    args = sasv_args(tiny_corpus, frontends, staged_copy)
    results = (staged_copy / "results.json").read_bytes()
    rc, err = call(save_sasv_score.main, args, capsys)                  # a reader: one line, nothing written
    assert rc == 2
    assert_one_line_error(err, f"{cache}: {SAID[kind]}", "run save_cm_score.py with this config first")
    assert (staged_copy / "results.json").read_bytes() == results
    rc, err = call(save_cm_score.main, args, capsys)                    # its stage: recomputed, said in one line
    assert rc == 0, err
    said = [line for line in err.splitlines() if str(cache) in line]
    assert len(said) == 1 and f"recomputing {cache}: {SAID[kind]}" in said[0], err
    assert "Traceback" not in err and "cm eval:" in err and "up to date, skipped" in err
    with np.load(cache, allow_pickle=False) as z, np.load(io.BytesIO(good), allow_pickle=False) as was:
        assert int(z["cache_version"]) == CACHE_VERSION
        np.testing.assert_allclose(z["scores"], was["scores"], atol=1e-5)


def test_cache_of_an_older_version_is_recomputed_once(staged_copy, tiny_corpus, frontends, capsys, one_thread):
    cache = staged_copy / "embeddings" / "cm_dev.npz"
    arrays = load_arrays(cache)                # rewritten as version 2 wrote it: size and mtime only
    n = len(arrays.pop("input_identity"))
    save_arrays(cache, **{**arrays, "cache_version": np.asarray(2), "input_size": np.zeros(n, np.int64),
                          "input_mtime_ns": np.zeros(n, np.int64)})
    args = sasv_args(tiny_corpus, frontends, staged_copy)
    rc, err = call(save_cm_score.main, args, capsys)
    assert rc == 0 and f"recomputing {cache}: written by an older version of the toolkit (cache version 2" in err, err
    rc, err = call(save_cm_score.main, args, capsys)
    assert rc == 0 and f"{cache} is up to date, skipped" in err and "recomputing" not in err, err
