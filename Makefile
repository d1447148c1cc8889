# Two commands matter: `make train` (the main job) and `make test` (the whole suite).
# Each creates the virtual environment on first use; nothing else needs installing first.
# Offline? Point the loader at a local copy: `export CIFAR10_NPZ=/path/to/cifar10.npz`.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install train test lab lint clean export test-widgets-7 browser-check colab-check

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

# Colab ships ipywidgets 7.7: the widget tests again with 7.7 shadowing the venv's 8.x
# (EXPECT_IPYWIDGETS makes the run fail if 7.7 is not the one imported). About 30 s.
W7 := $(VENV)/ipywidgets-7.7
test-widgets-7: $(STAMP)
	test -d $(W7) || $(PY) -m pip install --quiet --no-deps --target $(W7) \
		"ipywidgets==7.7.*" "ipython_genutils==0.2.*"
	EXPECT_IPYWIDGETS=7.7 PYTHONPATH=$(W7):$(CURDIR) MPLBACKEND=Agg $(PY) -m pytest -q \
		tests/test_widget_support.py tests/test_rf_widgets.py tests/test_augment_widgets.py \
		tests/test_conv_drawing.py $(ARGS)

# Every widget of lessons 01-03 in JupyterLab + headless Chromium (apt-get install -y chromium;
# pip install playwright). About 3-4 minutes; run it before every change to a widget.
browser-check: $(STAMP)
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet playwright
	$(PY) tests/browser/check_widgets.py $(ARGS)

# Every lesson as Colab runs it: the library imported from a copy outside the checkout, the
# working folder empty, committed files fetched through $$COURSE_FILES_URL (here the checkout
# itself, as file://, instead of GitHub). Fast mode, execution errors only. About 3 minutes.
COLAB := $(CURDIR)/.colab-check
colab-check: $(STAMP)
	rm -rf $(COLAB) && mkdir -p $(COLAB)/site $(COLAB)/work
	cp -r course_lib $(COLAB)/site/ && cp lessons/*.ipynb $(COLAB)/work/
	cd $(COLAB)/work && COURSE_FAST=1 PYTHONPATH=$(COLAB)/site COURSE_FILES_URL=file://$(CURDIR) \
		MPLBACKEND=Agg $(abspath $(PY)) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
		--rootdir=. -c /dev/null *.ipynb $(ARGS)
	rm -rf $(COLAB)

# Copy every lesson's #@save cells into the library (tools/export_lessons.py); run it after
# editing such a cell. `make test` fails while the library and the lessons differ.
export: $(STAMP)
	$(PY) tools/export_lessons.py

lab: $(STAMP)  ## open the course in JupyterLab
	$(VENV)/bin/jupyter lab lessons/

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
