"""ONNX export and runtime: parity with eager PyTorch for every registered ASV and CM model (iterating the registries,
so a new model is covered without a new test), on random input at three lengths (the graph's shortest, the traced
one, one never seen) and batch sizes 1 and 3, and for the official AASIST weights on the reference inputs; the
manifest; the cached export of `runtime: onnx` (reused, rebuilt when the checkpoint changes or the file is damaged);
the stages and verify.py on ONNX Runtime agreeing with torch; back-end export; one-line errors.

Exports take 5-40 s each on one thread of the 2-core machine (torch.export + the ONNX translation), so each model is
exported once per module and the module is marked slow."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is optional: runtime: onnx and export_onnx.py need it")
pytest.importorskip("onnxscript", reason="onnxscript is optional: the ONNX exporter needs it")

import cm  # noqa: E402
from common.cli import run_main  # noqa: E402
from runtime.onnx_export import (  # noqa: E402
    TOLERANCE,
    NotExportableError,
    export_graph,
    frontend_graph,
    max_difference,
)
from runtime.onnx_ops import BiLSTMForExport  # noqa: E402
from runtime.onnx_session import onnx_embed_fn, open_session  # noqa: E402
from tests.conftest import reference_path  # noqa: E402
from tests.pipeline_fixtures import (  # noqa: E402
    assert_one_line_error,
    call,
    staged_tiny_experiment,
    tiny_corpus,
)

__all__ = ["tiny_corpus"]   # a fixture used by name
from tests.model_fixtures import REGISTERED, build_tiny  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

KNOWN_FAILURES: dict[str, str] = {}   # name -> why; strict: the day one of these exports, the test says so
PARAMS = [pytest.param(kind, name, id=name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[name],
                                                                     raises=NotExportableError)]
                       if name in KNOWN_FAILURES else []) for kind, name in REGISTERED]
UNSEEN = 23_457           # a length no export traces (they trace 16000 samples)


OFFICIAL = ("AASIST", "AASIST-L")   # published weights in ../shared/reference/aasist/


def _official_or_tiny(kind: str, name: str) -> torch.nn.Module:
    """The model whose export a test checks: AASIST and AASIST-L with the official weights where the reference data
    is there (parity on the published models, and one export, 20 s each, serves the reference-output test too),
    every other model (and those two without the reference data) built tiny with seeded random weights."""
    from cm.checkpoint import load_cm_state
    from tests.conftest import REFERENCE_DIR
    weights = REFERENCE_DIR / "aasist" / f"{name}.pth"
    if name not in OFFICIAL or not weights.is_file():
        return build_tiny(kind, name)
    model = cm.build_model(name).eval()
    load_cm_state(model, weights)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(graph, session) of each model (`_official_or_tiny`), exported on first request; the NotExportableError where
    it fails."""
    folder, done = tmp_path_factory.mktemp("onnx"), {}

    def get(kind: str, name: str):
        if name not in done:
            graph = frontend_graph(_official_or_tiny(kind, name), kind)
            try:
                export_graph(graph, folder / f"{name}.onnx", name)
                done[name] = (graph, open_session(folder / f"{name}.onnx"))
            except NotExportableError as e:
                done[name] = e
        return done[name]
    get.folder = folder      # <folder>/<name>.onnx: the files, for tests that read the graph itself
    return get


@pytest.mark.parametrize("kind,name", PARAMS)
def test_every_registered_model_matches_pytorch_at_three_lengths_or_says_it_cannot(exported, kind, name):
    result = exported(kind, name)
    if isinstance(result, NotExportableError) and name in KNOWN_FAILURES:
        assert "\n" not in str(result) and "runtime: torch" in str(result)
        raise result
    if isinstance(result, NotExportableError):
        # only the SSL encoders may refuse, and then in one line that names the way out
        assert name.startswith("SSL-"), f"{name} does not export: {result}"
        message = str(result)
        assert "\n" not in message and name in message and "not exportable" in message
        assert "runtime: torch" in message
        return
    _assert_matches_at_three_lengths(*result, kind, name)


def _assert_matches_at_three_lengths(graph, session, kind: str, name: str) -> None:
    """ONNX Runtime within TOLERANCE of eager at the graph's floor, the traced length and one no export traces
    (batch 1 and 3), with the outputs the stages read."""
    lengths = sorted({graph.min_samples, 16000, UNSEEN})
    assert len(lengths) == 3
    g = torch.Generator().manual_seed(1)
    for samples in lengths:
        for batch in (1, 3):
            wave = torch.randn(batch, samples, generator=g)
            assert max_difference(graph.module, session, [wave]) <= TOLERANCE, (name, samples, batch)
    out = session.run(None, {"wave": torch.randn(2, UNSEEN, generator=g).numpy()})
    assert out[0].shape == (2, graph.module.model.embedding_dim)
    if kind == "cm":     # logits and the bona fide score output
        assert out[1].shape == (2, 2) and np.array_equal(out[2], out[1][:, 1])


def test_the_lcnn_streams_share_one_spectrum_in_the_exported_graph(exported):
    """LCNN-LFCC-LPS's LFCC and log-power streams start from the same power spectrum: the export copy gives both
    one module, and the graph computes it once (as two DFT convolutions it took 12 % of ONNX Runtime's time)."""
    import onnx

    graph, _ = exported("cm", "LCNN-LFCC-LPS")
    streams = graph.module.model.streams
    assert streams[0].features.spectrogram is streams[1].features.spectrogram
    model = onnx.load(exported.folder / "LCNN-LFCC-LPS.onnx")
    weights = {tensor.name: list(tensor.dims) for tensor in model.graph.initializer}
    dft = [node.name for node in model.graph.node
           if node.op_type == "Conv" and weights.get(node.input[1]) == [2 * 257, 1, 320]]
    assert len(dft) == 1, dft


def test_a_session_beside_pytorch_can_let_its_idle_threads_sleep():
    """open_session(spin=False) (bench/frontends.py, which alternates eager and ONNX Runtime batches) sets ONNX
    Runtime's allow_spinning to 0; the default leaves ONNX Runtime's own setting (spinning) alone."""
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    key = "session.intra_op.allow_spinning"
    assert open_session(data, spin=False).get_session_options().get_session_config_entry(key) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        open_session(data).get_session_options().get_session_config_entry(key)


def test_an_ssl_model_on_a_wavlm_encoder_exports_and_matches_pytorch(tmp_path):
    """WavLM's relative position bias holds a value named `embedding`, the ASV output's name: torch.onnx's own
    renaming defined it twice and ONNX Runtime refused the file. SSL-MHFA on the tiny WavLM, at three lengths."""
    import asv
    from tests.ssl_fixtures import TINY_ENCODER, TINY_SSL_MODELS

    torch.manual_seed(0)
    options = {**TINY_SSL_MODELS["SSL-MHFA"], "encoder": {"name": "wavlm_model", "options": TINY_ENCODER}}
    graph = frontend_graph(asv.build_model("SSL-MHFA", **options).eval(), "asv")
    export_graph(graph, tmp_path / "wavlm.onnx", "SSL-MHFA")
    _assert_matches_at_three_lengths(graph, open_session(tmp_path / "wavlm.onnx"), "asv", "SSL-MHFA on WavLM")


def test_a_graph_onnx_runtime_refuses_is_one_line_and_not_written(tmp_path, monkeypatch):
    import runtime.onnx_session

    def refuse(model, device="cpu", threads=None):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : This is an invalid model.\nmore detail")

    monkeypatch.setattr(runtime.onnx_session, "open_session", refuse)
    with pytest.raises(NotExportableError, match=r"^Checked: ONNX Runtime refuses the exported graph \(RuntimeError: "
                                                 r"\[ONNXRuntimeError\] : 1 : FAIL : This is an invalid model\.\); use "
                                                 r"runtime: torch$"):
        export_graph(frontend_graph(_Checked(), "asv"), tmp_path / "refused.onnx", "Checked")
    assert not (tmp_path / "refused.onnx").exists()


def test_the_graph_refuses_nothing_the_model_takes_but_its_floor_is_recorded(exported):
    """The graph's shortest input is the model's own or, where torch.export needs more (ResNetSE34L: two frames
    after its strides; AASIST: two temporal nodes), the longer one it asked for."""
    for kind, name in (("asv", "ResNetSE34L"), ("cm", "AASIST")):
        graph, _ = exported(kind, name)
        assert graph.min_samples >= _official_or_tiny(kind, name).min_samples


class _Checked(torch.nn.Module):
    """A stand-in front-end whose forward states a bound on its input length, as a model's shapes can."""
    min_samples = 400
    embedding_dim = 4

    def __init__(self, floor: int = 0, cap: int = 0):
        super().__init__()
        self.floor, self.cap = floor, cap

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.floor:
            torch._check(wave.shape[1] >= self.floor)
        if self.cap:
            torch._check(wave.shape[1] <= self.cap)
        return wave[:, :4] * 2


def test_a_graph_that_needs_longer_inputs_than_the_model_records_that_floor(tmp_path):
    """The length axis starts at the model's floor and torch.export narrows it in the same trace: the graph's
    floor (the manifest's min_samples, checked by the stages) is the narrowed one."""
    graph = frontend_graph(_Checked(floor=1000), "asv")
    export_graph(graph, tmp_path / "floor.onnx", "Checked")
    assert graph.min_samples == 1000


def test_a_graph_that_holds_for_less_than_an_hour_is_refused(tmp_path):
    """ONNX keeps no range checks: a graph proven only up to some length would run longer inputs unchecked."""
    graph = frontend_graph(_Checked(cap=32000), "asv")
    with pytest.raises(NotExportableError, match="at most 32000 samples") as error:
        export_graph(graph, tmp_path / "capped.onnx", "Checked")
    assert "\n" not in str(error.value) and "runtime: torch" in str(error.value)
    assert not (tmp_path / "capped.onnx").exists()


class _Recurrent(torch.nn.Module):
    """A stand-in front-end with a bidirectional LSTM over 40-sample frames; `for_export` as the LCNN's."""
    min_samples = 40
    embedding_dim = 16

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(40, 8, bidirectional=True, batch_first=True)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = wave[:, :wave.shape[1] // 40 * 40].reshape(wave.shape[0], -1, 40)
        return self.lstm(frames)[0].mean(dim=1)

    def for_export(self) -> torch.nn.Module:
        copy = _Recurrent()
        copy.lstm = BiLSTMForExport(self.lstm)
        return copy


def test_a_bidirectional_lstm_exports_with_a_dynamic_sequence_length(tmp_path):
    """torch.export fixes nn.LSTM's sequence length to the traced one; runtime/onnx_ops.py writes it as ONNX's LSTM.
    ONNX Runtime against the original nn.LSTM (not the export copy) at 1, 7 and 401 frames (the trace saw 400)."""
    torch.manual_seed(0)
    model = _Recurrent().eval()
    graph = frontend_graph(model, "asv")
    export_graph(graph, tmp_path / "lstm.onnx", "Recurrent")
    session = open_session(tmp_path / "lstm.onnx")
    for frames in (1, 7, 401):
        for batch in (1, 3):
            wave = torch.randn(batch, frames * 40 + 13)
            assert max_difference(model, session, [wave]) <= 1e-5, (frames, batch)
    with pytest.raises(ValueError, match="one-layer bidirectional batch-first"):
        BiLSTMForExport(torch.nn.LSTM(40, 8, batch_first=True))


def test_aasist_keeps_the_official_node_counts_at_lengths_where_float_rounding_decides_them(exported):
    """The graph pools keep int(n * ratio) nodes, as the official code (in float64): 90 temporal nodes * 0.7 is
    62.99999999999999, so 62 are kept. A graph that computed the count in float32 or exact rationals keeps 63."""
    graph, session = exported("cm", "AASIST")
    kernel = graph.module.model.conv_time.kernel_size
    wave = torch.randn(1, kernel - 1 + 90 * 2187 + 5, generator=torch.Generator().manual_seed(3))
    assert max_difference(graph.module, session, [wave]) <= TOLERANCE


@pytest.mark.parametrize("arch,key", [("AASIST", "AASIST"), ("AASIST-L", "AASIST_L")])
def test_official_aasist_on_onnx_runtime_reproduces_the_official_outputs(exported, arch, key):
    """The official weights exported (`exported` loads them where the reference data is) reproduce the official
    outputs on the reference inputs."""
    with np.load(reference_path("aasist", "aasist_reference_outputs.npz")) as z:
        reference = {k: z[k] for k in z.files}
    reference_path("aasist", f"{arch}.pth")
    _, session = exported("cm", arch)
    model = _official_or_tiny("cm", arch)         # the model as the stages run it (the graph's copy drops tiling)
    for name in ("input_64600", "input_32000"):
        x = reference[name]
        embedding, logits, score = session.run(None, {"wave": x})
        np.testing.assert_allclose(embedding, reference[f"{key}_{name}_embedding"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(logits, reference[f"{key}_{name}_logits"], rtol=0, atol=1e-4)
        with torch.no_grad():
            eager = model(torch.from_numpy(x))
        np.testing.assert_allclose(logits, eager[1].numpy(), rtol=0, atol=1e-4)
        assert np.array_equal(score, logits[:, 1])


def test_onnx_embed_fn_gives_the_stage_outputs(exported):
    graph, session = exported("cm", "AASIST-L")
    wave = torch.randn(3, 16000, generator=torch.Generator().manual_seed(4))
    out = onnx_embed_fn(session, "cm")(wave)
    with torch.no_grad():
        embedding, logits = graph.module.model(wave)
    assert set(out) == {"embeddings", "scores"}
    torch.testing.assert_close(out["embeddings"], embedding, rtol=0, atol=1e-4)
    torch.testing.assert_close(out["scores"], logits[:, 1], rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The stages, the cache and verify.py with runtime: onnx
# ---------------------------------------------------------------------------------------------
def _stage(script: str, config: Path, overrides: list[str], capsys, *flags: str) -> str:
    import save_asv_embeddings
    import save_cm_score
    entry = {"cm": save_cm_score.main, "asv": save_asv_embeddings.main}[script]
    code, err = call(entry, ["--config", str(config), *overrides, *flags], capsys)
    assert code == 0, err
    return err


def _scores(path: Path) -> np.ndarray:
    return np.array([float(line.split()[-1]) for line in path.read_text().splitlines()])


# The CM of the stage and cache tests: they export it four times (first use, a damaged file, another checkpoint,
# export_onnx.py), 3 s each for an LCNN against 17 s for the tiny experiment's AASIST-L, whose parity is tested above.
RUNS_CM = ("LCNN", {"channels": [8, 8, 8, 8], "embedding_dim": 16})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpus):
    """A tiny experiment staged on torch (one output folder) and on ONNX Runtime (another), with its back-end."""
    exp, cfg = staged_tiny_experiment(tmp_path_factory.mktemp("onnx_runs"), tiny_corpus, RUNS_CM)
    exp["torch"] = Path(cfg["output_dir"])
    exp["onnx"] = exp["root"] / "onnx"
    exp["onnx_overrides"] = [f"output_dir={exp['onnx']}", "asv.runtime=onnx", "cm.runtime=onnx"]
    return exp


def test_stages_on_onnx_runtime_match_torch_then_reuse_the_cached_export(runs, capsys):
    first = {s: _stage(s, runs["config"], runs["onnx_overrides"], capsys) for s in ("asv", "cm")}
    for err in first.values():
        assert "exporting" in err and "ONNX Runtime with" not in err, err
    for name in ("cm_dev", "cm_eval", "asv_dev", "asv_eval", "cm_trials_dev"):
        torch_scores = _scores(runs["torch"] / "scores" / f"{name}.txt")
        onnx_scores = _scores(runs["onnx"] / "scores" / f"{name}.txt")
        assert onnx_scores.shape == torch_scores.shape
        np.testing.assert_allclose(onnx_scores, torch_scores, rtol=0, atol=1e-4)
    folders = sorted((runs["onnx"] / "embeddings" / "onnx").iterdir())
    assert [f.name.split("_")[0] for f in folders] == ["asv", "cm"]
    manifest = json.loads((folders[1] / "manifest.json").read_text())
    assert manifest["kind"] == "cm" and manifest["arch"] == RUNS_CM[0] and manifest["sample_rate"] == 16000
    assert manifest["crop"] == {"policy": "first", "samples": 8000, "count": 1}
    assert manifest["checkpoint_sha256"] == manifest["made_by"]["checkpoint_sha256"]
    assert {"torch", "onnx", "onnxscript", "opset"} <= set(manifest["exporter"])
    assert [o["name"] for o in manifest["outputs"]] == ["embedding", "logits", "score"]

    before = _scores(runs["onnx"] / "scores" / "cm_dev.txt")
    again = _stage("cm", runs["config"], runs["onnx_overrides"], capsys, "--force")
    assert "exporting" not in again and "ONNX Runtime with" in again, again
    np.testing.assert_array_equal(_scores(runs["onnx"] / "scores" / "cm_dev.txt"), before)


def test_a_damaged_cached_export_is_rebuilt_not_used(runs, capsys):
    _stage("cm", runs["config"], runs["onnx_overrides"], capsys)
    folder = next((runs["onnx"] / "embeddings" / "onnx").glob("cm_*"))
    before = _scores(runs["onnx"] / "scores" / "cm_dev.txt")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    err = _stage("cm", runs["config"], runs["onnx_overrides"], capsys, "--force")
    assert "exporting" in err and "damaged" in err, err
    np.testing.assert_allclose(_scores(runs["onnx"] / "scores" / "cm_dev.txt"), before, rtol=0, atol=1e-6)


def test_another_checkpoint_makes_another_export_and_cache_identity(runs, capsys, tmp_path):
    from cm.checkpoint import save_cm_state
    torch.manual_seed(5)
    save_cm_state(tmp_path / "cm2.pt", cm.build_model(RUNS_CM[0], **runs["cfg"]["cm"]["model"]))
    overrides = [*runs["onnx_overrides"], f"cm.checkpoint={tmp_path / 'cm2.pt'}"]
    before = _scores(runs["onnx"] / "scores" / "cm_dev.txt")
    err = _stage("cm", runs["config"], overrides, capsys)
    assert "exporting" in err and "recomputing" in err and "checkpoint_sha256 changed" in err, err
    assert len(list((runs["onnx"] / "embeddings" / "onnx").glob("cm_*"))) == 2
    assert not np.allclose(_scores(runs["onnx"] / "scores" / "cm_dev.txt"), before, atol=1e-3)


def test_runtime_is_part_of_the_identity_only_when_not_torch(runs):
    from common.config import load_config
    from pipeline.recipes import sasv_task
    from pipeline.stages.frontends import frontend_identity
    torch_cfg = load_config(runs["config"], [], sasv_task.SCHEMA)
    onnx_cfg = load_config(runs["config"], runs["onnx_overrides"], sasv_task.SCHEMA)
    assert "runtime" not in frontend_identity(torch_cfg["cm"], "cm")
    assert frontend_identity(onnx_cfg["cm"], "cm") == {**frontend_identity(torch_cfg["cm"], "cm"), "runtime": "onnx"}


def test_verify_on_onnx_runtime_reproduces_the_onnx_stage_scores(runs, capsys):
    from common.config import load_config
    from data.asvspoof import LADatabase
    from data.score_files import read_sasv_scores
    from pipeline.recipes import sasv_task
    from pipeline.stages.sasv import score_splits
    from verify import main as verify_main
    cfg = load_config(runs["config"], runs["onnx_overrides"], sasv_task.SCHEMA)
    for script in ("asv", "cm"):
        _stage(script, runs["config"], runs["onnx_overrides"], capsys)
    score_splits(cfg)
    db = LADatabase(runs["corpus"].la)
    trial = next(t for t in db.sasv_trials("dev") if t.key == "spoof")
    expected = {}
    for kind in ("asv", "cm_trials", "sasv"):
        s = read_sasv_scores(runs["onnx"] / "scores" / f"{kind}_dev.txt")
        expected[kind] = dict(zip(zip(s.spk, s.utt, strict=True), s.score, strict=True))[trial.speaker, trial.utt]
    enrol = [str(db.audio("dev", u)) for u in db.enrolment("dev")[trial.speaker]]
    capsys.readouterr()
    code = run_main(verify_main, ["--config", str(runs["config"]), *runs["onnx_overrides"], "--enroll", *enrol,
                                  "--test", str(db.audio("dev", trial.utt))])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "ONNX Runtime with" in err       # the stages' exports, reused
    printed = {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip() for ln in out.splitlines() if ":" in ln}
    assert float(printed["CM score"].split()[0]) == pytest.approx(expected["cm_trials"], abs=1e-4)
    assert float(printed["ASV score"].split()[0]) == pytest.approx(expected["asv"], abs=1e-4)
    assert float(printed["SASV score"].split()[0]) == pytest.approx(expected["sasv"], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# export_onnx.py
# ---------------------------------------------------------------------------------------------
def _export(argv: list[str], capsys) -> tuple[int, str]:
    from export_onnx import main
    return call(lambda a: run_main(main, a), argv, capsys)


def test_export_onnx_writes_model_and_manifest_for_a_front_end(runs, tmp_path, capsys):
    code, err = _export(["--config", str(runs["config"]), "--kind", "cm", "--out", str(tmp_path / "cm")], capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "cm" / "manifest.json").read_text())
    assert manifest["checkpoint"] == runs["cfg"]["cm"]["checkpoint"]
    from common.io import file_sha256
    assert manifest["checkpoint_sha256"] == file_sha256(runs["cfg"]["cm"]["checkpoint"])
    assert manifest["onnx_sha256"] == file_sha256(tmp_path / "cm" / "model.onnx")
    assert manifest["dev_threshold"] is not None and "cm_dev.txt" in manifest["dev_threshold"]["source"]
    session = open_session(tmp_path / "cm" / "model.onnx")
    model = cm.build_model(RUNS_CM[0], **runs["cfg"]["cm"]["model"]).eval()
    from cm.checkpoint import load_cm_state
    load_cm_state(model, runs["cfg"]["cm"]["checkpoint"])
    assert max_difference(frontend_graph(model, "cm").module, session, [torch.randn(2, 12000)]) <= TOLERANCE


def test_export_onnx_needs_a_kind_for_a_sasv_config_and_refuses_score_level_back_ends(runs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _export(["--config", str(runs["config"]), "--out", str(tmp_path)], capsys)
    assert "--kind" in capsys.readouterr().err
    code, err = _export(["--config", str(runs["config"]), "--kind", "backend", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err, "score_sum", "score-level", "nothing to export")


def test_embedding_back_end_exports_on_concatenated_embeddings(tmp_path):
    import fusion
    from runtime.onnx_export import backend_graph, export_backend
    torch.manual_seed(0)
    for name, options in (("baseline2", {"hidden": [16, 8]}), ("joint_oc", {})):
        backend = fusion.build_backend(name, asv_dim=16, cm_dim=8, **options).eval()
        for p in backend.parameters():      # trained weights are not at their initial values (joint_oc's centre)
            p.data.add_(0.1 * torch.randn_like(p))
        manifest = export_backend(backend, tmp_path / name, name=name, options=options, asv_dim=16, cm_dim=8,
                                  checkpoint="backend.pt", checkpoint_sha256="0" * 64, score="SASV score")
        assert manifest["inputs"][0]["shape"] == ["batch", 40] and manifest["outputs"][0]["name"] == "score"
        session = open_session(tmp_path / name / "model.onnx")
        x = torch.randn(5, 40)
        (score,) = session.run(None, {"embeddings": x.numpy()})
        with torch.no_grad():
            expected = backend(x[:, :16], x[:, 16:32], x[:, 32:])[0]
        np.testing.assert_allclose(score, expected.numpy(), rtol=0, atol=1e-4)
        assert backend_graph(backend, 16, 8).inputs == [("embeddings", 40)]


def test_a_missing_onnxruntime_is_one_line_naming_the_package(monkeypatch):
    import sys

    from common.errors import InputError
    from runtime.packages import require
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # what `import onnxruntime` meets when it is absent
    with pytest.raises(InputError) as e:
        require("onnxruntime")
    assert "\n" not in str(e.value) and "onnxruntime is not installed" in str(e.value)
    assert "pip install onnxruntime==" in str(e.value)
