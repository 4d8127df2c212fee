"""A file system that refuses a write: every entry point prints one line `error: PATH: cannot write (CAUSE)`, exits 2,
and leaves no temporary or partial file behind.

Real mechanisms, not mocks, where the machine allows them (tests run as root, so permission bits alone stop nothing):
- read-only: the output folder bind-mounted read-only in a private mount namespace of the child (EROFS);
- no permission: the folder made 0555 and the child without CAP_DAC_OVERRIDE, the capability that lets root write
  anyway (a plain user needs no more than the mode) (EACCES);
- file too large: RLIMIT_FSIZE, what `ulimit -f` sets (EFBIG, with no file name: the writer must add it).
A mechanism the machine refuses is skipped with the reason. The entry points run in one child process per mechanism
(tests/storage_driver.py), one torch import for all. In-process tests cover what the others cannot reach (a full
disk, torch.save's way of reporting a failed write, the safety net of run_main).
"""
from __future__ import annotations

import csv
import ctypes
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from common.cli import one_line, run_main, storage_message
from common.errors import StorageError
from common.io import atomic_write, check_writable, write_json, writing
from data.asvspoof import LADatabase
from tests.pipeline_fixtures import (
    ROOT,
    env,
    frontends,
    sasv_args,
    staged,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name

TEMPORARY = re.compile(r"^\..+\.tmp$")   # atomic_write's .NAME.XXXXXXXX.tmp and the corpus writer's .NAME.PID.tmp
ERROR = re.compile(r"^error: (?:(?:output_dir|embeddings_dir|ablation\.dir|--out|--json|--det) )?(.+): cannot write "
                   r"\((.+)\)$")


# ----------------------------------------------------------------------------------------------- mechanisms
_LIBC = ctypes.CDLL(None, use_errno=True)   # loaded before any fork: a preexec_fn should not load libraries


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _read_only_mount(folder: Path) -> Callable[[], None]:
    """In the child: a private mount namespace in which `folder` is a read-only bind mount of itself."""
    clone_newns, ms_rdonly, ms_remount, ms_bind, ms_rec, ms_private = 0x20000, 1, 32, 4096, 16384, 1 << 18
    target = os.fsencode(folder)

    def preexec() -> None:
        _check(_LIBC.unshare(clone_newns))
        _check(_LIBC.mount(b"none", b"/", None, ms_rec | ms_private, None))   # nothing leaks to the parent
        _check(_LIBC.mount(target, target, None, ms_bind, None))
        _check(_LIBC.mount(b"none", target, None, ms_remount | ms_bind | ms_rdonly, None))
    return preexec


def _no_write_permission(folder: Path) -> Callable[[], None]:
    """`folder` mode 0555; in the child (when root), no capability that overrides file modes: after exec a root
    process gets its bounding set, so the capabilities are dropped from it."""
    folder.chmod(0o555)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def preexec() -> None:
        if os.geteuid() == 0:
            _check(_LIBC.prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0))
            _check(_LIBC.prctl(pr_capbset_drop, cap_dac_read_search, 0, 0, 0))
    return preexec


MECHANISMS = {"read-only": (_read_only_mount, "read-only file system"),
              "no-permission": (_no_write_permission, "permission denied")}


def _all_of(preexecs: list[Callable[[], None]]) -> Callable[[], None]:
    def preexec() -> None:
        for each in preexecs:
            each()
    return preexec


def _unavailable(preexec: Callable[[], None], folder: Path, cause: str) -> str | None:
    """Why a child started with `preexec` is not refused a write in `folder` with `cause` (None when it is)."""
    probe = [sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"]
    try:
        result = subprocess.run(probe, preexec_fn=preexec, capture_output=True, text=True, timeout=60)
    except subprocess.SubprocessError as e:
        return f"this machine cannot set up the mechanism: {e}"
    if result.returncode == 0 or cause.lower() not in result.stderr.lower():
        (folder / "probe").unlink(missing_ok=True)
        return f"the mechanism did not refuse a write here: {result.stderr.strip()[-200:] or 'the write worked'}"
    return None


def _run_driver(jobs: list[dict], workdir: Path, preexec: Callable[[], None] | None = None) -> dict[str, dict]:
    (workdir / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    results = workdir / "results.json"
    proc = subprocess.run([sys.executable, "tests/storage_driver.py", workdir / "jobs.json", results], cwd=ROOT,
                          env=env(), preexec_fn=preexec, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(results.read_text(encoding="utf-8"))


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if TEMPORARY.match(p.name)) if root.exists() else []


def _error_line(result: dict) -> tuple[str, str, str]:
    """(path, cause, the line) of an entry point's failure: exit 2, no traceback, stderr ending in one error line."""
    err = result["stderr"]
    assert result["rc"] == 2, f"exit {result['rc']}:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], err[-3000:]
    match = ERROR.match(lines[-1])
    assert match, lines[-1]
    return match.group(1), match.group(2), lines[-1]


def _pairs(corpus, folder: Path) -> Path:
    """A verify.py batch file of two corpus trials."""
    db = LADatabase(corpus.la)
    trials = db.sasv_trials("dev")[:2]
    enrolment = db.enrolment("dev")
    path = folder / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["enroll", "test"])
        for t in trials:
            writer.writerow([";".join(str(db.audio("dev", u)) for u in enrolment[t.speaker]), db.audio("dev", t.utt)])
    return path


def _cm_args(corpus, out: Path) -> list[str]:
    return ["--config", "configs/quickstart_cm.conf", f"database={corpus.la}", f"output_dir={out}",
            "cm.arch=AASIST-L", "train.epochs=1", "train.progress=false"]


# ------------------------------------------------------------------------------------ read-only, no permission
def _unwritable_jobs(mechanism: str, ro: Path, corpus, fe, staged_run, inputs: Path) -> list[dict]:
    """Every entry point writing into `ro`, with the option and path its error line must name."""
    sasv = lambda out, *extra: sasv_args(corpus, fe, out, *extra)   # noqa: E731
    scores = staged_run.out / "scores"
    jobs = [
        ("main.py", "main.py", _cm_args(corpus, ro), f"output_dir {ro}"),
        ("save_asv_embeddings.py", "save_asv_embeddings.py", sasv(ro / "exp"), f"output_dir {ro / 'exp'}"),
        ("save_cm_score.py", "save_cm_score.py", sasv(ro / "exp"), f"output_dir {ro / 'exp'}"),
        ("save_sasv_score.py", "save_sasv_score.py", sasv(ro, f"embeddings_dir={staged_run.embeddings}"),
         f"output_dir {ro}"),
        ("evaluate.py --json", "evaluate.py", ["--sasv", scores / "sasv_dev.txt", "--json", ro / "m.json"],
         f"--json {ro / 'm.json'}"),
        ("evaluate.py --det", "evaluate.py", ["--sasv", scores / "sasv_dev.txt", "--det", ro / "det.png"],
         f"--det {ro / 'det.png'}"),
        ("verify.py --out", "verify.py", [*sasv(staged_run.out), "--batch", _pairs(corpus, inputs),
                                          "--out", ro / "results.csv"], f"--out {ro / 'results.csv'}"),
        ("ablate.py", "ablate.py", sasv(inputs / "ablation_base", f"embeddings_dir={staged_run.embeddings}",
                                        f"ablation.dir={ro / 'ablation'}",
                                        "ablation.systems=[{name: sum, backend: score_sum}]"),
         f"ablation.dir {ro / 'ablation'}"),
        ("demo.py", "demo.py", ["--out", ro / "demo", "--corpus", corpus.root, "--preset", "tiny"],
         f"--out {ro / 'demo'}"),
        ("copy_synthesis.py", "copy_synthesis.py", ["--voxceleb", corpus.voxceleb, "--out", ro / "copies"],
         f"--out {ro / 'copies'}"),
        ("generate_corpus.py", "generate_corpus.py", ["--out", ro / "corpus", "--preset", "tiny"],
         f"--out {ro / 'corpus'}"),
    ]
    return [{"name": f"{mechanism} {n}", "script": s, "argv": [str(a) for a in argv], "fsize": None, "names": where}
            for n, s, argv, where in jobs]


ENTRY_POINTS = ["main.py", "save_asv_embeddings.py", "save_cm_score.py", "save_sasv_score.py", "evaluate.py --json",
                "evaluate.py --det", "verify.py --out", "ablate.py", "demo.py", "copy_synthesis.py",
                "generate_corpus.py"]


@pytest.mark.parametrize("name", ENTRY_POINTS)
@pytest.mark.parametrize("mechanism", sorted(MECHANISMS))
def test_unwritable_output_folder_is_one_line_and_nothing_is_written(driven, mechanism, name):
    if mechanism in driven["unavailable"]:
        pytest.skip(driven["unavailable"][mechanism])
    job, result = driven["jobs"][f"{mechanism} {name}"], driven["results"][f"{mechanism} {name}"]
    path, cause, line = _error_line(result)
    assert line.startswith(f"error: {job['names']}: cannot write ("), line
    assert cause.startswith(MECHANISMS[mechanism][1]), line
    assert result["stderr"].strip() == line, "the refusal comes before any work is reported"
    assert list(driven["folders"][mechanism].iterdir()) == []


# ----------------------------------------------------------------------------------------------- file too large
def _too_large_jobs(root: Path, corpus, fe, staged_run) -> list[dict]:
    """Entry points whose first output bigger than `fsize` bytes comes after their lock and config.yaml (a few
    hundred bytes and ~2 KB): a checkpoint written by torch.save, score files, a JSON over an older one, a plot, a
    results CSV, audio written by forked pool workers, a config.yaml."""
    sasv = lambda out, *extra: sasv_args(corpus, fe, out, *extra)   # noqa: E731
    scores = staged_run.out / "scores"
    (root / "evaluate").mkdir()
    old_json = root / "evaluate" / "old.json"
    write_json(old_json, {"sasv_eer": "an earlier result"})
    jobs = [
        ("main.py", "main.py", sasv(root / "main", f"embeddings_dir={staged_run.embeddings}",
                                    "backend.name=baseline2", "sampling.scheme=baseline2", "train.epochs=1"),
         16_384, root / "main"),
        ("save_sasv_score.py", "save_sasv_score.py", sasv(root / "stage", f"embeddings_dir={staged_run.embeddings}",
                                                          "backend.name=product_rule"), 4096, root / "stage"),
        ("evaluate.py --json", "evaluate.py", ["--sasv", scores / "sasv_dev.txt", "--json", old_json], 64,
         root / "evaluate"),
        ("evaluate.py --det", "evaluate.py", ["--sasv", scores / "sasv_dev.txt", "--det", root / "evaluate" / "d.png"],
         4096, root / "evaluate"),
        ("verify.py --out", "verify.py", [*sasv(staged_run.out), "--batch", _pairs(corpus, root),
                                          "--out", root / "verify" / "results.csv"], 100, root / "verify"),
        ("copy_synthesis.py", "copy_synthesis.py", ["--voxceleb", corpus.voxceleb, "--out", root / "copies",
                                                    "--vocoders", "lpc", "--limit-per-speaker", "1", "--workers", "2"],
         4096, root / "copies"),
        ("generate_corpus.py", "generate_corpus.py", ["--out", root / "corpus", "--preset", "tiny", "--workers", "2"],
         4096, root / "corpus"),
        ("ablate.py", "ablate.py", sasv(root / "ablation_base", f"embeddings_dir={staged_run.embeddings}",
                                        f"ablation.dir={root / 'ablation'}",
                                        "ablation.systems=[{name: sum, backend: score_sum}]"), 512, root / "ablation"),
    ]
    return [{"name": f"too large {n}", "script": s, "argv": [str(a) for a in argv], "fsize": size, "out": str(out)}
            for n, s, argv, size, out in jobs]


@pytest.fixture(scope="module")
def driven(tiny_corpus, frontends, staged, tmp_path_factory):
    """Every entry point against a folder of each refusing mechanism that works here, and some under a file size
    limit that one of their outputs exceeds: one child process for all (the imports are most of the time)."""
    root = tmp_path_factory.mktemp("storage")
    inputs, limited = root / "inputs", root / "limited"
    inputs.mkdir()
    limited.mkdir()
    folders, unavailable, preexecs, jobs = {}, {}, [], []
    for mechanism, (make_preexec, cause) in MECHANISMS.items():
        folder = root / mechanism
        folder.mkdir()
        preexec = make_preexec(folder)
        reason = _unavailable(preexec, folder, cause)
        if reason is None:
            folders[mechanism] = folder
            preexecs.append(preexec)
            jobs += _unwritable_jobs(mechanism, folder, tiny_corpus, frontends, staged, inputs)
        else:
            unavailable[mechanism] = reason
    jobs += _too_large_jobs(limited, tiny_corpus, frontends, staged)
    old = {p: p.read_bytes() for p in limited.rglob("*.json")}
    try:
        results = _run_driver(jobs, root, _all_of(preexecs))
    finally:
        for mechanism in MECHANISMS:
            (root / mechanism).chmod(0o755)
    return {"jobs": {j["name"]: j for j in jobs}, "results": results, "folders": folders,
            "unavailable": unavailable, "old": old}


@pytest.mark.parametrize("name", ["main.py", "save_sasv_score.py", "evaluate.py --json", "evaluate.py --det",
                                  "verify.py --out", "copy_synthesis.py", "generate_corpus.py", "ablate.py"])
def test_file_size_limit_is_one_line_naming_the_file_and_nothing_half_written(driven, name):
    job, result = driven["jobs"][f"too large {name}"], driven["results"][f"too large {name}"]
    path, cause, line = _error_line(result)
    out = Path(job["out"])
    assert cause.startswith("file too large"), line
    assert Path(path).is_relative_to(out), line
    if Path(path) in driven["old"]:        # an earlier file under that name is kept as it was
        assert Path(path).read_bytes() == driven["old"][Path(path)]
    else:
        assert not Path(path).exists(), f"{path} was left half-written"
    assert _temporaries(out) == []


def test_torch_save_over_the_limit_names_the_checkpoint(driven):
    """torch.save reports a failed write as a RuntimeError ('unexpected pos') raised while handling the OSError."""
    path, _, _ = _error_line(driven["results"]["too large main.py"])
    assert path.endswith(".pt")


# ----------------------------------------------------------------------------------------------- in-process
@pytest.mark.parametrize("code,cause", [(errno.ENOSPC, "no space left on the device"),
                                        (errno.EDQUOT, "disk quota exceeded"),
                                        (errno.EROFS, "read-only file system")])
@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_atomic_write_refused_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, code, cause, step):
    target = tmp_path / "scores.txt"
    target.write_text("old\n")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    if step != "write":
        monkeypatch.setattr(os, step, refuse)
    with pytest.raises(StorageError) as caught:
        with atomic_write(target) as f:
            f.write("new\n")
            if step == "write":
                refuse()
    assert str(caught.value) == f"{target}: cannot write ({cause})"
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.txt"]


def test_a_write_error_reported_as_another_exception_is_found(tmp_path):
    """What torch.save does on a full disk: a RuntimeError raised while handling the OSError."""
    with pytest.raises(StorageError, match=r"model\.pt: cannot write \(file too large"):
        with atomic_write(tmp_path / "model.pt", "wb"):
            try:
                raise OSError(errno.EFBIG, "File too large")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    assert list(tmp_path.iterdir()) == []


def test_a_read_error_inside_a_writer_is_not_called_a_write_error(tmp_path):
    """A permission error in the caller's block may be about an input: it keeps its own type and message."""
    with pytest.raises(PermissionError):
        with atomic_write(tmp_path / "out.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", "/data/input.flac")
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_of_the_output_folder(tmp_path):
    (tmp_path / "scores").write_text("a file, not a folder")
    with pytest.raises(StorageError) as caught:
        with atomic_write(tmp_path / "scores" / "x" / "cm_dev.txt") as f:
            f.write("never")
    assert str(caught.value) == (f"{tmp_path / 'scores' / 'x' / 'cm_dev.txt'}: cannot write "
                                 f"(part of the path is a file, not a folder: {tmp_path / 'scores' / 'x'})")
    with pytest.raises(StorageError, match="part of the path is a file"):
        check_writable(tmp_path / "scores" / "x" / "cm_dev.txt", "--out")


def test_check_writable_passes_a_writable_folder_and_writes_nothing(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.csv", "--out")
    check_writable(tmp_path / "corpus", "--out", folder=True)
    assert list(tmp_path.iterdir()) == []


def test_csv_log_on_a_full_disk_names_the_log_and_rolls_back(tmp_path):
    from engine.csvlog import CsvLog

    log = CsvLog(tmp_path / "train_log.csv")
    log.append({"step": 1, "loss": 0.5})
    log.commit()

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def close(self):
            self.handle.close()

    log.append({"step": 2, "loss": 0.4})
    log._handle = FullDisk(log._handle)
    with pytest.raises(StorageError, match=re.escape(f"{tmp_path / 'train_log.csv'}: cannot write (no space left")):
        log.append({"step": 3, "loss": 0.3})
    log.rollback()
    assert (tmp_path / "train_log.csv").read_text() == "step,loss\n1,0.5\n"


def test_storage_error_crosses_process_boundaries():
    """Pools re-raise a worker's error by pickling it; DataLoader workers put their traceback in the message."""
    error = StorageError("/x/a.wav: cannot write (no space left on the device)")
    from multiprocessing.reduction import ForkingPickler  # what pools send a worker's error back with

    again = ForkingPickler.loads(ForkingPickler.dumps(error))
    assert type(again) is StorageError and str(again) == str(error)
    from_worker = StorageError("Caught StorageError in DataLoader worker process 0.\nOriginal Traceback (most "
                               "recent call last):\n  File \"x.py\", line 1\n"
                               "StorageError: /x/a.npz: cannot write (file too large)")
    assert one_line(from_worker) == "/x/a.npz: cannot write (file too large)"


def test_writing_names_the_path_the_os_left_out(tmp_path):
    with pytest.raises(StorageError, match=re.escape(f"output_dir {tmp_path}: cannot write (file too large")):
        with writing(tmp_path, "output_dir"):
            raise OSError(errno.EFBIG, "File too large")
    with pytest.raises(KeyError):                 # anything else passes through untouched
        with writing(tmp_path):
            raise KeyError("x")


@pytest.mark.parametrize("error,line", [
    (OSError(errno.EROFS, "Read-only file system", "/exp/run"),
     "error: /exp/run: cannot write (read-only file system)"),
    (PermissionError(errno.EACCES, "Permission denied", "/exp/run"), "error: /exp/run: permission denied"),
    (OSError(errno.ENOSPC, "No space left on device"), "error: cannot write a file (no space left on the device)"),
])
def test_run_main_turns_an_unnamed_refusal_into_one_line(error, line, capsys):
    def main(argv):
        raise error

    assert run_main(main, []) == 2
    assert capsys.readouterr().err.strip() == line


def test_run_main_keeps_the_traceback_of_other_errors():
    def main(argv):
        try:
            raise PermissionError(errno.EACCES, "Permission denied", "/a")   # handled: not what stopped the run
        except PermissionError:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused") from None

    assert storage_message(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) is None
    with pytest.raises(ConnectionRefusedError):
        run_main(main, [])
