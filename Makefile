# Two commands for a fresh machine (README): `make table1` and `make test`. Each sets itself up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= default
BACKEND ?=

GPU ?=
KAGGLE_USER ?=
# Kaggle's image runs Python 3.12: the first python3.12 that really runs (a pyenv shim may only point elsewhere).
KAGGLE_PYTHON ?= $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12); do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && echo $$p && break; done)
KAGGLE_VENV := .venv-kaggle
KAGGLE_STAMP := $(KAGGLE_VENV)/.installed
REQUIREMENTS := $(if $(GPU),requirements-gpu.txt,requirements.txt)

.PHONY: help setup test table1 bench kernel kaggle-check clean-venv

help:  ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|default|full (table1), BACKEND=tensorflow|jax (table1; default: the faster here), GPU=1 (setup: tensorflow[and-cuda]), KAGGLE_USER=name (kernel)"

setup: $(STAMP)  ## the .venv with the pinned packages and the notebooks' kernel (GPU=1: CUDA wheels)

# The virtual environment, rebuilt whenever the pins change; the project kernel for JupyterLab/papermill.
# `helpers` becomes importable through a .pth file naming this folder (what an editable install does, without
# setuptools' build warnings).
$(STAMP): requirements.txt requirements-gpu.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	$(PY) -c "import pathlib, site; pathlib.Path(site.getsitepackages()[0], 'mars-study.pth').write_text('$(CURDIR)\n')"
	$(PY) -m ipykernel install --sys-prefix --name mars-study --display-name "Python (mars-study)" >/dev/null
	touch $(STAMP)

test: $(STAMP)  ## all tests (about 15-20 minutes on 2 cores)
	$(PY) -m pytest

table1: $(STAMP)  ## the main job: the notebooks headless, Table 1 into reports/
	$(PY) -m helpers.study.pipeline --profile $(PROFILE) $(if $(BACKEND),--backend $(BACKEND))

# Speed figures of this machine (training, inference, CSV, smoke pipeline) → reports/bench.md; not part of `test`.
bench: $(STAMP)  ## speed figures of this machine into reports/bench.md
	$(PY) -m benchmarks.run

# The self-contained Kaggle kernel (dist/kaggle/): see README, "Submit on Kaggle".
kernel: $(STAMP)  ## the Kaggle kernel bundle in dist/kaggle/ (KAGGLE_USER=you names it)
	$(PY) -m helpers.kaggle bundle $(if $(KAGGLE_USER),--user $(KAGGLE_USER))

# A second venv with Kaggle's versions (requirements-kaggle.txt); the smoke kernel runs headless in it.
$(KAGGLE_STAMP): requirements-kaggle.txt
	@test -n "$(KAGGLE_PYTHON)" || { echo "make kaggle-check needs Python 3.12, as on Kaggle: install it (e.g. pyenv install 3.12) or pass KAGGLE_PYTHON=/path/to/python3.12"; exit 2; }
	$(KAGGLE_PYTHON) -m venv $(KAGGLE_VENV)
	$(KAGGLE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(KAGGLE_VENV)/bin/python -m pip install --quiet -r requirements-kaggle.txt
	touch $(KAGGLE_STAMP)

kaggle-check: $(KAGGLE_STAMP)  ## the kernel on Kaggle's versions (Python 3.12, TF 2.20): reports/kaggle_check.json
	$(KAGGLE_VENV)/bin/python -m helpers.kaggle check

clean-venv:  ## delete .venv and .venv-kaggle
	rm -rf $(VENV) $(KAGGLE_VENV)
