# Two commands do all the set-up on a fresh machine:
#   make demo   -- creates .venv if needed and runs `flowlearn demo`
#   make test   -- creates .venv if needed and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PYTEST_ARGS ?= -m "not slow"

.PHONY: demo test test-all docs venv bench clean

$(BIN)/flowlearn: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(BIN)/flowlearn

venv: $(BIN)/flowlearn

demo: venv
	$(BIN)/flowlearn demo --out runs/demo

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: venv
	$(BIN)/python -m pytest -q -m ""

docs: venv
	$(BIN)/python -m sphinx -W --keep-going -b html docs/api build/docs

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
