"""The installable package (setup.py, pyproject.toml): the import rewriting that puts the toolkit under `sasv`, the
lists it builds from, and the wheel itself installed into a fresh environment outside the checkout, running a console
script on the tiny corpus and giving the checkout's numbers."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.pipeline_fixtures import ROOT, check_ok, env, frontends, sasv_args, staged, tiny_corpus

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name

sys.path.insert(0, str(ROOT))
import setup as build  # noqa: E402 - setup.py at the root, importable without running setup()


def test_rewrite_renames_toolkit_imports_and_nothing_else():
    source = ('"""from common import x stays in a docstring"""\n'
              "import os, asv\n"
              "import synthetic.asvspoof5 as a5\n"
              "import pipeline.stages\n"
              "from common.config import (ConfigError,\n"
              "                           Rule)  # kept comment\n"
              "from . import attacks\n"
              "from .layout import Job\n"
              "from commonmark import x\n"
              "def f():\n"
              "    from main import main\n"
              "    return 'import data'\n")
    got = build.rewrite_imports(source)
    assert got == ('"""from common import x stays in a docstring"""\n'
                   "import os; from sasv import asv\n"
                   "import sasv.synthetic.asvspoof5 as a5\n"
                   "from sasv import pipeline; import sasv.pipeline.stages\n"
                   "from sasv.common.config import ConfigError, Rule  # kept comment\n"
                   "from . import attacks\n"
                   "from .layout import Job\n"
                   "from commonmark import x\n"
                   "def f():\n"
                   "    from sasv.main import main\n"
                   "    return 'import data'\n")
    ast.parse(got)


def test_the_build_lists_every_package_and_entry_script():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "sasv"}
    assert set(build.PACKAGES) == packages
    scripts = {p.stem for p in ROOT.glob("*.py")} - {"setup"}
    assert set(build.SCRIPTS) == scripts
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    import sasv.cli
    commands = {v.split(":")[1] for v in project["scripts"].values()}
    assert commands == {n for n in dir(sasv.cli) if not n.startswith("_") and callable(getattr(sasv.cli, n))
                        and n != "annotations"}
    for name in commands:   # every console script runs an entry script's main
        imported = [n for n in ast.walk(ast.parse(Path(sasv.cli.__file__).read_text()))
                    if isinstance(n, ast.FunctionDef) and n.name == name][0].body[0]
        assert isinstance(imported, ast.ImportFrom) and imported.module in build.SCRIPTS


def _install_into_new_venv(venv: Path, *what: str) -> Path:
    """A new virtual environment outside the checkout with `pip install --no-deps *what` in it; the dependencies come
    from the test's own environment (a .pth file), so nothing is downloaded."""
    check_ok(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True,
                            text=True, timeout=120))
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([venv / "bin" / "python", "-c", where], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check_ok(subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                             "--no-deps", "-q", *what], capture_output=True, text=True, timeout=300))
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, built from this checkout and installed into a new virtual environment outside it."""
    work = tmp_path_factory.mktemp("wheel")
    check_ok(subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(work / "dist")], capture_output=True, text=True, timeout=300))
    return _install_into_new_venv(work / "venv", str(next((work / "dist").glob("sasv_toolkit-*.whl"))))


def _run_installed(venv: Path, argv: list, cwd: Path) -> subprocess.CompletedProcess:
    e = env()
    e.pop("PYTHONPATH", None)
    e["PATH"] = f"{venv / 'bin'}{os.pathsep}{e.get('PATH', '')}"
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=e, capture_output=True, text=True, timeout=600)


def test_the_wheel_holds_one_import_name(installed, tmp_path):
    probe = ("import importlib.util, json, sys; import sasv.common.config, sasv.main;"
             "from sasv.common.provenance import git_state;"
             "print([n for n in ('common', 'data', 'engine', 'asv', 'main') if importlib.util.find_spec(n)]);"
             "print(sasv.common.config.__file__); print(json.dumps(git_state()))")
    out = check_ok(_run_installed(installed, [installed / "bin" / "python", "-c", probe], tmp_path)).stdout.split("\n")
    assert out[0] == "[]"                                     # no generic top-level name installed
    assert str(ROOT) not in out[1] and "site-packages/sasv/common/config.py" in out[1]
    built_from = json.loads(out[2])                           # provenance: the commit the wheel was built from
    assert built_from["note"].startswith("installed package") and built_from["commit"] == \
        subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_a_console_script_gives_the_checkouts_numbers(installed, tiny_corpus, frontends, staged, tmp_path):
    out = tmp_path / "installed_run"
    args = sasv_args(tiny_corpus, frontends, out, config=str(ROOT / "configs" / "quickstart.conf"))
    result = check_ok(_run_installed(installed, ["sasv-cm-score", *args], tmp_path))
    assert "[pipeline]" in result.stderr                      # the toolkit's progress lines, named by package
    for split in ("dev", "eval"):
        assert (out / "scores" / f"cm_{split}.txt").read_text() == \
            (staged.out / "scores" / f"cm_{split}.txt").read_text()


def test_an_editable_install_runs_the_checkout(tmp_path):
    venv = _install_into_new_venv(tmp_path / "venv", "-e", str(ROOT), "--no-build-isolation")
    result = check_ok(_run_installed(venv, ["sasv-evaluate", "--help"], tmp_path))
    assert result.stdout.startswith("usage: sasv-evaluate")
    probe = "import common.config; print(common.config.__file__)"
    assert check_ok(_run_installed(venv, [venv / "bin" / "python", "-c", probe], tmp_path)).stdout.strip() == \
        str(ROOT / "common" / "config.py")                   # editable: the checkout's own files
