# Tutti: everything the project needs installs from here.
#   make setup   virtualenv + the package with its test tools + Debian chromium (browser tests)
#                + the Noto fonts and FriBiDi that draw every participant's name (make fonts)
#   make demo    the main job: generate clips, submit them over HTTP, render, serve the watch page
#   make test    the whole suite (SQLite and PostgreSQL, real Redis + Celery worker, Chromium)
#   make firefox Debian's firefox-esr, PulseAudio (its Web Audio needs an output device) and
#                the websockets package: the record-along tests in Firefox
#                (tests/browser/test_record_firefox.py; skipped, saying why, without them)
#   make bench-sync  the sync benchmark, both corpora (installs what its realistic corpus needs)
#   make vendor-tus  fetch tus-js-client's built file from the npm registry into static/vendor/
#                    (developers only, when changing its version: the file is committed, so
#                    users and CI never run Node)
#   make bench-upload  1 GiB through tus on loopback: Tutti (gunicorn) against @tus/server
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo serve test test-fast lint bench-sync bench-sync-deps bench-render bench-intake bench-faults bench-load chromium firefox test-firefox fonts ocr clean vendor-tus bench-upload

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

# Firefox, driven over WebDriver BiDi (its own remote protocol: no geckodriver, which is on
# crates.io and GitHub only, and no Playwright Firefox, a patched build fetched from a CDN).
# PulseAudio gives its Web Audio a device to play to (a null sink the tests start).
FIREFOX_PACKAGES := firefox-esr pulseaudio
firefox: $(STAMP)
	$(BIN)/pip install --quiet -e '.[firefox]'
	@if command -v dpkg >/dev/null && dpkg -s $(FIREFOX_PACKAGES) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing Debian's $(FIREFOX_PACKAGES) for the Firefox record-along tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends $(FIREFOX_PACKAGES) >/dev/null; \
	else echo "warning: no apt-get: install firefox-esr and pulseaudio for the Firefox tests"; fi

test-firefox: firefox fonts
	$(BIN)/python -m pytest tests/browser/test_record_firefox.py

# Names in every script: Noto for each script, CJK and colour emoji; FriBiDi for Pillow's
# raqm layout (shaping, right-to-left). Without them names render, with boxes for the rest.
FONT_PACKAGES := fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji libfribidi0
fonts:
	@if command -v dpkg >/dev/null && dpkg -s $(FONT_PACKAGES) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing the Noto fonts and FriBiDi (names in every script)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(FONT_PACKAGES) >/dev/null; \
	else echo "warning: no apt-get: install the Noto fonts (Sans, Sans CJK, Color Emoji) and fribidi, or non-Latin names show boxes"; fi

# Optional: OCR of the credits in the tests (they skip it without tesseract).
OCR_PACKAGES := tesseract-ocr tesseract-ocr-ara tesseract-ocr-hin tesseract-ocr-rus tesseract-ocr-ell
ocr:
	@if command -v dpkg >/dev/null && dpkg -s $(OCR_PACKAGES) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing tesseract-ocr (the credits OCR test)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(OCR_PACKAGES) >/dev/null; \
	else echo "note: no apt-get: the OCR test is skipped without tesseract"; fi

setup: $(STAMP) chromium fonts ocr

demo: $(STAMP) fonts
	$(BIN)/tutti demo

serve: $(STAMP) fonts
	$(BIN)/tutti serve

test: setup
	$(BIN)/python -m pytest

test-fast: $(STAMP) fonts
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

bench-intake: $(STAMP)
	$(BIN)/python -m bench.intake

# tus-js-client: the resumable upload client of the participant's page. Its built,
# minified file and its licence are committed under static/vendor/tus-js-client/ with
# the version and the file's SHA-256 (tests/unit/test_vendor.py checks they agree).
TUS_JS_CLIENT_VERSION := 4.3.1
TUS_VENDOR := static/vendor/tus-js-client
vendor-tus:
	@command -v npm >/dev/null || { echo "vendor-tus needs npm (apt-get install npm)"; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent tus-js-client@$(TUS_JS_CLIENT_VERSION) >/dev/null && \
	   tar xzf tus-js-client-$(TUS_JS_CLIENT_VERSION).tgz) && \
	  mkdir -p $(TUS_VENDOR) && \
	  cp "$$tmp/package/dist/tus.min.js" "$$tmp/package/LICENSE" $(TUS_VENDOR)/ && \
	  printf 'tus-js-client %s (npm registry, dist/tus.min.js), MIT licence: see LICENSE\nsha256 %s\n' \
	    $(TUS_JS_CLIENT_VERSION) "$$(sha256sum $(TUS_VENDOR)/tus.min.js | cut -d' ' -f1)" \
	    > $(TUS_VENDOR)/VERSION && cat $(TUS_VENDOR)/VERSION

# BENCH_UPLOAD_ARGS, e.g. --size-mb 256 --no-peer; the peer is installed with npm into bench/upload/node
bench-upload: $(STAMP)
	$(BIN)/python -m bench.upload $(BENCH_UPLOAD_ARGS)

# faults with real processes (Redis on its own port, tutti worker / serve, PostgreSQL);
# BENCH_FAULTS_ARGS, e.g. --repeat 20 --peer-lease 1920
bench-faults: $(STAMP)
	$(BIN)/python -m bench.faults $(BENCH_FAULTS_ARGS)

# gunicorn under locust: tus uploads and viewers streaming the mash-up; one gunicorn, then
# nginx + page server + uploads server (docker-compose.yml's topology)
bench-load: $(STAMP)
	$(BIN)/pip install --quiet -e '.[load]'
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
	  echo "bench-load: the split topology needs nginx (Debian: apt-get install nginx)"
	$(BIN)/python -m bench.load $(BENCH_LOAD_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
