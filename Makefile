# mem-tutorial: two commands for a fresh machine (see README):
#   make course   set everything up and open the course in JupyterLab
#   make test     set everything up and run the whole test suite (what CI runs)
#
# Installs into the active virtualenv if there is one, else into the active conda environment (not `base`), else into
# ./.venv. PyTorch is installed as torch==2.13.0 unless the environment already has a torch (e.g. a CUDA build you
# installed yourself). environment.yml installs the same things for conda users.

SHELL := /bin/bash
PYTHON ?= python3
CONDA_ENV := $(if $(filter-out base,$(CONDA_DEFAULT_ENV)),$(CONDA_PREFIX),)
ENV_DIR ?= $(or $(VIRTUAL_ENV),$(CONDA_ENV),$(CURDIR)/.venv)
BIN := $(ENV_DIR)/bin
PY := $(BIN)/python
STAMP := $(ENV_DIR)/.mem-tutorial-installed
TORCH_SPEC ?= torch==2.13.0
# course tools + Chapter 6's optional FAISS index and offline sentence encoder + Chapter 7's digits
EXTRAS ?= course,faiss,text,oneshot
# bAbI (Chapter 4/5): a local copy beside the repository is used when present, else the library's own lookup
BABI_DIR ?= $(firstword $(MEM_TUTORIAL_BABI_DIR) $(wildcard $(CURDIR)/../shared/data/babi))
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PYTEST_ARGS ?=
# the learner's own copy of the student notebooks (mem-tutorial workspace never overwrites it)
WORKSPACE ?= my-work

.PHONY: setup course serve test release check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(ENV_DIR)
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null && echo "using the installed torch" || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	@touch $(STAMP)

course: setup
	PATH="$(BIN):$$PATH" $(BIN)/mem-tutorial workspace $(WORKSPACE)
	PATH="$(BIN):$$PATH" $(BIN)/jupyter lab $(ROOT_FLAG) $(WORKSPACE)/

# instructors: JupyterLab on the course root, for Formgrader
serve: setup
	PATH="$(BIN):$$PATH" $(BIN)/mem-tutorial serve

test: setup
	PATH="$(BIN):$$PATH" MEM_TUTORIAL_FAST=1 MEM_TUTORIAL_BABI_DIR="$(BABI_DIR)" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	  $(PY) -m pytest -n 3 --dist loadfile tests solutions --nbval \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg $(PYTEST_ARGS)

release: setup
	PATH="$(BIN):$$PATH" $(BIN)/mem-tutorial release --build

check: setup
	PATH="$(BIN):$$PATH" $(BIN)/mem-tutorial release --check

clean:
	rm -rf .pytest_cache build *.egg-info
