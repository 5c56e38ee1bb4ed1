# DFMS developer commands. `make run` and `make test` set themselves up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORE := --cov=dfms.chunking --cov=dfms.placement --cov=dfms.storage --cov=dfms.metadata --cov=dfms.services --cov=dfms.auth --cov=dfms.workers

.PHONY: setup run test test-fast lint fmt typecheck coverage openapi bench bench-smoke clean

$(STAMP): pyproject.toml setup.py src/dfms/chunking/_rabin.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## run: all-in-one server on embedded defaults (http://127.0.0.1:8080, data in ./data)
run: $(STAMP)
	$(BIN)/dfms serve $(ARGS)

## test: the whole suite with coverage of the core packages (>= 85%)
test: $(STAMP)
	$(BIN)/pytest $(CORE) --cov-report=term --cov-fail-under=85 $(ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -x -q -m "not slow" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

coverage: $(STAMP)
	$(BIN)/pytest --cov=dfms --cov-report=html --cov-report=term $(ARGS)
	@echo "HTML report: htmlcov/index.html"

openapi: $(STAMP)
	$(BIN)/python -m dfms.api.openapi docs/openapi.json

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(ARGS)

bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --smoke

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info htmlcov .coverage .pytest_cache .mypy_cache .ruff_cache
	find src -name '*.so' -delete
