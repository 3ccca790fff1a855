# Two commands for a fresh machine: `make demo` and `make test`. Each first builds the
# project environment in .venv/ (skipped when it is up to date with pyproject.toml and
# constraints.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# torch comes from the local CPU wheel (pip resolves torch==2.13.0 to it); torchrec is
# installed without dependencies because its metadata asks for the CUDA fbgemm-gpu, which
# does not load on CPU: fbgemm-gpu-cpu and torchrec's other needs are named here instead.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]' fbgemm-gpu-cpu tensordict torchmetrics tqdm pyre-extensions
	$(PY) -m pip install -q --no-deps torchrec==1.8.0
	touch $@

demo: $(STAMP)
	@bash scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf build .pytest_cache
