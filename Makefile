# The two commands a fresh machine needs (see README):  make serve  /  make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup serve test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev,gpu-train]'
	touch $(STAMP)

## The main job on the embedded defaults: the reference server, the shipped model,
## the browser client at http://127.0.0.1:8000 and a local store ./faceid.db.
serve: web-assets
	$(BIN)/faceid-sdk serve

## Every test (unit, property, durability, model, CLI, browser, PostgreSQL, WeChat mini-program).
test: web-setup postgres-setup wechat-setup
	FACEID_REQUIRE_POSTGRES=1 $(BIN)/python -m pytest -q
	cd clients/wechat && npm test

## Debian's PostgreSQL server binaries (apt, when missing). The tests start their own
## server in a temporary folder on a free port, as an unprivileged user, and stop it.
.PHONY: postgres-setup
postgres-setup:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends postgresql; \
	fi

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check faceid_sdk adapters tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

## TF.js: converter venv (.venv-tfjs, adapters/tfjs/requirements-converter.txt) + npm ci for the
## Node parity script. Run before `make test` where the TF.js parity test should not be skipped.
.PHONY: tfjs-setup parity
tfjs-setup: setup adapters/tfjs/node_modules/.installed
	PYTHON=$(BIN)/python adapters/tfjs/setup-converter.sh

# npm ci only when the lock file changed (a stamp inside node_modules records the last one).
%/node_modules/.installed: %/package-lock.json
	cd $* && npm ci --no-audit --no-fund
	touch $@

## TensorFlow vs ONNX Runtime vs TF.js (Node, wasm) on the golden faces, shipped weights.
parity: tfjs-setup
	$(BIN)/faceid-sdk parity

## Browser client and its tests: Debian's Chromium (apt, when /usr/bin/chromium is missing),
## npm ci in clients/web, Playwright for Python (never `playwright install`: Debian's browser is
## driven), and clients/web/vendor/ (face-api + models, wasm binaries, the FFEM-AM TF.js export;
## re-exported whenever the shipped model changes).
.PHONY: web-assets web-setup
## What the page needs to run: npm ci in clients/web and clients/web/vendor/.
web-assets: tfjs-setup clients/web/node_modules/.installed
	$(BIN)/python clients/web/prepare.py

web-setup: web-assets
	@if [ ! -x /usr/bin/chromium ]; then \
	  sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends chromium; \
	fi
	$(BIN)/python -m pip install --quiet 'playwright>=1.40'

## WeChat mini-program client (clients/wechat): npm ci there (jest, miniprogram-simulate, TF.js,
## esbuild); its tests build the bundle, start `faceid-sdk serve` on loopback and fetch the models
## from clients/web/vendor/ as a phone would.
.PHONY: wechat-setup wechat-test
wechat-setup: clients/wechat/node_modules/.installed

wechat-test: web-assets wechat-setup
	cd clients/wechat && npm test
