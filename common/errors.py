"""One base class for problems with the user's input (files, configs, checkpoints).

Entry points catch `InputError` and print its one-line message; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input the user can fix: the message names the file or key and what is wrong."""


class MissingFilesError(FileNotFoundError, InputError):
    """Files that a run needs but that are not on disk (raised before any compute starts); also a
    FileNotFoundError for callers that test for that."""


class ProtocolError(InputError):
    """A protocol or list file that cannot be used as it is: the message names the file and line."""


def line_error(path: str | os.PathLike, number: int, what: str) -> ProtocolError:
    """`path:number: what`, the one shape of an error about a line of a list file (editors jump to it)."""
    return ProtocolError(f"{path}:{number}: {what}")
