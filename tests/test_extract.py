"""pipeline.stages.extract against a plain per-utterance loop: same embeddings, same id order, for every crop policy,
mixed lengths, with and without decoding workers, and with a bad file skipped or named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import asv
import cm
from data.audio import AudioError, CropSpec, load_audio
from pipeline.stages.extract import ModelCall, average_crops, convolution_path, extract
from pipeline.stages.frontends import asv_embed_fn, cm_embed_fn

# Mixed lengths in an order that is neither sorted nor grouped; two share a length (a legal equal-length batch).
SECONDS = (1.3, 0.4, 2.1, 0.75, 1.3, 0.52, 1.71)
pytestmark = pytest.mark.usefixtures("one_thread")

CROPS = {"first": CropSpec("first", 8000), "full": CropSpec("full"), "even": CropSpec("even", 4000, 3)}


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> list[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("extract_audio")
    rng = np.random.default_rng(0)
    items = []
    for i, seconds in enumerate(SECONDS):
        n = int(seconds * 16000)
        t = np.arange(n) / 16000
        x = 0.3 * np.sin(2 * np.pi * (120 + 40 * i) * t * (1 + 0.1 * np.sin(3 * t))) + 0.05 * rng.standard_normal(n)
        path = folder / f"utt{i}.flac"
        sf.write(str(path), x.astype(np.float32), 16000, subtype="PCM_16")
        items.append((f"utt{i}", path))
    return items


@pytest.fixture(scope="module")
def bad_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("extract_bad") / "broken.flac"
    path.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    return path


@pytest.fixture(scope="module")
def embed_fns() -> dict:
    """Small real front-ends: an ASV model (instance-normalised features, attentive pooling) and a CM (two outputs)."""
    torch.manual_seed(0)
    speaker = asv.build_model("ResNetSE34L", embedding_dim=32, channels=[8, 8, 16, 32]).eval()
    counter = cm.build_model("LCNN", channels=[8, 8, 8, 8], embedding_dim=16).eval()
    return {"asv": asv_embed_fn(speaker), "cm": cm_embed_fn(counter)}


def reference(items, embed_fn, crop: CropSpec) -> tuple[list[str], dict[str, np.ndarray]]:
    """The straightforward path: each utterance decoded, cropped and embedded on its own, crops averaged."""
    ids, rows = [], []
    with torch.inference_mode():
        for utt, path in items:
            try:
                x = crop.windows(load_audio(path))
            except AudioError:
                continue
            out = embed_fn(torch.from_numpy(x))
            rows.append({k: v.float().mean(0).numpy() for k, v in out.items()})
            ids.append(utt)
    return ids, {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("policy", ["first", "full", "even"])
@pytest.mark.parametrize("kind", ["asv", "cm"])
def test_same_embeddings_and_order_as_one_utterance_at_a_time(audio, embed_fns, kind, policy, workers):
    crop = CROPS[policy]
    want_ids, want = reference(audio, embed_fns[kind], crop)
    got = extract(audio, embed_fns[kind], crop, batch_size=3, num_workers=workers)
    assert got.ids == want_ids == [u for u, _ in audio]
    assert set(got.arrays) == set(want)
    for name in want:
        assert got.arrays[name].shape == want[name].shape
        np.testing.assert_allclose(got.arrays[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_average_crops_is_the_mean_of_each_utterance_s_windows():
    out = {"embeddings": torch.arange(12, dtype=torch.float64).view(6, 2), "scores": torch.arange(6)}
    got = average_crops(out, 3)                  # two utterances of three windows each
    assert got["embeddings"].dtype == got["scores"].dtype == torch.float32
    assert got["embeddings"].tolist() == [[2.0, 3.0], [8.0, 9.0]] and got["scores"].tolist() == [1.0, 4.0]
    one = average_crops(out, 1)                  # one window an utterance: the rows as they are
    assert torch.equal(one["embeddings"], out["embeddings"].float()) and one["scores"].shape == (6,)


@pytest.mark.parametrize("kind", ["asv", "cm"])
def test_one_utterance_averaged_alone_gives_the_stage_s_bits(audio, embed_fns, kind):
    """verify.py embeds one file at a time through `average_crops`; the stages' extraction (one utterance a batch)
    gives the very same bits for `even` crops, since both average in that one function."""
    crop = CROPS["even"]
    got = extract(audio, embed_fns[kind], crop, batch_size=1)
    with torch.inference_mode():
        for row, (_, path) in enumerate(audio):
            alone = average_crops(embed_fns[kind](torch.from_numpy(crop.windows(load_audio(path)))), crop.count)
            for name, value in alone.items():
                np.testing.assert_array_equal(got.arrays[name][row], value[0].numpy(), err_msg=name)


class _OneDNNSpy(torch.nn.Module):
    """Records whether oneDNN was on at each call; PyTorch's default path for whole utterances."""
    min_samples = 1

    def __init__(self):
        super().__init__()
        self.conv, self.seen = torch.nn.Conv1d(1, 4, 3), []

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.backends.mkldnn.enabled)
        return self.conv(wave.unsqueeze(1)).mean(2)


class _AtenSpy(_OneDNNSpy):
    whole_utterance_convolutions = "aten"


@pytest.mark.parametrize("cls,policy,on", [(_AtenSpy, "full", False), (_AtenSpy, "first", True),
                                           (_AtenSpy, "even", True), (_OneDNNSpy, "full", True)])
def test_whole_utterances_of_a_model_that_says_aten_run_without_onednn(audio, cls, policy, on):
    """oneDNN builds a primitive for every new input length: a model that says so runs whole utterances (every one
    its own length) on ATen's convolutions; fixed crops (one shape) and other models keep oneDNN; the switch is
    PyTorch's own again afterwards."""
    model = cls().eval()
    call = ModelCall(model, "cpu", lambda out: {"embeddings": out[0]})
    got = extract(audio, call, CROPS[policy], batch_size=3)
    assert model.seen and set(model.seen) == {on} and torch.backends.mkldnn.enabled
    assert got.ids == [u for u, _ in audio]


def test_the_onednn_switch_comes_back_when_a_model_fails(audio):
    class Failing(_AtenSpy):
        def forward(self, wave):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        extract(audio, ModelCall(Failing(), "cpu", lambda out: {"embeddings": out[0]}), CROPS["full"])
    assert torch.backends.mkldnn.enabled


@pytest.mark.parametrize("kind", ["asv", "cm"])
def test_whole_utterances_embedded_alone_give_the_stage_s_bits(audio, embed_fns, kind):
    """verify.py embeds each file alone under `convolution_path`, as the stages' extraction does: the same bits for
    `full` crops, with ResNetSE34L and the LCNN (both say "aten") on ATen's convolutions."""
    crop, fn = CROPS["full"], embed_fns[kind]
    assert fn.model.whole_utterance_convolutions == "aten"
    got = extract(audio, fn, crop, batch_size=3)
    with torch.inference_mode(), convolution_path(fn, crop):
        for row, (_, path) in enumerate(audio):
            alone = average_crops(fn(torch.from_numpy(crop.windows(load_audio(path)))), crop.count)
            for name, value in alone.items():
                np.testing.assert_array_equal(got.arrays[name][row], value[0].numpy(), err_msg=name)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_file_is_skipped_and_listed_rows_stay_aligned(audio, bad_file, embed_fns, workers):
    items = audio[:3] + [("broken", bad_file)] + audio[3:]
    crop = CROPS["full"]
    got = extract(items, embed_fns["cm"], crop, batch_size=2, num_workers=workers, skip_bad_audio=True)
    want_ids, want = reference(audio, embed_fns["cm"], crop)
    assert got.ids == want_ids
    assert len(got.skipped) == 1 and got.skipped[0].startswith("broken: ") and str(bad_file) in got.skipped[0]
    np.testing.assert_allclose(got.arrays["scores"], want["scores"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.arrays["embeddings"], want["embeddings"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_file_stops_the_run_naming_it(audio, bad_file, embed_fns, workers):
    items = audio[:2] + [("broken", bad_file)]
    with pytest.raises(AudioError, match="broken.flac"):
        extract(items, embed_fns["asv"], CROPS["first"], batch_size=2, num_workers=workers)


def test_only_bad_files_give_no_rows(bad_file, embed_fns):
    got = extract([("broken", bad_file)], embed_fns["asv"], CROPS["full"], skip_bad_audio=True)
    assert got.ids == [] and got.arrays == {} and len(got.skipped) == 1


def test_rows_are_held_once_not_as_batches_and_a_concatenated_copy(audio):
    """A million-file list must not hold its embeddings twice at the peak (per-batch pieces, then their
    concatenation): the outputs go into arrays allocated once. The model's outputs here live in numpy memory, which
    tracemalloc sees; the peak above the start stays under 1.5 times the rows returned (it was 2 times before)."""
    import tracemalloc

    dim = 1 << 15                                  # 128 KB a row: the rows dwarf decoding's transient allocations
    items = [(f"{u}_{k}", p) for k in range(6) for u, p in audio]   # 42 rows, 5.3 MB

    def embed(wave: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embeddings": torch.from_numpy(np.full((len(wave), dim), wave[:, 0].sum().item(), np.float32))}

    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        got = extract(items, embed, CropSpec("first", 4000), batch_size=4)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    rows = got.arrays["embeddings"]
    assert rows.shape == (len(items), dim) and got.ids == [u for u, _ in items]
    assert peak < 1.5 * rows.nbytes, f"peak {peak / 2**20:.1f} MB for {rows.nbytes / 2**20:.1f} MB of rows"
