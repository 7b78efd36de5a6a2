# Seglake developer commands. Every target creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: build run test test-faults mutation-check fuzz lint fmt check bench bench-repl clean docs

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(STAMP)

build: $(STAMP)
	mkdir -p build
	printf '#!/bin/sh\nexec "%s/$(BIN)/seglake" "$$@"\n' "$(CURDIR)" > build/seglake
	chmod +x build/seglake

run: build
	./build/seglake -data-dir ./data -access-key test -secret-key testsecret

# The AWS SDK for JavaScript v3, pinned by tests/js/package-lock.json, for the
# e2e tests that drive it with node.
JS_STAMP := tests/js/node_modules/.installed
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

test: build $(JS_STAMP)
	$(BIN)/python -m pytest -q --durations=25 tests

# Long fault tier (>= 1,000 simulated power cuts, >= 500 random kills): the
# figures every fault test reports go to build/fault-figures.jsonl and are
# printed at the end; docs/reliability.md records a run. The 500-kill test runs
# for ~20 min: pytest's 5-minute traceback dump (pyproject) would fire in it,
# and dumping the frames of running threads can crash the test process.
FIGURES := $(CURDIR)/build/fault-figures.jsonl
test-faults: build
	rm -f $(FIGURES)
	SEGLAKE_LONG_FAULTS=1 SEGLAKE_FAULT_FIGURES=$(FIGURES) $(BIN)/python -m pytest -q \
		-o faulthandler_timeout=3600 tests/faults; \
	status=$$?; $(BIN)/python -m tests.faults.figures $(FIGURES); exit $$status

# Remove one writer fsync at a time (test mode only) and show the power-loss
# test catches each.
mutation-check: build
	$(BIN)/python -m tests.faults.mutation_check

# The protocol fuzz targets (SigV4 canonicaliser/verifier, aws-chunked
# decoder, policy parser) with many more examples than make test gives them.
fuzz: $(STAMP)
	SEGLAKE_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q tests/unit/test_fuzz_protocol.py \
		tests/unit/test_fuzz_policy.py

lint: $(STAMP)
	$(BIN)/ruff check seglake tests benchmarks
	$(BIN)/ruff format --check seglake tests benchmarks
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format seglake tests benchmarks
	$(BIN)/ruff check --fix seglake tests benchmarks

check: lint test

# docs/compatibility.md is generated from the endpoint table (seglake/protocol/endpoints.py);
# tests/unit/test_compat_doc.py fails until this is re-run after a change.
docs: $(STAMP)
	$(BIN)/python -m seglake.frontend.compat --write

bench: build
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.metrics_cost
	$(BIN)/python -m benchmarks.sse_cost
	$(BIN)/python -m benchmarks.repl_throughput

# Replication between two servers on loopback: one-shot pull throughput
# (10,000 x 4 KiB, 20 x 64 MiB) against PUT and TCP ceilings, and B's lag
# under a steady write load on A (~4 minutes; docs/performance.md).
bench-repl: build
	$(BIN)/python -m benchmarks.repl_throughput

clean:
	rm -rf build $(VENV)
