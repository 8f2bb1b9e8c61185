#!/usr/bin/env bash
# Prints the folder holding llama.cpp's own `llama-server` and `llama-bench`, built from the
# llama.cpp sources vendored in the llama-cpp-python sdist that wai runs (once per CPU, without
# the AMX path, cached under $WAI_CACHE_DIR: see scripts/llama_server.py). The benchmarks'
# anchor, and the upstream tests' servers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "${PYTHON:-$here/../.venv/bin/python}" "$here/../scripts/llama_server.py"
