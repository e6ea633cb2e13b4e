# Two commands for a newcomer: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# headless MuJoCo rendering (Meta-World from pixels) through Mesa's EGL
export MUJOCO_GL ?= egl
EGL_PACKAGES := libegl1 libgl1-mesa-dri

.PHONY: setup demo test lint docs docs-assets clean

$(VENV)/.installed: pyproject.toml
	@# system libraries for headless rendering: installed only if missing (needs root and apt-get)
	@dpkg -s $(EGL_PACKAGES) >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq --no-install-recommends $(EGL_PACKAGES); } \
		|| echo "warning: install $(EGL_PACKAGES) (or libosmesa6 and MUJOCO_GL=osmesa) to render Meta-World images"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# CPU torch first: otherwise pip resolves torch from the index and pulls a multi-GB CUDA build.
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[all,dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/core_demo.py
	$(PY) examples/stale_demo.py

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# KaTeX for the docs, from the npm registry (pinned by tools/docs_assets/package-lock.json): served by the site itself
DOCS_ASSETS := tools/docs_assets
$(DOCS_ASSETS)/node_modules/.package-lock.json: $(DOCS_ASSETS)/package.json $(DOCS_ASSETS)/package-lock.json
	@command -v npm >/dev/null || { echo "error: the docs need Node.js and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix $(DOCS_ASSETS) --no-audit --no-fund --loglevel=error
	@touch $@

docs-assets: $(DOCS_ASSETS)/node_modules/.package-lock.json

docs: setup docs-assets
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

test: lint docs
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build dist site *.egg-info
