"""Session fixtures for the SASV pipeline tests: the tiny synthetic corpus, tiny trained front-ends, one staged run;
and the helpers the pipeline test modules share (running entry points, one-line errors, `tiny_experiment`).

Import the fixtures into a test module (`from tests.pipeline_fixtures import tiny_corpus, frontends, staged`).
Each is built once per pytest session even when several modules import it (a module-level cache; pytest would
otherwise make one instance per importing module). Under pytest-xdist the corpora, front-ends and copies are built
once for all workers (the first worker to need one builds it under a file lock, the others wait and read its
record) and only read afterwards; `staged` is built by each worker, because tests run the stages with its
`embeddings_dir`, which every stage locks. Everything is sized to run on 2 CPU cores in seconds:
ResNetSE34L with 8-32 channels and 32-d embeddings, an AASIST-L with 20 sinc filters and 8 channels on
8000-sample crops, one training epoch.
"""
from __future__ import annotations

import copy
import fcntl
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY_ASV = {"embedding_dim": 32, "channels": [8, 8, 16, 32]}        # >= 8 channels: SE layers reduce by 8
TINY_CM = {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}
CROP = 8000                                                   # CM evaluation crop and joint training crops


def flow(options: dict) -> str:
    """Model options as one `key=value` override value: `{embedding_dim: 32, channels: [8, 8, 16, 32]}`."""
    return yaml.safe_dump(options, default_flow_style=True, sort_keys=False, width=1000).strip()


ASV_MODEL = flow(TINY_ASV)   # asv.model / cm.model override values of the tiny front-ends
CM_MODEL = flow(TINY_CM)


@dataclass(frozen=True)
class Frontends:
    """Front-ends trained by `main.py` (task asv, task cm) on the tiny corpus, with their run folders."""
    asv_dir: Path
    cm_dir: Path

    @property
    def asv(self) -> Path:
        return self.asv_dir / "asv_model.pt"

    @property
    def cm(self) -> Path:
        return self.cm_dir / "cm_model.pt"


@dataclass(frozen=True)
class Staged:
    """One run of the three stage scripts (score_sum back-end) on the tiny corpus."""
    out: Path
    stderr: dict[str, str]      # script name -> its stderr

    @property
    def embeddings(self) -> Path:
        return self.out / "embeddings"


_CACHE: dict[str, object] = {}
_LOCK = threading.Lock()


def _once(key: str, build: Callable[[], object]) -> object:
    """`build()` once per process."""
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of the whole session: under xdist the parent of the workers' own base folders (one per
    run, `pytest-N/`), otherwise the base folder itself (the parent is shared with other pytest runs)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(key: str, tmp_path_factory: pytest.TempPathFactory, build: Callable[[Path], dict]) -> dict:
    """`build(folder)` run once per session, whichever xdist worker asks first; returns its record (JSON).

    The builder holds `<session>/<key>.lock` (flock: released by the kernel if the worker dies) while it builds
    into `<session>/<key>/`; the record is written last, atomically, so a waiting worker reads a finished build or,
    after a failed one, builds again in an emptied folder. Whatever is built is shared: tests only read it."""
    from common.io import read_json, write_json

    shared = session_folder(tmp_path_factory)
    record, folder = shared / f"{key}.json", shared / key
    with open(shared / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = read_json(record)
        if done is not None:
            return done
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        value = build(folder)
        write_json(record, value)
        return value


def env() -> dict[str, str]:
    """Subprocess environment: one torch thread (tiny models; 2 shared cores degrade badly with more)."""
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    return e


def start(script: str, args: Sequence[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, script, *map(str, args)], cwd=ROOT, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_script(script: str, args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs one of the project's entry points (`main.py`, `save_*.py`, `evaluate.py`) from the repo root."""
    return finish(start(script, args), timeout)


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (f"{' '.join(map(str, result.args))} failed ({result.returncode}):\n"
                                    f"{result.stderr[-4000:]}")
    return result


def sasv_args(corpus, frontends: Frontends, out: Path, *extra: str,
              config: str = "configs/quickstart.conf") -> list[str]:
    """`--config quickstart.conf` with overrides pointing at the tiny corpus and front-ends, and a tiny training."""
    return ["--config", config, f"database={corpus.la}", f"output_dir={out}",
            f"asv.checkpoint={frontends.asv}", "asv.arch=ResNetSE34L", f"asv.model={ASV_MODEL}",
            f"cm.checkpoint={frontends.cm}", "cm.arch=AASIST-L", f"cm.model={CM_MODEL}", "cm.crop.policy=first",
            f"cm.crop.samples={CROP}",
            f"joint.test_samples={CROP}", f"joint.enrol_samples={CROP}",
            "sampling.trials_per_epoch=64", "train.epochs=2", "train.batch_size=16", "train.progress=false",
            *extra]


def call(entry, argv, capsys) -> tuple[int, str]:
    """Runs an entry point's main(argv) in-process; (exit code, its stderr)."""
    capsys.readouterr()
    rc = entry(argv)
    return rc, capsys.readouterr().err


def assert_same_numbers(got, expected, rel: float = 1e-6, abs: float = 1e-12, where: str = "") -> None:
    """Two results.json entries hold the same keys and numbers (within rel / abs), nested tables included."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), (where, got, expected)
        for key in expected:
            assert_same_numbers(got[key], expected[key], rel, abs, f"{where}.{key}")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=rel, abs=abs), where
    else:
        assert got == expected, where


def assert_one_line_error(err: str, *needles: str) -> str:
    """stderr is exactly one `error: ...` line (no traceback) containing every needle; returns the line."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one 'error:' line, got:\n{err}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def files_under(root: Path) -> list[Path]:
    """The output files under root (the folder lock's note aside: it records who writes, not what)."""
    from common.locking import LOCK_NAME
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != LOCK_NAME) if root.exists() else []


def copy_corpus(corpus, dest: Path):
    """A private copy of the tiny corpus (to break it) with the same CorpusPaths shape."""
    from synthetic import corpus_paths
    shutil.copytree(corpus.root, dest)
    return corpus_paths(dest)


def tiny_experiment(root: Path, corpus, cm_model: tuple[str, dict] = ("AASIST-L", TINY_CM)) -> dict:
    """Two tiny front-end checkpoints (seeded random weights: the pipeline, not the accuracy, is under test) and a
    SASV config dict pointing at them and at `corpus` (the session's `tiny_corpus`, only read), with an output
    folder under `root`. `cm_model`: the CM's (architecture, options)."""
    import torch

    import asv
    import cm
    from asv.checkpoint import save_asv_state
    from cm.checkpoint import save_cm_state

    torch.manual_seed(0)
    save_asv_state(root / "asv.pt", asv.build_model("ResNetSE34L", **TINY_ASV))
    cm_arch, cm_options = cm_model
    save_cm_state(root / "cm.pt", cm.build_model(cm_arch, **cm_options))
    cfg = {
        "task": "sasv", "database": str(corpus.la), "output_dir": str(root / "exp"), "device": "cpu",
        "asv": {"arch": "ResNetSE34L", "checkpoint": str(root / "asv.pt"), "model": copy.deepcopy(TINY_ASV),
                "crop": {"policy": "full"}},
        "cm": {"arch": cm_arch, "checkpoint": str(root / "cm.pt"), "model": copy.deepcopy(cm_options),
               "crop": {"policy": "first", "samples": CROP}},
        "sampling": {"scheme": "2class", "trials_per_epoch": 32},
        "train": {"epochs": 1, "batch_size": 16, "progress": False, "device": "cpu",
                  "optimizer": {"name": "adam", "lr": 0.001}},
    }
    return {"corpus": corpus, "cfg": cfg, "root": root}


def staged_tiny_experiment(root: Path, corpus, cm_model: tuple[str, dict] = ("AASIST-L", TINY_CM)
                           ) -> tuple[dict, dict]:
    """`tiny_experiment` with its config written (no DET plots) and both embedding stages run: (exp, loaded cfg)."""
    from common.config import load_config
    from pipeline.recipes import sasv_task
    from pipeline.stages.asv import asv_stage
    from pipeline.stages.cm import cm_stage
    exp = tiny_experiment(root, corpus, cm_model)
    exp["cfg"]["det"] = False
    exp["config"] = write_config(exp["root"] / "sasv.conf", exp["cfg"])
    cfg = load_config(exp["config"], [], sasv_task.SCHEMA)
    asv_stage(cfg)
    cm_stage(cfg)
    return exp, cfg


def write_config(path: Path, cfg: dict) -> Path:
    """`cfg` as a YAML config file at `path` (keys in their order)."""
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The `tiny` synthetic corpus (ASVspoof 2019 LA + VoxCeleb layouts), generated once per session."""
    from synthetic import corpus_paths, generate_corpus

    def build(folder: Path) -> dict:
        return {"root": str(generate_corpus(folder, "tiny", seed=0).root)}
    return _once("corpus", lambda: corpus_paths(built_once("tiny_corpus", tmp_path_factory, build)["root"]))


@pytest.fixture(scope="session")
def tiny_copies(tiny_corpus, tmp_path_factory) -> Path:
    """copy_synthesis.py over the tiny corpus's VoxCeleb part (one vocoder): stage-2 data of task sasv_e2e."""
    def build(out: Path) -> dict:
        check_ok(run_script("copy_synthesis.py", ["--voxceleb", tiny_corpus.voxceleb, "--out", out,
                                                  "--vocoders", "lpc", "--workers", "1"]))
        return {"out": str(out)}
    return _once("copies", lambda: Path(built_once("copies", tmp_path_factory, build)["out"]))


@pytest.fixture(scope="session")
def frontends(tiny_corpus, tmp_path_factory) -> Frontends:
    """Trains the two front-ends through `main.py` (task asv on VoxCeleb layout, task cm on LA), in parallel."""
    def build(root: Path) -> dict:
        fe = Frontends(root / "asv", root / "cm")
        asv = start("main.py", ["--config", "configs/quickstart_asv.conf", f"data.voxceleb={tiny_corpus.voxceleb}",
                                f"output_dir={fe.asv_dir}", "asv.arch=ResNetSE34L", f"asv.model={ASV_MODEL}",
                                "train.epochs=1", "train.batch_size=6", "train.progress=false"])
        cm = start("main.py", ["--config", "configs/quickstart_cm.conf", f"database={tiny_corpus.la}",
                               f"output_dir={fe.cm_dir}", "cm.arch=AASIST-L", f"cm.model={CM_MODEL}",
                               "cm.crop.policy=first", f"cm.crop.samples={CROP}",
                               f"data.train_samples={CROP}", "train.epochs=1", "train.batch_size=8",
                               "train.progress=false"])
        check_ok(finish(asv))
        check_ok(finish(cm))
        return {"asv_dir": str(fe.asv_dir), "cm_dir": str(fe.cm_dir)}

    def load() -> Frontends:
        record = built_once("frontends", tmp_path_factory, build)
        return Frontends(Path(record["asv_dir"]), Path(record["cm_dir"]))
    return _once("frontends", load)


@pytest.fixture(scope="session")
def staged(tiny_corpus, frontends, tmp_path_factory) -> Staged:
    """save_asv_embeddings.py, save_cm_score.py, then save_sasv_score.py, as subprocesses (one after the other:
    one output folder has one writer at a time). Each xdist worker makes its own: tests run stages and tasks with
    its `embeddings_dir`, which they lock (two workers at once would find it busy)."""
    def build():
        out = tmp_path_factory.mktemp("staged")
        args = sasv_args(tiny_corpus, frontends, out)
        stderr = {"save_asv_embeddings.py": check_ok(run_script("save_asv_embeddings.py", args)).stderr,
                  "save_cm_score.py": check_ok(run_script("save_cm_score.py", args)).stderr}
        stderr["save_sasv_score.py"] = check_ok(run_script("save_sasv_score.py", args)).stderr
        return Staged(out, stderr)
    return _once("staged", build)


@pytest.fixture(scope="session")
def tiny_databases(tiny_corpus, tmp_path_factory) -> dict[str, Path]:
    """A tiny synthetic database folder per layout (`data.format` -> folder): ASVspoof 2019 LA (the tiny corpus's
    LA part), ASVspoof 5, and the 2021 LA / DF, In-the-Wild and lists layouts made from the LA part; built once per
    session."""
    def build(folder: Path) -> dict:
        import synthetic.asvspoof5 as asvspoof5
        from synthetic.cm_sets import LAYOUTS, write_layout
        a5 = asvspoof5.generate(folder / "tiny_asvspoof5", "tiny", seed=0).database
        made = folder / "tiny_layouts"
        return {"asvspoof2019_la": str(tiny_corpus.la), "asvspoof5": str(a5),
                **{name: str(write_layout(name, tiny_corpus, made / name)) for name in LAYOUTS}}
    return _once("databases", lambda: {name: Path(path) for name, path in
                                       built_once("databases", tmp_path_factory, build).items()})
