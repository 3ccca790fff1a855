# Two commands for a fresh machine: `make demo` and `make test`. Each first builds the
# project environment in .venv/ (skipped when it is up to date with pyproject.toml and
# constraints.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean system-packages

install: $(STAMP) system-packages

# The stores' tests and the demo start real redis-server processes (plain, TLS, a cluster);
# the report's tests render it in headless Chromium. Where the Debian packages are missing
# they are installed (as root, or through sudo).
SYSTEM_PACKAGES := redis-server:redis-server redis-cli:redis-tools openssl:openssl chromium:chromium
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do command -v $${pair%%:*} >/dev/null || \
	  missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "installing$$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

# torch comes from the local CPU wheel (pip resolves torch==2.13.0 to it); torchrec is
# installed without dependencies because its metadata asks for the CUDA fbgemm-gpu, which
# does not load on CPU: fbgemm-gpu-cpu and torchrec's other needs are named here instead.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray]' fbgemm-gpu-cpu tensordict torchmetrics tqdm pyre-extensions
	$(PY) -m pip install -q --no-deps torchrec==1.8.0
	touch $@

demo: install
	@bash scripts/demo.sh

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf build .pytest_cache
