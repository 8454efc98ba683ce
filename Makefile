# The two commands: `make demo` and `make test`. Both create .venv when it is missing and
# install the pinned dependencies (requirements/constraints.txt) before they run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export VTK_DEFAULT_OPENGL_WINDOW ?= vtkEGLRenderWindow
export QT_QPA_PLATFORM ?= offscreen

.PHONY: demo test bench reproduce clean-demo lint

$(STAMP): pyproject.toml requirements/dev.txt requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The backend writes cases, predictions, metrics and montages; the scene layer (slicer-core,
# headless) turns the prediction into demo-output/scene.mrml and Red/Yellow/Green PNGs.
demo: $(STAMP)
	$(PY) -m MultiModalSegLib demo --output demo-output
	@if [ -f demo-output/prediction/result.json ]; then \
		$(PY) -m MultiModalSeg.MultiModalSegSceneLib.scene_writer demo-output/prediction \
			--output demo-output/scene.mrml --pictures demo-output; \
	else echo "no bundled model: demo-output has phantoms only"; fi

test: $(STAMP)
	$(PY) -m pytest -q Testing

bench: $(STAMP)
	$(PY) bench/run_all.py --output bench-output

# Trains every arm of the papers' tables on phantoms (three seeds each), evaluates them on held-out
# phantoms, gives each claim a verdict and writes docs/results.md with its PNGs (about 3 core-hours on
# the development machine; docs/reproduction.md). Resumable and runnable in chunks: finished trainings
# and evaluations in reproduce-output/ are kept, e.g.
#   make reproduce REPRODUCE_ARGS="--only maml --seeds 1337 --max-minutes 120"
reproduce: $(STAMP)
	$(PY) tools/reproduce.py --output docs/results.md $(REPRODUCE_ARGS)

clean-demo:
	rm -rf demo-output
