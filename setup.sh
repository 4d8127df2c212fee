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
# Where PYTHONDONTWRITEBYTECODE is set (the development image sets it), no process ever writes the bytecode that
# --no-compile skipped, so every process compiled torch's sources again at import: `import torch` 3.6 s instead of
# 1.9, an optimiser (which imports torch._dynamo) 8.1 instead of 3.3 (docs/benchmarks.md). Compile once, here, the
# modules the toolkit's runs import, in two processes (19 -> 11 s); elsewhere this is the compile their first run
# would have done.
warm() { env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -c "import $1"; }
warm "torch, torch._dynamo, torch.export, torch.onnx, torch.utils.tensorboard, torchaudio, safetensors.torch" &
torch_side=$!
warm "numpy, scipy.fft, scipy.optimize, scipy.signal, scipy.special, scipy.stats, sklearn.isotonic, soundfile, av, \
yaml, tqdm, matplotlib.pyplot, onnx, onnxruntime, onnxscript, pytest, xdist, pytest_timeout"
wait "$torch_side"
echo "$want" > "$stamp"
