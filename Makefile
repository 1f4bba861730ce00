# The two commands: `make demo` and `make test` (and `make test-fast` while working). All create .venv and
# install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: demo test test-fast lint install clean histories histories-keep bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/upgradectl demo $(ARGS)

# Lint, format check and type check first: a tree that fails them is not tested.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Three test files at a time (TEST_WORKERS=0: one process; most tests wait on servers and timers,
# so three share two cores: 10.5 minutes instead of 14); a file's tests stay together, so its
# module fixtures (an emulator, a dev server) start once. The 20 slowest tests are printed last.
TEST_WORKERS ?= 3
test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=20 $(ARGS)

# The fast tier, in one process and well under 30 s: the tests marked `fast` (every test of
# tests/rules/ and tests/models/, and the pure in-process modules elsewhere: command line input,
# read pacing, the import graph...). No server, no emulator, no lint; `make test` runs them too.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m fast -q --durations=10 $(ARGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache

# Record the upgrade histories that the replay test replays (tests/histories/*.json).
# `make histories ARGS="happy-path pause"` records only those scenarios; ARGS="pause --out /tmp/h"
# writes elsewhere (to try one without touching tests/histories/).
histories: $(STAMP)
	$(BIN)/python -m tests.record_histories $(ARGS)

# Before a change guarded by workflow.patched: keep today's recordings, which must go on
# replaying through the old code path (`make histories-keep PATCH=<patch id>`).
histories-keep:
	@test -n "$(PATCH)" || { echo "usage: make histories-keep PATCH=<patch id>"; exit 2; }
	mkdir -p tests/histories/before-$(PATCH)
	cp tests/histories/*.json tests/histories/before-$(PATCH)/

# Benchmarks (not part of `make test`): figures printed and written to bench/results/.
# `make bench ARGS=critical` runs one scenario (overhead, critical, concurrency, history, reads;
# rollout, about 20 minutes, only when asked for).
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)
