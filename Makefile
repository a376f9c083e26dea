# cnnkit: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FASHION_DIR := /usr/share/datasets/fashion-mnist
CHROMIUM    := /usr/bin/chromium

.PHONY: setup compiler kernels ortweb data browser postgres demo test bench fuzz clean

setup: compiler $(STAMP) kernels ortweb

# A C++ compiler for cnnkit's own CPU kernels (cnnkit/kernels: compiled once per machine into
# ~/.cache/cnnkit). Not fatal: without one cnnkit runs torch's ops (slower), and the kernel
# tests fail and say why.
compiler:
	@if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 \
	  && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq g++) >/dev/null 2>&1 || true; \
	fi
	@command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
	  || echo "note: no C++ compiler (apt-get install g++); cnnkit will use torch's ops"

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt -e .
	touch $(STAMP)

# cnnkit's C++ kernels for this CPU and these sources, on every set-up (a second or less once
# cached): a forward pass never compiles them, so a changed source is built here (or at the
# start of the next run), not in a user's first predict.
kernels: $(STAMP)
	$(BIN)/python -m cnnkit.kernels

# onnxruntime-web from its npm package, for the static page `cnnkit export --format web` writes
# (its files are copied into the site: no CDN). Not fatal: without npm that export says so.
ORT_WEB := $(VENV)/share/cnnkit-ort-web
$(ORT_WEB)/.stamp:
	@command -v npm >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] \
	  || (apt-get update -qq && apt-get install -y -qq npm) >/dev/null 2>&1 || true
	@mkdir -p $(ORT_WEB)
	@if command -v npm >/dev/null 2>&1 && npm install --prefix $(ORT_WEB) --no-audit --no-fund \
	  --silent onnxruntime-web@1.31.1 >/dev/null 2>&1; then touch $@; \
	  else echo "note: could not install onnxruntime-web with npm; cnnkit export --format web will say so"; fi

ortweb: $(STAMP)
	@$(MAKE) --no-print-directory $(ORT_WEB)/.stamp

# Real data where the system can provide it (Debian's dataset-fashion-mnist); never fatal.
data:
	@if [ ! -d $(FASHION_DIR) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	  || echo "note: could not install dataset-fashion-mnist; cnnkit will download or fall back"; \
	fi

# Debian's Chromium, which the report.html tests open pages in (never a downloaded browser). Not
# fatal here: without it those tests fail, and say why, rather than skip.
browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || true; \
	fi
	@[ -x $(CHROMIUM) ] || echo "note: no $(CHROMIUM) (apt-get install chromium); the report.html browser tests will fail"

# Debian's PostgreSQL server binaries, which the multi-worker tests of cnnkit tune start on
# 127.0.0.1 in a temporary folder (never a system service). Not fatal here: without them those
# tests fail and say why.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq postgresql) >/dev/null 2>&1 || true; \
	fi
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || echo "note: no PostgreSQL server (apt-get install postgresql); the cnnkit tune PostgreSQL tests will fail"

demo: setup data
	$(BIN)/cnnkit demo

test: setup data browser postgres
	$(BIN)/python -m pytest -q

# Coverage-guided fuzzing of every file reader (atheris, installed into the venv from
# bench/requirements-fuzz.txt, never a cnnkit dependency), FUZZ_SECONDS each; runs them all,
# then fails if any found something (its inputs are named in the output).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := idx npz folder model-file saved-model state keras onnx
fuzz: setup
	$(BIN)/python -m pip install -q -r bench/requirements-fuzz.txt
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  $(BIN)/python bench/fuzz_readers.py --target $$t --seconds $(FUZZ_SECONDS) || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) build *.egg-info
