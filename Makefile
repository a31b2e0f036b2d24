# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create or reuse the virtual environment at .venv (so .venv/bin/cryomine exists after either).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: venv demo test clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of PyTorch first, where none is present: an unpinned torch would pull GBs of CUDA wheels.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cryomine demo --out $(DEMO_OUT) --force

test: $(STAMP)
	bash scripts/install-test-deps.sh
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) build src/*.egg-info .pytest_cache
