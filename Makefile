# Two targets, as the README opens with. Both create or reuse .venv (idempotent, quick when done).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.harness-setup
RESULTS ?= results
# Unit tests in parallel; real-vLLM and real-container tests after them, one at a time
# (each starts an engine that wants both cores).
PYTEST_UNIT := -n 2 -m "not vllm and not container"
PYTEST_SLOW := -m "vllm or container"

.PHONY: run test
run: $(STAMP)
	$(BIN)/harness run --platform cpu --results $(RESULTS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_UNIT)
	$(BIN)/python -m pytest $(PYTEST_SLOW)

$(STAMP): pyproject.toml docker/cpu_fixups.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[cpu,test]'
	$(BIN)/python docker/cpu_fixups.py
	touch $(STAMP)
