# The two commands of the README. Each creates .venv when missing and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO := data/demo

.PHONY: demo test lint bench-speed clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/detector generate --out $(DEMO)/logs.parquet
	$(BIN)/detector score $(DEMO)/logs.parquet --out $(DEMO)/alerts.parquet
	$(BIN)/detector score $(DEMO)/logs.parquet --format ocsf --out $(DEMO)/findings.ocsf.jsonl --top 0
	$(BIN)/detector report $(DEMO)/alerts.parquet --log $(DEMO)/logs.parquet --out $(DEMO)/report.html

test: $(INSTALLED)
	$(BIN)/python -m pytest -n 2

lint: $(INSTALLED)
	$(BIN)/ruff check detector synthetic_logs tomlcheck tests benchmarks
	$(BIN)/ruff format --check detector synthetic_logs tomlcheck tests benchmarks

# Speed and memory figures of the issues (slow: ~10M events).
bench-speed: $(INSTALLED)
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_score.py
	$(BIN)/python benchmarks/bench_engine.py --state-day

clean:
	rm -rf $(VENV) data .pytest_cache
