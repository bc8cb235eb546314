# Tutti: everything the project needs installs from here.
#   make setup   virtualenv + the package with its test tools + Debian chromium (browser tests)
#   make demo    the main job: generate clips, submit them over HTTP, render, serve the watch page
#   make test    the whole suite (SQLite and PostgreSQL, real Redis + Celery worker, Chromium)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo serve test test-fast lint bench-sync bench-render bench-intake chromium clean

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

bench-sync: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.sync

bench-render: $(STAMP)
	$(BIN)/python -m bench.render

bench-intake: $(STAMP)
	$(BIN)/python -m bench.intake

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
