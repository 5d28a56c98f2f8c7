# The README's commands. `make train` sets up .venv (CPU torch pinned) and trains PPO on CartPole-v1.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt

.PHONY: setup train test test-slow lint bench-sweep clean

$(BIN)/pgrun: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $(BIN)/pgrun

setup: $(BIN)/pgrun

train: setup
	$(BIN)/pgrun train $(ARGS)

# one pytest worker per core (pytest-xdist); a test module stays on one worker
XDIST := -n auto --dist loadfile

test: setup
	$(BIN)/python -m pytest -q $(XDIST) $(ARGS)

test-slow: setup
	$(BIN)/python -m pytest -q -m slow $(XDIST) $(ARGS)

bench-sweep: setup  # 10-seed PPO sweep, serial vs hydra/launcher=local (several minutes)
	$(BIN)/python benchmarks/sweep_parallel.py $(ARGS)

lint: setup
	$(BIN)/ruff check pgrun tests benchmarks hydra_plugins

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
