# Two commands for a newcomer: `make console` and `make test`. Each creates the
# virtual environment in .venv and installs what it needs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: console bot test bench sync clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.base: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

console: $(VENV)/.base  ## install, then hold a room in this terminal
	$(PY) -m bot console $(ARGS)

bot: $(VENV)/.base  ## install, then run the Discord bot (needs DISCORD_TOKEN)
	$(PY) -m bot $(ARGS)

test: $(VENV)/.test  ## install, then run the whole test suite
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.test  ## install, then run the benchmarks under bench/
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) .pytest_cache
