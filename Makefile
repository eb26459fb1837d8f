# All set-up lives here so that a fresh machine (Python 3.11 + make) needs nothing else.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## The main job: embed the sample files and print their cross-modal similarities.
demo: install
	$(VENV)/bin/bindkit demo

## The test suite (what .ci/run calls).
test: install
	bash tests/setup.sh
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
