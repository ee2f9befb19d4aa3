# Two entry points for a fresh machine: `make demo` (the main job) and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 are the pair that installs from this machine's local wheel files
# (torch 2.13.0 alone is smaller, but PyPI's torchvision does not import beside it).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-slow lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[vision,dev,distributed,timm]'
	touch $@

# The main job: ResNet-20 on CIFAR-10 at 70% of its ONNX Runtime latency (batch 1, 1 thread), search → prune →
# fine-tune → export → report, beside uniform-internal at the same budget and rounding, with --quick settings (a
# short search and fine-tune; minutes on 2 cores). --resume: a killed or finished demo is continued or shown
# again, never overwritten.
demo: $(BIN)/.installed
	$(BIN)/gnnrl compress --model resnet20 --metric latency --budget 0.7 --quick --out runs/demo --resume

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/eval_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
