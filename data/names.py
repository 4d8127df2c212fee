"""Ids in list files are names, not paths: the one rule for every reader that turns a list entry into a file name.

Why: a reader joins an utterance id onto the audio folder (`<split>/flac/<utt>.flac`). An id such as
`../../../../x` or `/abs/path/x` would make the toolkit read, and score, a file outside the database, with exit 0.
So an id must be a plain file name:
- not empty, not `.` or `..`;
- no `/` (the separator) and no `\\` (Windows' separator; a list written on Windows would mean a subfolder);
- no control character (U+0000-U+001F, U+007F-U+009F): NUL cannot be in a file name at all, and the others
  mean a damaged or binary file. Whitespace cannot occur either: it separates the columns.
Everything else is allowed (letters of any script, digits, `-_.:+@,=~`...): the real ids (LA_T_1138215, LA_0079,
id10270, ASVspoof 5's T_0000000000, In-the-Wild's `0`, Kaldi's `spk-utt` forms) all pass.

VoxCeleb-style lists hold relative paths (`id10001/1zcIwhmdeo4/00001.wav`): such a path is names joined by `/`,
each name following the rule above, so it is relative, has no `..` (nor `.`) component and no empty one (`//`,
a leading or trailing `/`). `.` components are refused too although harmless on disk: the same file spelled two
ways would be two ids to the repeat check and to the caches.

Readers parse 100k-1M-line lists, so each check is one C-level regex search plus a few substring tests on the
common path (0.2-0.4 us an entry in a reader, docs/benchmarks.md "List parsing"); the exact reason is worked out
only for an entry that fails.
"""
from __future__ import annotations

import os
import re

from common.errors import line_error

__all__ = ["check_name", "check_relative_path", "name_problem", "relative_path_problem"]

_NOT_IN_NAMES = r"\\\x00-\x1f\x7f-\x9f"                          # in no name, nor in a relative path
_BAD_IN_NAME = re.compile(rf"[/{_NOT_IN_NAMES}]").search
_BAD_IN_PATH = re.compile(rf"[{_NOT_IN_NAMES}]").search


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a file name inside a folder ('holds ...', 'is ...'), or None when it can."""
    bad = _BAD_IN_NAME(name)
    if bad is not None:
        char = bad.group()
        kind = "a separator" if char in "/\\" else "a control character"
        return f"holds {kind}, {char!r}"
    if name in (".", ".."):
        return "names a folder, not a file"
    if not name:
        return "is empty"
    return None


def relative_path_problem(rel: str) -> str | None:
    """Why `rel` is not a relative path of names joined by '/', or None when it is."""
    if rel.startswith("/"):
        return "is absolute"
    for part in rel.split("/"):
        if not part:
            return "has an empty component ('//', or '/' at an end)" if rel else "is empty"
        if part in (".", ".."):
            return f"has a {part!r} component"
        problem = name_problem(part)
        if problem is not None:
            return problem
    return None


def check_name(name: str, path: str | os.PathLike, number: int, what: str = "utterance id") -> str:
    """`name` itself when it is a plain file name; otherwise a ProtocolError naming the list file and line."""
    if _BAD_IN_NAME(name) is None and name[:1] != "." and name:        # the common case, cheaply
        return name
    problem = name_problem(name)
    if problem is None:                                                  # e.g. '.hidden': a name after all
        return name
    raise line_error(path, number, f"{what} {name!r} {problem}; an id is a file name inside its audio folder, "
                                   f"not a path (docs/design.md, 'Ids are names')")


def check_relative_path(rel: str, path: str | os.PathLike, number: int, folder: str | os.PathLike,
                        what: str = "path") -> str:
    """`rel` itself when it is a relative path of names (see the module docstring) under `folder`; otherwise a
    ProtocolError naming the list file and line."""
    if (_BAD_IN_PATH(rel) is None and "//" not in rel and "/." not in rel and rel[:1] not in "/."
            and rel[-1:] != "/" and rel):                                # the common case, cheaply
        return rel
    problem = relative_path_problem(rel)
    if problem is None:
        return rel
    raise line_error(path, number, f"{what} {rel!r} {problem}; list paths are relative to {folder}: names "
                                   f"joined by '/', without '.', '..' or empty components (docs/design.md, "
                                   f"'Ids are names')")
