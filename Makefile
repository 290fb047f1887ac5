# Two commands for a newcomer: `make run` and `make test`. Each creates its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: run chat test lint typecheck bench soak clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/passerelle serve

chat: $(STAMP)
	$(BIN)/passerelle chat

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/passerelle kb check contenus
	$(BIN)/pytest

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
