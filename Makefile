# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench man clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/webinar-proxy demo

test: $(BIN)/.installed
	$(BIN)/ruff check webinar_proxy tests bench
	$(BIN)/pytest

# webinar-proxy(8) is rendered from the argument parser; a test fails when it is stale.
man: $(BIN)/.installed
	$(BIN)/python -m webinar_proxy.cli.manpage > man/webinar-proxy.8

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_relay.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
