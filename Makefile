# The two commands: `make demo` and `make test`. Both create .venv when it is missing and
# install the pinned dependencies (requirements/constraints.txt) before they run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export VTK_DEFAULT_OPENGL_WINDOW ?= vtkEGLRenderWindow
export QT_QPA_PLATFORM ?= offscreen

.PHONY: demo test bench reproduce gpu-check clean-demo lint

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

# The GPU check (tools/gpu_check.py): bundled models CPU fp32 vs GPU AMP, a 512x512x200 CT, the CUDA
# SDF, AMP training steps and 200 fine-tuning iterations, in at most 8 minutes on one H100; writes
# gpu-check-output/gpu-check.json and .md. No venv step: a GPU machine may have no registry, so it runs
# with .venv's Python when there is one, else python3 (which must hold torch, SimpleITK and edt).
GPU_CHECK_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_OUTPUT ?= gpu-check-output
gpu-check:
	PYTHONUNBUFFERED=1 $(GPU_CHECK_PY) tools/gpu_check.py --device cuda --budget-seconds 420 --output $(GPU_CHECK_OUTPUT)

clean-demo:
	rm -rf demo-output
