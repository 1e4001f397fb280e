# Two commands matter (see README): `make lab` runs the notebooks, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Jupyter drops websocket messages over 10 MiB; the studio's uploads (16 x 50 MB) need more.
LAB_SETTINGS := --ServerApp.tornado_settings="{'websocket_max_message_size': 943718400}"
# Extra arguments for `make lab`, added after the settings above (e.g. LAB_ARGS="--port=9999
# --no-browser"). JupyterLab refuses to start as root without --allow-root (Docker images,
# cloud notebook machines, CI boxes), so root gets it and other users do not.
LAB_ARGS ?=
# Extra arguments for `make app` (e.g. APP_ARGS="--port=9000 --open").
APP_ARGS ?=
# Where `make demo` leaves the executed notebooks and their reports.
DEMO_OUT ?= build/notebooks
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab app demo test soak bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

lab: $(VENV)/.installed  ## set up, then open the quickstart notebook in JupyterLab (sandbox when no key)
	$(BIN)/jupyter lab notebooks/01-quickstart.ipynb $(LAB_SETTINGS) $(ROOT_ARGS) $(LAB_ARGS)

app: $(VENV)/.installed  ## serve the studio alone as a web page (Voilà, loopback, with a token; APP_ARGS="--port=9000")
	$(BIN)/imgkit app $(APP_ARGS)

demo: $(VENV)/.installed  ## headless: execute the notebooks into build/notebooks (with their reports), each on a fresh sandbox ledger
	$(BIN)/python scripts/execute_notebooks.py --out $(DEMO_OUT)

test: $(VENV)/.installed  ## set up, then run every test (unit, sandbox, notebooks, browser)
	./scripts/ensure-test-packages
	$(BIN)/python -m pytest

soak: $(VENV)/.installed  ## the long fault-injection runs
	$(BIN)/python -m pytest -m soak --timeout 3600

bench: $(VENV)/.installed  ## performance against baselines; prints a table
	$(BIN)/python -m benchmarks

lint: $(VENV)/.installed
	$(BIN)/ruff check imgkit tests
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf build .pytest_cache
