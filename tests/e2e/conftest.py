"""Every test under ``tests/e2e/`` runs real processes or several real servers together: marked
``e2e`` so ``pytest -m "not e2e"`` gives the quick layer tests alone."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)
