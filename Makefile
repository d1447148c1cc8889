# Two commands matter: `make train` (the main job) and `make test` (the whole suite).
# Each creates the virtual environment on first use; nothing else needs installing first.
# Offline? Point the loader at a local copy: `export CIFAR10_NPZ=/path/to/cifar10.npz`.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install train test lab lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

train: $(STAMP)  ## train the final model (pass options with ARGS="--epochs 3 --seed 1")
	$(PY) -m course_lib train $(ARGS)

test: $(STAMP)  ## ruff, unit tests, and every lesson in fast mode under strict nbval
	$(VENV)/bin/ruff check .
	COURSE_FAST=1 $(PY) -m pytest tests lessons --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(ARGS)

lab: $(STAMP)  ## open the course in JupyterLab
	$(VENV)/bin/jupyter lab lessons/

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
