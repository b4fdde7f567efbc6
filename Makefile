# emrdm: every set-up step a fresh machine needs. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# CPU-only machines pin the CPU build of torch; machines with an NVIDIA GPU keep whatever CUDA build pip picks.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c .ci/constraints-cpu.txt)
export OMP_NUM_THREADS ?= 2

.PHONY: help install test nbtest pytest export clean readme check docs

help:
	@echo "make test     install into $(VENV) if needed, then run the notebook tests and pytest"
	@echo "make export   notebooks -> emrdm/ (nbdev_export)"
	@echo "make clean    strip notebook metadata (nbdev_clean)"
	@echo "make readme   README.md from nbs/index.ipynb (no Quarto needed)"
	@echo "make check    fail if export, clean or readme would change a committed file"
	@echo "make docs     the documentation site with nbdev_docs (needs Quarto)"

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed: $(PY) setup.py settings.ini .ci/constraints-cpu.txt
	$(PY) -m pip install --upgrade pip setuptools wheel $(CONSTRAINTS)
	$(PY) -m pip install -e '.[dev]' $(CONSTRAINTS)
	touch $@

install: $(VENV)/.installed

test: install nbtest pytest

nbtest: install
	$(BIN)/nbdev_test --n_workers 2 --timing

# pytest exits 5 when it collects no test: not a failure of ours.
pytest: install
	$(PY) -m pytest tests -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

export: install
	$(BIN)/nbdev_export

clean: install
	$(BIN)/nbdev_clean

readme: install
	$(PY) tools/readme.py

check: install
	bash .ci/check-drift

docs: install
	$(BIN)/nbdev_docs
	$(PY) tools/readme.py
