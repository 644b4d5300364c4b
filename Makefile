# Two commands for a fresh machine (README): `make table1` and `make test`. Each sets itself up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= default

.PHONY: setup test table1 bench kernel clean-venv

setup: $(STAMP)

# The virtual environment, rebuilt whenever the pins change; the project kernel for JupyterLab/papermill.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name mars-study --display-name "Python (mars-study)" >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

table1: $(STAMP)
	$(PY) -m helpers.pipeline --profile $(PROFILE)

# Speed figures of this machine (training, inference, CSV, smoke pipeline) → reports/bench.md; not part of `test`.
bench: $(STAMP)
	$(PY) -m benchmarks.run

# The self-contained Kaggle kernel (dist/kaggle/): see README, "Submit on Kaggle".
kernel: $(STAMP)
	$(PY) -m helpers.kaggle bundle

clean-venv:
	rm -rf $(VENV)
