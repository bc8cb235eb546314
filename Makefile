# Tutti: everything the project needs installs from here.
#   make setup   virtualenv + the package with its test tools + Debian chromium (browser tests)
#   make demo    the main job: generate clips, submit them over HTTP, render, serve the watch page
#   make test    the whole suite (SQLite and PostgreSQL, real Redis + Celery worker, Chromium)
#   make bench-sync  the sync benchmark, both corpora (installs what its realistic corpus needs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo serve test test-fast lint bench-sync bench-sync-deps bench-render chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Tutti needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	else echo "warning: no apt-get: install chromium at /usr/bin/chromium for the browser tests"; fi

setup: $(STAMP) chromium

demo: $(STAMP)
	$(BIN)/tutti demo

serve: $(STAMP)
	$(BIN)/tutti serve

test: setup
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	TUTTI_TEST_DATABASES=sqlite $(BIN)/python -m pytest -m "not integration and not browser"

lint: $(STAMP)
	$(BIN)/ruff check portal workers tests bench

# the sync bench's realistic corpus renders with Debian's FluidSynth, General MIDI soundfont,
# hydrogen drum kits (real hand claps) and espeak-ng; the test suite needs none of them
SYNC_DEBS := fluidsynth fluid-soundfont-gm hydrogen-drumkits espeak-ng

bench-sync-deps: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	@if command -v fluidsynth >/dev/null && [ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] \
	  && [ -d "/usr/share/hydrogen/data/drumkits/Gimme A Hand 1.0" ] && command -v espeak-ng >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing Debian's $(SYNC_DEBS) for the sync bench"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends $(SYNC_DEBS) >/dev/null; \
	else echo "warning: no apt-get: install $(SYNC_DEBS) for the realistic sync corpus"; fi

# BENCH_SYNC_ARGS, e.g. --corpus real --seed 1,2,3 --no-peer --save bench/out/sync-corpus
bench-sync: bench-sync-deps
	$(BIN)/python -m bench.sync $(BENCH_SYNC_ARGS)

bench-render: $(STAMP)
	$(BIN)/python -m bench.render

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
