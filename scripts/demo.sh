#!/usr/bin/env bash
# Set up (first run only) and run the main demo. Extra arguments go to `advlab demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/advlab demo "$@"
