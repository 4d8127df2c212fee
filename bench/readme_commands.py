"""The README's two commands, timed from fresh clones of given commits, side by side on one machine.

    python bench/readme_commands.py --commits a877522 HEAD [--command demo|tests|both] [--rounds 1]
        [--clones /work/bench-clones] [--json OUT] [--keep]

Machines differ up to 2x for the same command, so the README's figures are ratios: each commit is cloned afresh
(`git clone` of this repository, then `git checkout`), `./setup.sh` builds its own `.venv` (pip's cache is warm,
as on a user's second clone), and the command runs exactly as the README writes it. Rounds alternate between
the commits (A B A B ...), so that a drift in machine load hits both. `../shared/reference` is linked beside
each clone, as in the checkout and CI, so that no test skips for want of it.

Per round: the wall time of `setup.sh` and of the rest of the command, and for the demo the per-step times it
prints at the end
(`finished in N s (step 1/5 N s, ...)`). Prints the median per commit and the ratio of the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "demo": ".venv/bin/python demo.py",
    "tests": ".venv/bin/ruff check . && .venv/bin/python -m pytest -q",
}
FINISHED = re.compile(r"^finished in (?P<total>[0-9]+) s \((?P<steps>.*)\)\s*$")
STEP = re.compile(r"step (?P<step>\S+) (?P<seconds>[0-9]+) s")


def clone(commit: str, where: Path) -> str:
    """A fresh clone of this repository at `commit`; returns the full hash."""
    if where.exists():
        shutil.rmtree(where)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=where, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, check=True, capture_output=True,
                          text=True).stdout.strip()


def timed(command: str, cwd: Path, log: Path) -> float:
    """Wall seconds of `command` run by bash in `cwd`, its output appended to `log`; a failure stops the bench."""
    start = time.perf_counter()
    with log.open("a") as out:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"error: `{command}` failed in {cwd} (exit {done.returncode}); its output: {log}")
    return seconds


def demo_steps(log: Path) -> dict[str, float]:
    """The per-step times the demo printed."""
    for line in log.read_text(errors="replace").splitlines():
        m = FINISHED.match(line)
        if m:
            return {"demo": float(m["total"]), **{s["step"]: float(s["seconds"]) for s in STEP.finditer(m["steps"])}}
    return {}


def one_round(commit: str, kind: str, clones: Path, tag: str) -> dict:
    where = clones / f"{tag}-{kind}"
    full = clone(commit, where)
    log = clones / f"{tag}-{kind}.log"
    log.unlink(missing_ok=True)
    env_setup = timed("./setup.sh", where, log)
    rest = timed(COMMANDS[kind], where, log)
    row = {"commit": commit, "hash": full[:10], "command": kind, "setup_s": round(env_setup, 1),
           "command_s": round(rest, 1), "total_s": round(env_setup + rest, 1), "log": str(log),
           "load_after": os.getloadavg()[0]}
    if kind == "demo":
        row["steps"] = demo_steps(log)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commits", nargs=2, required=True, metavar=("BASELINE", "NEW"))
    ap.add_argument("--command", choices=("demo", "tests", "both"), default="both")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--clones", type=Path, default=ROOT.parent / "bench-clones")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the clones (default: removed after each round)")
    args = ap.parse_args()
    args.clones.mkdir(parents=True, exist_ok=True)
    shared = args.clones / "shared"
    if not shared.exists() and (ROOT.parent / "shared").exists():
        shared.symlink_to(ROOT.parent / "shared")
    kinds = ("demo", "tests") if args.command == "both" else (args.command,)
    rows = []
    for r in range(args.rounds):
        for kind in kinds:
            for i, commit in enumerate(args.commits):
                tag = f"r{r}-{'ab'[i]}"
                print(f"round {r + 1}: {kind} at {commit} ...", file=sys.stderr, flush=True)
                row = one_round(commit, kind, args.clones, tag)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if not args.keep:
                    shutil.rmtree(args.clones / f"{tag}-{kind}", ignore_errors=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for kind in kinds:
        medians = [statistics.median(x["total_s"] for x in rows if x["command"] == kind and x["commit"] == c)
                   for c in args.commits]
        print(f"{kind}: {args.commits[0]} {medians[0]:.0f} s, {args.commits[1]} {medians[1]:.0f} s, "
              f"ratio {medians[1] / medians[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
