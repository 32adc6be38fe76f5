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

# each run writes a new, time-stamped report folder: nothing saved earlier is overwritten
DEMO_OUT = reports/demo-$(shell date +%Y%m%d-%H%M%S)

demo: setup
	$(BIN)/ppl-vi compare --model bayesian_linear_regression \
		--methods exact,cavi,svi,nuts,langevin --backend numpyro --out $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

clean:
	rm -rf $(VENV) reports
