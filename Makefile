# ecmem: `make demo` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system venv demo test test-unit test-grid test-integration bench bench-scale soak fio chaos lint typecheck check clean

setup: system $(STAMP)

system:
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench,examples,chaos]'
	@# The mpi4py wheel loads MPICH by its ABI name, libmpi.so.12; Debian calls it libmpich.so.12.
	@lib=$$(/sbin/ldconfig -p | awk '/libmpich\.so\.12 /{print $$NF; exit}'); \
	  if [ -n "$$lib" ]; then ln -sf "$$lib" $(VENV)/lib/libmpi.so.12; fi
	@touch $(STAMP)
	@echo "installed into $(VENV); '. $(VENV)/bin/activate' puts ecmem on your PATH"

venv: $(STAMP)

demo: setup
	$(BIN)/python scripts/demo.py

test: setup lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

# The client against in-process storage nodes (loopback, knobs to break, hang or slow
# them) and a real ZooKeeper: the write protocol's cases, each well under a second.
test-grid: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/grid

test-integration: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/heal.py
	$(BIN)/python bench/mount.py

# Long run: a million acknowledged 4 KiB writes, watching memory (WRITES=N to change).
WRITES ?= 1000000
soak: setup
	$(BIN)/python bench/soak.py --writes $(WRITES)

# fio through the mount at full size: 1 GiB per job, sequential 1 MiB and random 4 KiB;
# and a 1 GiB file through two mounts with M nodes killed.
fio: setup
	ECMEM_FIO_MIB=1024 ECMEM_MOUNT_BIG_MIB=1024 $(BIN)/python -m pytest -q -p no:cacheprovider \
		--timeout 7200 tests/integration/test_fio.py \
		tests/integration/test_mount_durable.py::test_big_file_survives_m_nodes_through_both_mounts

# Long runs: the chaos scenarios on namespaced hosts (SEED=N replays one; reports in
# chaos/out/), then 500 seeded writer crashes and 50 with M of the region's nodes
# killed under the writer.
SEED ?=
# The control plane with many regions: coordinator CPU, status and listing times, a
# node's death (REGIONS=100000 by default; several minutes, most of it creating them).
bench-scale: setup
	$(BIN)/python bench/scale.py $(if $(REGIONS),--regions $(REGIONS))

chaos: setup
	$(BIN)/python -m chaos.run --mib 1024 $(if $(SEED),--seed $(SEED))
	ECMEM_CRASH_RUNS=500 ECMEM_CRASH_KILL_RUNS=50 $(BIN)/python -m pytest -q -p no:cacheprovider -s --timeout 3600 \
		tests/integration/test_crash_consistency.py

lint: $(STAMP)
	$(BIN)/ruff check ecmem coordinator storage_node chaos tests bench scripts examples
	$(BIN)/ruff format --check ecmem coordinator storage_node chaos tests bench scripts examples

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .ecmem bench/out .pytest_cache .mypy_cache .ruff_cache .hypothesis
