"""Helper of tests/test_storage.py: runs several entry points in one process (one torch import for all of them), each
under its own file size limit, and records what each printed and returned.

    python tests/storage_driver.py JOBS.json RESULTS.json

JOBS.json is a list of {"name", "script" (e.g. "main.py"), "argv", "fsize" (bytes, or null for no limit)};
RESULTS.json maps each name to {"rc", "stdout", "stderr", "seconds"}. Run from the repository root. The limit is
RLIMIT_FSIZE, what `ulimit -f` sets: past it a write fails with EFBIG (Python ignores SIGXFSZ), also in the pools
that the entry points fork.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import resource
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.cli import run_main  # noqa: E402


def run(job: dict) -> dict:
    """One entry point as `python SCRIPT ARGV` would run it (through run_main), its stdout and stderr captured."""
    module = importlib.import_module(job["script"].removesuffix(".py"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard if job["fsize"] is None else job["fsize"], hard))
        try:
            rc = run_main(module.main, [str(a) for a in job["argv"]])
        except SystemExit as e:            # argparse
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:              # what the interpreter would print: a traceback, exit 1
            traceback.print_exc(file=err)
            rc = 1
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(),
            "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    results = {job["name"]: run(job) for job in jobs}
    Path(sys.argv[2]).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
