# Conveyor: the two commands are `make demo` and `make test`; everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit integration bench chaos clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run the demo: workers + simulated shop, progress and a summary
	$(BIN)/conveyor demo $(DEMO_ARGS)

test: $(STAMP)  ## run the whole test suite (unit, integration, short chaos)
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP)  ## only the fast unit tests
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)  ## only the tests against real PostgreSQL and RabbitMQ
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
