"""Shared fixtures. Reference data lives beside the checkout in ../shared/reference and is never copied in."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.cli import report_to_stderr

report_to_stderr()   # library progress lines on stderr, as the entry points show them

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = ROOT.parent / "shared" / "reference"


def reference_path(*parts: str) -> Path:
    """Path inside ../shared/reference, skipping the calling test when it is absent (e.g. on a user's machine)."""
    path = REFERENCE_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a busy 2-core machine two spinning threads run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
