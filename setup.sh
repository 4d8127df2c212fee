#!/usr/bin/env bash
# Creates .venv and installs requirements.txt and requirements-dev.txt; a no-op when all are already in place.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "setting up .venv with $($PY --version) (first run installs PyTorch: about a minute)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# --no-compile: byte-compiling every installed file (torch ships thousands that are never imported) took a
# third of the install (87 -> 61 s here); Python compiles the modules it imports when it first needs them.
.venv/bin/python -m pip install -q --no-compile --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
echo "$want" > "$stamp"
