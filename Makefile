# mmaffect developer commands. `make demo` and `make test` build the virtual
# environment on first use (about 2 minutes), then reuse it.
VENV       ?= .venv
PYTHON     ?= python3
PY         := $(VENV)/bin/python
# Installed first so that pip never resolves torch to a multi-GB CUDA build.
# Elsewhere use e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR   ?= demo_output
PYTEST_ARGS ?=

.PHONY: demo test env clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/mmaffect demo --workdir $(DEMO_DIR)

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info src/*.egg-info
