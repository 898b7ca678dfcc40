# Quick start: `make sim` (the main job) and `make test` (the whole suite). Both set up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp

.PHONY: setup sim test formal verilog synth clean help

help:
	@echo "make setup   - create .venv, install pinned deps and tools (idempotent)"
	@echo "make sim     - convert MiniLM, export golden vectors, generate Verilog, run cocotb+Verilator"
	@echo "make test    - the whole test suite (pytest: numerics, converter, RTL, cosim, flows)"
	@echo "make formal  - SymbiYosys proofs of the RTL"
	@echo "make verilog - Verilog for the default configuration into build/verilog"
	@echo "make synth   - sky130 synthesis report into build/synth (with make sim's measured activity when present)"

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/setup_tools.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	bash scripts/setup_tools.sh
	touch $@

sim: setup
	$(BIN)/spikemllm sim

test: setup
	$(BIN)/python -m pytest -q tests

formal: setup
	$(BIN)/python -m pytest -q -m formal tests

verilog: setup
	$(BIN)/spikemllm verilog --out build/verilog

synth: setup
	$(BIN)/spikemllm synth --target sky130 $(if $(wildcard build/sim/activity.json),--activity build/sim/activity.json) --out build/synth

clean:
	rm -rf build
