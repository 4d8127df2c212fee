"""The demo's memo of front-end outputs (pipeline/stages/cache.py, `remembering_outputs`; used by
pipeline/stages/extract.py): an utterance already scored by the very same model is not decoded or run again, the
rows are bit for bit what a new computation gives, in the input order, and anything that could change an output
(other weights, another setting, training mode, a rewritten file, fixed-length crops, no memo) computes anew."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import asv
import cm
from data.audio import CropSpec
from pipeline.stages.cache import OutputMemo, active_output_memo, model_fingerprint, remembering_outputs
from pipeline.stages.extract import extract
from pipeline.stages.frontends import asv_embed_fn, cm_embed_fn

pytestmark = pytest.mark.usefixtures("one_thread")
FULL = CropSpec("full")


@pytest.fixture()
def audio(tmp_path) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(1)
    items = []
    for i, seconds in enumerate((0.9, 0.5, 1.3, 0.7)):
        path = tmp_path / f"utt{i}.flac"
        sf.write(str(path), (0.2 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000,
                 subtype="PCM_16")
        items.append((f"utt{i}", path))
    return items


def small_cm(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return cm.build_model("LCNN", channels=[8, 8, 8, 8], embedding_dim=16, **options).eval()


class Counted:
    """How many utterances a model was called on."""

    def __init__(self, model: torch.nn.Module):
        self.n = 0
        model.register_forward_hook(lambda module, args, out: setattr(self, "n", self.n + args[0].shape[0]))


def plain(items, model) -> dict[str, np.ndarray]:
    got = extract(items, cm_embed_fn(model), FULL)
    return {"ids": np.array(got.ids), **got.arrays}


def same(a, b) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)      # bit for bit, not within a tolerance


def test_a_second_extraction_by_an_equal_model_runs_nothing_and_gives_the_same_bits(audio):
    first, second = small_cm(), small_cm()          # two objects, equal weights: as the CM step and the SASV stage
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    want = plain(audio, first)
    calls = Counted(second)
    with remembering_outputs() as memo:
        extract(audio, cm_embed_fn(first), FULL)
        again = extract(audio, cm_embed_fn(second), FULL)
    assert calls.n == 0 and memo.hits == len(audio)
    same({"ids": np.array(again.ids), **again.arrays}, want)


def test_partly_remembered_lists_keep_the_input_order_and_values(audio):
    model = small_cm()
    want = plain(list(reversed(audio)), model)
    calls = Counted(model)
    with remembering_outputs():
        extract(audio[1:3], cm_embed_fn(model), FULL)
        calls.n = 0
        got = extract(list(reversed(audio)), cm_embed_fn(model), FULL)
    assert calls.n == 2                                  # utt0 and utt3 only
    same({"ids": np.array(got.ids), **got.arrays}, want)


def test_outputs_named_differently_share_the_model_outputs(audio):
    """The CM step scores through its loss (task cm's cm_eer), the stage through cm_embed_fn: one model run."""
    from pipeline.stages.extract import ModelCall
    model = small_cm()
    calls = Counted(model)
    with remembering_outputs():
        scores = extract(audio, ModelCall(model, "cpu", lambda out: {"scores": out[1][:, 1]}), FULL)
        both = extract(audio, cm_embed_fn(model), FULL)
    assert calls.n == len(audio)
    np.testing.assert_array_equal(scores.arrays["scores"], both.arrays["scores"])


def test_other_weights_another_setting_or_training_mode_compute_anew(audio):
    model = small_cm()
    other_weights = small_cm()
    with torch.no_grad():
        next(other_weights.parameters()).add_(1e-6)
    no_cmn = small_cm(cmn=False)                      # same state dict, another computation
    assert model_fingerprint(no_cmn) != model_fingerprint(model)
    training = small_cm().train()
    with remembering_outputs():
        extract(audio, cm_embed_fn(model), FULL)
        for changed in (other_weights, no_cmn, training):
            calls = Counted(changed)
            got = extract(audio, cm_embed_fn(changed), FULL)
            assert calls.n == len(audio), type(changed)
        assert not np.array_equal(got.arrays["embeddings"], plain(audio, model)["embeddings"])


def test_a_rewritten_file_fixed_crops_and_no_memo_compute_anew(audio):
    model = small_cm()
    speaker = asv.build_model("ResNetSE34L", embedding_dim=32, channels=[8, 8, 16, 32]).eval()
    with remembering_outputs():
        extract(audio, cm_embed_fn(model), FULL)
        path = audio[0][1]
        data, sr = sf.read(str(path), dtype="float32")
        sf.write(str(path), -data, sr, subtype="PCM_16")           # same size, new content
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        calls = Counted(model)
        extract(audio, cm_embed_fn(model), FULL)
        assert calls.n == 1
        calls.n = 0
        first = CropSpec("first", 8000)
        extract(audio, cm_embed_fn(model), first)
        extract(audio, cm_embed_fn(model), first)
        assert calls.n == 2 * len(audio)                            # fixed-length batches are never remembered
        extract(audio, asv_embed_fn(speaker), FULL)                 # another model: its own entries
    assert active_output_memo() is None
    calls.n = 0
    extract(audio, cm_embed_fn(model), FULL)
    assert calls.n == len(audio)                                    # outside the block nothing is remembered


def test_a_skipped_bad_file_is_listed_and_rows_stay_aligned(audio, tmp_path):
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    model = small_cm()
    items = audio[:2] + [("broken", bad)] + audio[2:]
    want = plain(audio, model)
    with remembering_outputs():
        extract(audio[:1], cm_embed_fn(model), FULL)
        got = extract(items, cm_embed_fn(model), FULL, skip_bad_audio=True)
    assert len(got.skipped) == 1 and got.skipped[0].startswith("broken: ")
    same({"ids": np.array(got.ids), **got.arrays}, want)


def test_nested_blocks_share_one_memo():
    with remembering_outputs() as outer, remembering_outputs() as inner:
        assert inner is outer and isinstance(outer, OutputMemo)
