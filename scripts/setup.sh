#!/usr/bin/env bash
# Create .venv (once) and install advlab with its dev tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import advlab, pytest, ruff" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.installed ]; then
  python -m pip install --quiet --upgrade pip
  # The CPU build first, so that nothing pulls the multi-GB CUDA wheels (see README).
  python -m pip install --quiet "torch==2.13.0"
  python -m pip install --quiet -e ".[dev,serve,browser]"
  touch .venv/.installed
fi
