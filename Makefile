# Everything runs from a virtual environment this Makefile creates from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= $(or $(EP_PORT),8080)
ORIGIN_PORT ?=

.PHONY: compiled demo test bench bench-peers bench-instructions lint typecheck clean system-deps

# The editable install builds nothing (EP_PURE_PYTHON=1: setup.py then needs setuptools
# alone), so it builds in the venv: an isolated build would first install every build
# requirement (mypy, scipy, numpy, ...) a second time, into a throwaway environment.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=69' wheel
	EP_PURE_PYTHON=1 $(BIN)/python -m pip install --quiet --no-build-isolation -e '.[dev]'
	touch $(STAMP)

# The modules a request runs through, and those that read and compile rules, are compiled
# to C by mypyc (setup.py lists them), in place beside their sources: rebuilt whenever one
# of them changes, so the demo, the tests and the benchmarks never run a stale build.
COMPILED_SOURCES := $(shell grep -o 'edge_personalizer/[a-z_/]*\.py' setup.py)
COMPILED := $(VENV)/.compiled

# The built modules take the time the build began: a source saved while it ran is newer
# than its build, so make (and the tests' check) build it again.
$(COMPILED): $(STAMP) setup.py $(COMPILED_SOURCES)
	touch $(VENV)/.compiling
	find edge_personalizer -name '*.so' -delete
	$(BIN)/python setup.py --quiet build_ext --inplace
	find edge_personalizer -name '*.so' -exec touch -r $(VENV)/.compiling {} +
	touch -r $(VENV)/.compiling $(COMPILED)

compiled: $(COMPILED)

demo: $(COMPILED)
	$(BIN)/edge-personalizer demo --port $(PORT) $(if $(ORIGIN_PORT),--origin-port $(ORIGIN_PORT))

# Tests run real servers: nginx in front of the proxy (the shared-cache test), redis-server
# (the counter store) and a headless chromium (the dashboard). Install the Debian packages
# when missing (needs root, as on CI and the project's machines).
system-deps:
	@missing=""; \
	if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then missing="$$missing nginx-light"; fi; \
	if ! command -v redis-server >/dev/null 2>&1; then missing="$$missing redis-server"; fi; \
	if ! command -v chromium >/dev/null 2>&1; then missing="$$missing chromium"; fi; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing for the tests that run them"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing:$$missing; install them (e.g. apt-get install$$missing) for the tests that run them"; \
		fi; \
	fi

test: $(COMPILED) system-deps
	$(BIN)/ruff check edge_personalizer tests bench tools setup.py
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(COMPILED)
	$(BIN)/python bench/micro.py
	$(BIN)/python bench/first_byte.py
	$(BIN)/python bench/compression.py
	$(BIN)/python bench/compile_rules.py

# Against nginx, workerd and naive Python proxies, with the shared kit (~5 minutes).
bench-peers: $(COMPILED)
	bench/peers.sh

# Instructions a request under valgrind, with and without rules (~6 minutes).
bench-instructions: $(COMPILED)
	$(BIN)/python bench/instructions.py

lint: $(STAMP)
	$(BIN)/ruff check edge_personalizer tests bench tools setup.py

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find edge_personalizer -name '*.so' -delete
