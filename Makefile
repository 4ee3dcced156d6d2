# Everything runs from a virtual environment this Makefile creates from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8080
ORIGIN_PORT ?= 8081

.PHONY: demo test bench lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-personalizer demo --rules rules --geo-db geo_db/GeoLite2-City-Test.mmdb \
		--port $(PORT) --origin-port $(ORIGIN_PORT)

test: $(STAMP)
	$(BIN)/ruff check edge_personalizer tests bench tools
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/micro.py
	$(BIN)/python bench/first_byte.py

lint: $(STAMP)
	$(BIN)/ruff check edge_personalizer tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
