# All set-up lives here so that a fresh machine (Python 3.11 + make) needs nothing else.
# Targets:
#   make install  create .venv and install bindkit editable with its test extra, at the versions pinned in
#                 constraints.txt (pyproject.toml states the supported ranges; constraints.txt the tested set)
#   make demo     the main job: cross-modal search and zero-shot on a synthetic gallery with bindkit_toy
#   make test     the layer contracts (lint-imports, pyproject.toml) and the test suite, including the wheel test
#                 (what .ci/run calls)
#   make dist     build the sdist and the wheel into dist/ and check them with twine (a release is one upload away)
#   make clean    remove .venv, build outputs and dist/
# Benchmarks are run one at a time (python benchmarks/NAME.py --help; each file's docstring says what it measures).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: install demo test dist clean

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/bindkit demo

test: install
	bash tests/setup.sh
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider

dist: install
	rm -rf dist
	$(PY) -m build --no-isolation
	$(PY) -m twine check --strict dist/*

clean:
	rm -rf $(VENV) build dist *.egg-info
