"""Builds the installable package `sasv` (distribution `sasv-toolkit`): the checkout's root, under one import name.

A checkout runs from its root with plain top-level packages (`common`, `data`, `engine`, ...), like the research
repositories it replaces. Installed, those generic names would collide with other distributions, so the wheel holds
them under `sasv/` (`sasv.common`, `sasv.data`, ...), together with the entry scripts (`sasv.main`,
`sasv.save_cm_score`, ...) and `configs/`: the wheel mirrors the root under `sasv/`, so that paths computed from a
module's file (`configs/`, the root) mean the same in both. The build rewrites each absolute import of a toolkit
module to its `sasv.` name (the statements only, found with `ast`; nothing else changes), as pip and setuptools do
with the packages they vendor. docs/design.md, "Installed: one import name", records the decision.

`pip install -e .` (editable) keeps the checkout's layout instead: the top-level packages and scripts are importable
as in the checkout (that is what an editable install of a working copy is for), and the console scripts run the
same `main` functions.
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
NAME = "sasv"
# the toolkit's packages and entry scripts; tests/test_packaging.py checks that this list misses none
PACKAGES = ("asv", "cm", "common", "data", "engine", "fusion", "metrics", "pipeline", "runtime", "ssl_models",
            "synthetic")
SCRIPTS = ("main", "save_asv_embeddings", "save_cm_score", "save_sasv_score", "fuse", "evaluate", "verify",
           "ablate", "demo", "generate_corpus", "copy_synthesis", "export_onnx")
TOOLKIT = frozenset(PACKAGES + SCRIPTS)


def rewrite_imports(source: str, where: str = "<source>") -> str:
    """`source` with every absolute import of a toolkit module renamed under `sasv.`; relative imports, other
    modules and everything that is not an import statement stay byte for byte."""
    tree = ast.parse(source, where)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in TOOLKIT:
                names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
                edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset,
                              f"from {NAME}.{node.module} import {names}"))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in TOOLKIT for a in node.names):
            parts = []
            for a in node.names:
                top, _, rest = a.name.partition(".")
                if top not in TOOLKIT:
                    parts.append(f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
                elif a.asname:
                    parts.append(f"import {NAME}.{a.name} as {a.asname}")
                else:   # `import x` / `import x.y` bind the name x
                    parts.append(f"from {NAME} import {top}" + (f"; import {NAME}.{a.name}" if rest else ""))
            edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, "; ".join(parts)))
    for start, col, end, end_col, text in sorted(edits, reverse=True):
        head, tail = lines[start - 1][:col], lines[end - 1][end_col:]
        lines[start - 1:end] = [head + text + tail]
    return "".join(lines)


def build_info() -> dict:
    """The commit the wheel is built from, for the provenance of every result it makes (common/provenance.py)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


class BuildPackage(build_py):
    """Writes the `sasv` package (a wheel); in editable mode, the checkout's layout as it is."""

    def run(self) -> None:
        if getattr(self, "editable_mode", False):
            return super().run()
        target = Path(self.build_lib) / NAME
        shutil.rmtree(target, ignore_errors=True)
        files = {ROOT / f"{s}.py": f"{s}.py" for s in SCRIPTS}
        files.update({p: str(p.relative_to(ROOT)) for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))})
        files.update({p: p.name for p in sorted((ROOT / NAME).glob("*.py"))})   # sasv/ is the package itself
        for src, rel in files.items():
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(rewrite_imports(src.read_text(encoding="utf-8"), str(src)), encoding="utf-8")
        (target / "build_info.json").write_text(json.dumps(build_info()), encoding="utf-8")
        for conf in sorted((ROOT / "configs").glob("*.conf")):
            dest = target / "configs" / conf.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(conf, dest)


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPackage},
          packages=[NAME, *(p.relative_to(ROOT).as_posix().replace("/", ".") for pkg in PACKAGES
                            for p in sorted([ROOT / pkg, *(ROOT / pkg).rglob("*")]) if (p / "__init__.py").is_file())],
          py_modules=list(SCRIPTS))
