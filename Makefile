# Everything people and CI run. `make run` and `make test` set themselves up on a fresh machine:
# a virtualenv in .venv with the project and its tools, nothing installed system-wide.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: setup run test lint format bench quality cache clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

run: setup
	$(BIN)/voicebot up

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy events brain edge stt_worker tts_worker archiver console voicebot quality bench

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python -m bench

# Scripted French callers through the AudioSocket port of a `voicebot up` it starts itself
# (about 30 min; not in CI, where tests/integration/test_quality_harness.py runs a few).
# QUALITY_ARGS: e.g. "--matrix one" (quicker), "--personas sample,one_word", "--concurrency 3".
quality: setup
	$(BIN)/python -m quality $(QUALITY_ARGS)

cache: setup
	$(BIN)/voicebot cache

clean:
	rm -rf var recordings .pytest_cache .mypy_cache .ruff_cache
