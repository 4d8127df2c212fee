"""The command-line shape shared by every entry point: `--config FILE [key.sub=value ...]`, one-line errors, and
where the library's log messages go."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from common.errors import STORAGE_CAUSES, WRITE_ONLY_CAUSES, InputError, storage_oserror


def config_parser(description: str) -> argparse.ArgumentParser:
    """A parser taking `--config FILE` and any number of `key.sub=value` overrides; add flags as needed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML/JSON .conf file")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="override config entries; values are parsed as YAML")
    return parser


class _CurrentStderr(logging.Handler):
    """Writes each record as one line `[package] message` (engine.trainer -> [engine]) to whatever `sys.stderr` is
    at that moment (pytest and tools that swap stderr see the lines; a handler holding the stream of import time
    would write to a stale one)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            package = record.name.removeprefix(INSTALLED_PREFIX).split(".")[0]
            print(f"[{package}] {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging must never break the run it reports on
            self.handleError(record)


# "" in a checkout; "sasv." installed from the wheel, whose modules all live under `sasv` (setup.py)
INSTALLED_PREFIX = __name__.removesuffix("common.cli")
TOOLKIT_PACKAGES = tuple(INSTALLED_PREFIX + p for p in ("asv", "cm", "fusion", "data", "engine", "metrics", "common",
                                                         "pipeline", "runtime", "synthetic", "ssl_models"))


def report_to_stderr(level: int = logging.INFO) -> None:
    """The toolkit's progress lines (its packages' loggers, `level` and up) on stderr as `[package] message`;
    stdout keeps the result tables. Other libraries' records show from WARNING up. Idempotent."""
    root = logging.getLogger()
    if not any(isinstance(h, _CurrentStderr) for h in root.handlers):
        root.addHandler(_CurrentStderr())
    for package in TOOLKIT_PACKAGES:
        logging.getLogger(package).setLevel(level)


def one_line(error: BaseException) -> str:
    """The message of an input error as one line. A DataLoader worker re-raises an error in the main process
    with the worker's whole traceback as its message; the user needs only the last line, its own message."""
    text = str(error).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        _, found, message = last.partition(f"{type(error).__name__}: ")
        text = message if found else last
    return text.splitlines()[0] if text else type(error).__name__


def add_wait_flag(parser: argparse.ArgumentParser) -> None:
    """`--wait`, for entry points that lock their output folders (common/locking.py)."""
    parser.add_argument("--wait", action="store_true",
                        help="when another run is writing the same output folder, wait for it instead of stopping")


def storage_message(error: BaseException) -> str | None:
    """The one line for a file system refusal that no writer named (a bare mkdir or rename in the library), or
    None when `error` is not one: `PATH: cannot write (CAUSE)` for errors only a write raises (read-only, full,
    over quota, over `ulimit -f`), `PATH: CAUSE` for those a read raises too (permission denied, ...). Such an
    error raised while handling another (torch.save's RuntimeError over a full disk) counts only for the
    write-only causes: a handled permission error is not what stopped the run."""
    refused = storage_oserror(error, WRITE_ONLY_CAUSES)
    if refused is None and isinstance(error, OSError) and error.errno in STORAGE_CAUSES:
        refused = error
    if refused is None:
        return None
    cause, where = STORAGE_CAUSES[refused.errno], refused.filename
    if refused.errno in WRITE_ONLY_CAUSES:
        return f"{where}: cannot write ({cause})" if where else f"cannot write a file ({cause})"
    return f"{where}: {cause}" if where else cause


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Runs an entry point: input errors become one line on stderr (exit 2), and so does a file system that refuses
    a write (`storage_message`: the safety net under the writers, which name their file themselves); Ctrl-C exits
    130 cleanly."""
    report_to_stderr()
    try:
        return int(main(argv) or 0)
    except InputError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished outputs are kept, nothing half-written; run again to resume",
              file=sys.stderr)
        return 130
    except Exception as e:
        message = storage_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
