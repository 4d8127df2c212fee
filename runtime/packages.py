"""The optional packages of the ONNX path (onnx, onnxruntime, onnxscript): imported on first need, or one line naming
the missing one and how to install it. Its own module, so that the exporter and the sessions both use it without
importing each other."""
from __future__ import annotations

import importlib

from common.errors import InputError

# as tested, and as requirements.txt pins them
PINS = {"onnx": "onnx==1.23.2", "onnxruntime": "onnxruntime==1.32.0", "onnxscript": "onnxscript==0.7.2"}


def require(package: str):
    """`package` imported, or one line naming it and how to install it (they are optional: `runtime: torch` needs
    none of them)."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise InputError(f"{package} is not installed: ONNX export and runtime: onnx need it; install it with "
                         f"`.venv/bin/pip install {PINS.get(package, package)}` (requirements.txt lists it)") from None
