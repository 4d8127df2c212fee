"""The command-line shape shared by every entry point: `--config FILE [key.sub=value ...]`, one-line errors, and
where the library's log messages go."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from common.errors import InputError


def config_parser(description: str) -> argparse.ArgumentParser:
    """A parser taking `--config FILE` and any number of `key.sub=value` overrides; add flags as needed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML/JSON .conf file")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="override config entries; values are parsed as YAML")
    return parser


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


# The toolkit's packages; their loggers (`logging.getLogger(__name__)` in a module) report at INFO under an entry point.
PACKAGES = ("asv", "cm", "common", "data", "engine", "fusion", "metrics", "pipeline", "synthetic")


class _PackageFormatter(logging.Formatter):
    """`[package] message`: the top-level package of the logger's name (engine.trainer -> [engine])."""

    def format(self, record: logging.LogRecord) -> str:
        return f"[{record.name.split('.')[0]}] {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes, so redirections made later (pytest's capture,
    contextlib.redirect_stderr) see the messages too."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Sends the toolkit's log records of `level` and above to stderr as `[package] message` (other libraries'
    loggers keep their own levels). Idempotent: entry points call it through `run_main`."""
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_PackageFormatter())
        root.addHandler(handler)
    for name in PACKAGES:
        logging.getLogger(name).setLevel(level)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Runs an entry point: library log messages go to stderr (`configure_logging`), input errors become one
    line on stderr (exit 2), Ctrl-C exits 130 cleanly."""
    configure_logging()
    try:
        return int(main(argv) or 0)
    except InputError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished outputs are kept, nothing half-written; run again to resume",
              file=sys.stderr)
        return 130
