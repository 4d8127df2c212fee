"""The console scripts of an installed toolkit (pyproject.toml, `[project.scripts]`), one function per entry script.

Each runs the entry script's own `main`: `sasv-train ...` is `python main.py ...`. The imports name the checkout's
modules; the wheel's build renames them under `sasv.` (setup.py), so the same functions serve an editable install
and a wheel.
"""
from __future__ import annotations


def train() -> int:
    from main import main
    return main()


def embed() -> int:
    from save_asv_embeddings import main
    return main()


def cm_score() -> int:
    from save_cm_score import main
    return main()


def sasv_score() -> int:
    from save_sasv_score import main
    return main()


def fuse() -> int:
    from fuse import main
    return main()


def evaluate() -> int:
    from evaluate import main
    return main()


def verify() -> int:
    from verify import main
    return main()


def ablate() -> int:
    from ablate import main
    return main()


def demo() -> int:
    from demo import main
    return main()


def generate_corpus() -> int:
    from generate_corpus import main
    return main()


def copy_synthesis() -> int:
    from copy_synthesis import main
    return main()


def export_onnx() -> int:
    from export_onnx import main
    return main()
