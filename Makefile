# The README's two commands: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup clean

$(BIN)/ppl-vi: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/ppl-vi

setup: $(BIN)/ppl-vi

demo: setup
	$(BIN)/ppl-vi models

test: setup
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

clean:
	rm -rf $(VENV) reports
