"""What made a result: recorded in every results.json so that a published number can be traced and re-made.

Users of the seed repositories most often report that they cannot reproduce a number; the usual causes are
a different commit, library versions, checkpoint or protocol file. `provenance()` collects them: the
resolved config, the project's git commit and whether the tree had uncommitted changes, library versions,
the device, seeds, and the SHA-256 of the checkpoints and protocol files that were read.
"""
from __future__ import annotations

import datetime
import functools
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from common.config import plain
from common.io import file_sha256

ROOT = Path(__file__).resolve().parents[1]   # the checkout, or the installed package `sasv/`
BUILD_INFO = "build_info.json"              # written into the wheel by setup.py: the commit it was built from


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """{"commit", "dirty"} of the project checkout. Installed from a wheel (no checkout around the code: asking git
    there could answer for an unrelated repository that holds the environment), the commit the wheel was built from,
    as its build recorded it (setup.py, BUILD_INFO). Commit None, with the reason, when neither is known."""
    if not (ROOT / ".git").exists():
        built = ROOT / BUILD_INFO
        if built.is_file():
            return {**json.loads(built.read_text(encoding="utf-8")), "note": "installed package (sasv-toolkit)"}
        return {"commit": None, "dirty": None, "note": "not a git checkout"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "dirty": None, "note": f"not a git checkout or no git ({type(e).__name__})"}
    return {"commit": commit, "dirty": dirty}


def versions() -> dict[str, str]:
    import numpy
    import torch
    import torchaudio
    return {"python": platform.python_version(), "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "numpy": numpy.__version__}


def device_name(device: str = "auto") -> str:
    """The device a run used, with the GPU's name when there is one."""
    import torch
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible)"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(cfg: Mapping | None = None, *, checkpoints: Mapping[str, str | None] | None = None,
               protocols: Mapping[str, str] | None = None, seeds: Mapping[str, int] | None = None,
               device: str = "auto", database: Any = None) -> dict[str, Any]:
    """The `provenance` section of a results.json. `checkpoints`: name -> path (hashed here, None kept as
    None: untrained weights); `protocols`: path -> SHA-256 (see pipeline.stages.protocol_digests); `database`: the
    corpus read (a data.databases.Database), recorded with the layout it was read as."""
    return {
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "git": git_state(),
        "versions": versions(),
        "device": device_name(device),
        "seeds": dict(seeds or {}),
        "checkpoints": {name: (None if not path else {"path": str(path), "sha256": file_sha256(path)})
                        for name, path in (checkpoints or {}).items()},
        "protocols": dict(protocols or {}),
        **({"database": {"format": database.format, "root": str(database.root)}} if database is not None else {}),
        "config": plain(cfg) if cfg is not None else None,
    }
