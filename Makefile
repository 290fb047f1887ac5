# Two commands for a newcomer: `make run` (runtime only) and `make test` (everything its tests
# need, Debian's Chromium included). Both install into the same virtualenv, once.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

RUNTIME = $(VENV)/.runtime

.PHONY: run chat test lint typecheck bench soak clean browser postgres

# `make run` installs the runtime dependencies only (no test or lint tool), with pip's progress.
$(RUNTIME): pyproject.toml constraints.txt
	@echo "→ Installation de Passerelle dans $(VENV) (la première fois seulement)…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --quiet --upgrade pip
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e .
	touch $(RUNTIME)

# Everything `make test` needs: the runtime, then the development tools.
$(STAMP): $(RUNTIME)
	@echo "→ Installation des outils de développement (tests, lint, typage)…"
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(RUNTIME)
	$(BIN)/passerelle serve

# The web chat tests need Debian's Chromium: installed with apt-get when root, else one line.
browser:
	@sh scripts/ensure-browser.sh

# The PostgreSQL tests start a throwaway cluster with Debian's initdb/pg_ctl: installed with
# apt-get when root and missing, else one line.
postgres:
	@sh scripts/ensure-postgres.sh

chat: $(RUNTIME)
	$(BIN)/passerelle chat

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench examples
	$(BIN)/ruff format --check bot tests bench examples

# bench/ and examples/ are scripts (they import each other by file name): a run of their own.
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy bench examples

# The suite runs in 4 pytest-xdist workers: most tests wait on servers and subprocesses, so
# even 2 cores are kept busy; every test is safe in parallel (ports: tests/harness/ports.py).
# Tests are handed out one at a time, the longest first (tests/conftest.py LONGEST), so no long
# test starts last.
WORKERS ?= 4

test: lint typecheck browser postgres
	$(BIN)/passerelle kb check contenus
	$(BIN)/pytest -n $(WORKERS) --maxschedchunk 1

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/charts.py
	$(BIN)/python bench/understanding.py

# The long reliability runs (docs/reliability.md): 1 000 people × 20 turns through the webhook
# (about 3 minutes), then the tests marked slow. `make test` (what CI runs) includes the slow
# tests too: they are bounded (about a minute in all) and CI has time; only the full load run is
# kept out of it. Paste the results into docs/reliability.md.
soak: $(STAMP)
	$(BIN)/python bench/load.py --users 1000 --turns 20
	$(BIN)/pytest -m slow

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
