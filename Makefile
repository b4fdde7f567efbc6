# emrdm: every set-up step a fresh machine needs. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Every tool a target runs comes from the venv first: never the system's pip or python.
export PATH := $(abspath $(BIN)):$(PATH)
# CPU-only machines pin the CPU build of torch; machines with an NVIDIA GPU keep whatever CUDA build pip picks.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c .ci/constraints-cpu.txt)
export OMP_NUM_THREADS ?= 2

.PHONY: help install test nbtest pytest export clean readme check docs package demo demo-distill demo-uncertainty paper paper-eval paper-distill tables

help:
	@echo "make demo     install, then EMRDM end to end on real Landsat-8 imagery, one date (and its 1-step student) and three, on this CPU (about 19 minutes on 2 cores)"
	@echo "make demo-distill  after make demo: 1-step students of its two models, scored against them (about 17 minutes)"
	@echo "make demo-uncertainty  after make demo (and demo-distill): calibrated uncertainty maps of its models, measured"
	@echo "make test     install into $(VENV) if needed, then run the notebook tests and pytest"
	@echo "make paper DATA=/data                 train and evaluate every row of the paper with papermill (GPU)"
	@echo "make paper-eval DATA=/data CKPTS=dir  evaluate the authors' released checkpoints (no training): every row and the sampler ablation"
	@echo "make paper-distill DATA=/data CKPTS=dir  1-step students of the released checkpoints (GPU), then the tables"
	@echo "make tables                           runs/tables.md and .tex: the published numbers beside ours"
	@echo "make export   notebooks -> emrdm/ (nbdev_export)"
	@echo "make clean    strip notebook metadata (nbdev_clean)"
	@echo "make readme   README.md from nbs/index.ipynb (no Quarto needed)"
	@echo "make check    fail if export, clean or readme would change a committed file"
	@echo "make docs     the documentation site with nbdev_docs (needs Quarto)"
	@echo "make package  build the sdist and wheel, install the sdist in a new venv and run it from another folder"

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

# Without Quarto, nbdev_docs would run an installer of its own (pip on PATH, sudo): stop first, change nothing.
docs:
	@command -v quarto >/dev/null || { echo "make docs needs Quarto (https://quarto.org/docs/get-started/); install it, then run make docs again"; exit 2; }
	$(MAKE) install
	$(BIN)/nbdev_docs
	$(PY) tools/readme.py

package:
	bash .ci/package-check

# ---- demo and paper reproduction ------------------------------------------------------------------------------
# DEMO_STEPS=N trains each model N steps (CI's smoke run: 30); DEMO_MINUTES=M trains each for M minutes instead;
# DEMO_CACHE is where the scene is kept.
DEMO_OUT ?= demo
demo: install
	$(PY) tools/demo.py --out $(DEMO_OUT) $(if $(DEMO_STEPS),--steps $(DEMO_STEPS)) $(if $(DEMO_MINUTES),--minutes $(DEMO_MINUTES)) \
	  $(if $(DEMO_SAMPLES),--samples $(DEMO_SAMPLES)) $(if $(DEMO_CACHE),--cache $(DEMO_CACHE)) $(if $(DEMO_ARCHIVE),--archive $(DEMO_ARCHIVE))

# demo-distill: distil make demo's models into 1-step students (tools/distill_demo.py), within their teachers' CPU time.
demo-distill: install
	$(PY) tools/distill_demo.py --demo $(DEMO_OUT) $(if $(DISTILL_ARGS),$(DISTILL_ARGS))

# demo-uncertainty: K posterior samples per held-out tile, calibration fitted on one cloud family and scored on the other.
demo-uncertainty: install
	$(PY) tools/uncertainty_demo.py --demo $(DEMO_OUT)

PM := $(BIN)/papermill --kernel python3 --log-output --cwd .
PAPER_TRAIN := cuhk cuhkv2 sen12mscr sen2mtc $(patsubst configs/paper/%.yaml,%,$(wildcard configs/paper/ablation-*.yaml))
RELEASED := cuhk:cuhk.ckpt cuhkv2:cuhkv2.ckpt sen12mscr:sentinel.ckpt sen2mtc:sen2_mtc_new.ckpt
# paper-eval: the four released rows, then the sampling ablations (steps-*, and churn-*: the grid of the authors'
# stochastic-sampler figure) on the released Sen2_MTC_New model, as the paper's figures are; then the tables, with the
# published numbers of configs/paper/published.yaml beside ours. A run with a summary.csv is kept, so a second
# make paper-eval goes on where the first stopped; remove runs/<name> to evaluate it again.
KEEP_DONE = if [ -f runs/$$run/summary.csv ]; then echo "runs/$$run: evaluated already, kept"; continue; fi;

paper: install
	@test -n "$(DATA)" || { echo "usage: make paper DATA=/path/to/datasets (CUHK-CR1, nir/CUHK-CR1, SEN12MS-CR, Sen2_MTC_New)"; exit 2; }
	for run in $(PAPER_TRAIN); do mkdir -p runs/$$run && \
	  $(PM) nbs/experiments/train.ipynb runs/$$run/train.ipynb -f configs/paper/$$run.yaml -p data_root $(DATA) || exit 1; done
	$(MAKE) tables

paper-eval: install
	@test -n "$(DATA)" -a -n "$(CKPTS)" || { echo "usage: make paper-eval DATA=/path/to/datasets CKPTS=/path/to/released/checkpoints"; exit 2; }
	for pair in $(RELEASED); do run=$${pair%%:*}; ckpt=$${pair##*:}; $(KEEP_DONE) mkdir -p runs/$$run && \
	  $(PM) nbs/experiments/evaluate.ipynb runs/$$run/evaluate.ipynb -f configs/paper/$$run.yaml -p data_root $(DATA) \
	    -p checkpoint $(CKPTS)/$$ckpt || exit 1; done
	for f in configs/paper/steps-*.yaml configs/paper/churn-*.yaml; do run=$$(basename $$f .yaml); $(KEEP_DONE) mkdir -p runs/$$run && \
	  $(PM) nbs/experiments/evaluate.ipynb runs/$$run/evaluate.ipynb -f $$f -p data_root $(DATA) -p checkpoint $(CKPTS)/sen2_mtc_new.ckpt || exit 1; done
	$(MAKE) tables

# paper-distill: a 1-step student of each released checkpoint (configs/paper/distill-*.yaml), distilled and evaluated by
# train.ipynb with teacher=; finished runs are kept.
paper-distill: install
	@test -n "$(DATA)" -a -n "$(CKPTS)" || { echo "usage: make paper-distill DATA=/path/to/datasets CKPTS=/path/to/released/checkpoints"; exit 2; }
	for pair in $(RELEASED); do name=$${pair%%:*}; ckpt=$${pair##*:}; run=distill-$$name; \
	  if [ -f runs/$$run/eval/summary.csv ]; then echo "runs/$$run: distilled already, kept"; continue; fi; mkdir -p runs/$$run && \
	  $(PM) nbs/experiments/train.ipynb runs/$$run/train.ipynb -f configs/paper/$$run.yaml -p data_root $(DATA) \
	    -p teacher $(CKPTS)/$$ckpt || exit 1; done
	$(MAKE) tables

tables: install
	$(PM) nbs/experiments/tables.ipynb runs/tables.ipynb -p runs_dir runs
