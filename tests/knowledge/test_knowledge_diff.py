"""``passerelle kb diff``: what changed between two versions, for the changelog."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.harness.paths import CONTENUS, ROOT


def test_diff_lists_added_removed_and_relabelled(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    flow.write_text(
        flow.read_text(encoding="utf-8").replace(
            "label: Une maladie chronique", "label: Une maladie de longue durée", 1
        ),
        encoding="utf-8",
    )
    contacts = base_copy / "contacts.yaml"
    data = yaml.safe_load(contacts.read_text(encoding="utf-8"))
    removed = next(iter(data["contacts"]))
    del data["contacts"][removed]
    contacts.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    meta = base_copy / "meta.yaml"
    meta.write_text(re.sub(r"version: \S+", "version: 9.0.0", meta.read_text("utf-8")), "utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", "diff", str(CONTENUS), str(base_copy)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "-> 9.0.0" in out
    assert f"- contact « {removed} » supprimé" in out
    assert "« Une maladie chronique » -> « Une maladie de longue durée »" in out
    assert "rôle" not in out, "roles did not change"
