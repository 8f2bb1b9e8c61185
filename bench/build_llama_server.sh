#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` and `llama-bench` from the llama.cpp sources vendored in
# the llama-cpp-python 0.3.36 sdist (the same llama.cpp that wai runs), into bench/.build/.
# Used only by the benchmarks, as the anchor that wai is measured against.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/.build"
if [ -x "$out/bin/llama-server" ] && [ -x "$out/bin/llama-bench" ]; then
  echo "$out/bin"; exit 0
fi
mkdir -p "$out"
py="${PYTHON:-$here/../.venv/bin/python}"
if [ ! -f "$out/llama_cpp_python-0.3.36.tar.gz" ]; then
  "$py" -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$out" >&2
fi
rm -rf "$out/src" && mkdir -p "$out/src"
tar xzf "$out/llama_cpp_python-0.3.36.tar.gz" -C "$out/src" --strip-components=3 \
  llama_cpp_python-0.3.36/vendor/llama.cpp
cmake -S "$out/src" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$out/cmake" -j"$(nproc)" --target llama-server llama-bench >&2
mkdir -p "$out/bin"
cp "$out/cmake/bin/llama-server" "$out/cmake/bin/llama-bench" "$out/bin/"
echo "$out/bin"
