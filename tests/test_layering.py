"""The import order the design states (docs/design.md): within `pipeline`, tools -> recipes -> stages -> library,
never back up; and no module of a package imports its own siblings in a cycle. Read from the source with `ast`, so
that a lazy import inside a function counts as much as one at the top."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_ORDER = ("stages", "recipes", "tools")   # each may import those before it, never those after


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports at run time (imports under `if TYPE_CHECKING:` are for the type checker only), as
    absolute names: relative imports resolved against its package, and `from a import b` counted as `a` and `a.b`
    (b may be a module)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return names


def test_pipeline_layers_import_downwards_only():
    wrong = []
    for rank, layer in enumerate(PIPELINE_ORDER):
        above = PIPELINE_ORDER[rank + 1:]
        for path in sorted((ROOT / "pipeline" / layer).rglob("*.py")):
            for name in imported_modules(path):
                parts = name.split(".")
                if parts[0] == "pipeline" and len(parts) > 1 and parts[1] in above:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "pipeline imports running back up (tools -> recipes -> stages):\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules_of_a_package():
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p
               for top in ("asv", "cm", "common", "data", "engine", "fusion", "metrics", "pipeline", "ssl_models",
                           "synthetic", "runtime")
               for p in (ROOT / top).rglob("*.py") if (ROOT / top).is_dir() and p.name != "__init__.py"}
    graph = {m: {n for n in imported_modules(p) if n in modules and n != m} for m, p in modules.items()}
    cycles = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())})
    assert not cycles, f"modules importing each other: {cycles}"


def test_the_checker_sees_relative_and_lazy_imports_and_skips_type_checking_ones():
    """The checks themselves can fail: relative imports resolve to module names, an import inside a function counts,
    one under TYPE_CHECKING does not."""
    assert {"synthetic.plan", "synthetic.attacks", "common.io"} <= imported_modules(ROOT / "synthetic" / "layout.py")
    assert "pipeline.recipes.sasv_task" in imported_modules(ROOT / "save_cm_score.py")        # inside main()
    assert "ssl_models.encoder" not in imported_modules(ROOT / "ssl_models" / "checkpoint.py")  # TYPE_CHECKING


# Imported by no command as it starts: each costs 0.5-1 s of every run of every command (scipy.stats 1.0 s and
# scipy.optimize 0.5 s were, until metrics/det.py and fusion/calibration.py stopped importing them at the top).
SLOW_TO_IMPORT = ("scipy.stats", "scipy.optimize", "sklearn", "matplotlib.pyplot", "onnx", "onnxruntime")


def test_the_commands_start_without_the_slow_imports():
    """`verify.py` and the stage commands are started once per job: what they import before running is paid each
    time (verify.py 3.7 -> 2.9 s when scipy.stats and scipy.optimize left). The modules that need one import it in the
    function that uses it."""
    # not generate_corpus.py and copy_synthesis.py: they synthesise audio with scipy.signal, which imports both
    commands = ["main", "save_asv_embeddings", "save_cm_score", "save_sasv_score", "verify", "fuse", "evaluate",
                "ablate", "export_onnx", "demo"]
    probe = ("import importlib, sys\n"
             f"for name in {commands!r}:\n"
             "    importlib.import_module(name)\n"
             f"print(sorted(m for m in {SLOW_TO_IMPORT!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"imported when the commands start: {result.stdout.strip()}"
