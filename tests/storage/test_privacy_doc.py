"""docs/privacy.md documents exactly the schema the server creates: every table and column,
none extra, and its generated tables are up to date."""

from __future__ import annotations

import pytest

from bot.storage import privacy_doc


def test_every_table_and_column_is_documented_and_none_extra() -> None:
    actual = privacy_doc.schema()
    assert {"sessions", "consents", "barometer_ratings", "followups", "webhook_outbox"} <= set(
        actual
    )
    privacy_doc.check(actual)  # raises on any undocumented or stale table or column
    assert set(privacy_doc.TABLES) == set(actual)
    for table, columns in actual.items():
        assert set(privacy_doc.TABLES[table].columns) == set(columns), table


def test_privacy_md_matches_the_schema() -> None:
    document = privacy_doc.DOC.read_text(encoding="utf-8")
    part = privacy_doc.generated_part(document)
    assert part == privacy_doc.render(), "run: python -m bot.storage.privacy_doc"
    for table, columns in privacy_doc.schema().items():
        assert f"`{table}`" in part
        for column in columns:
            assert f"| `{column}` |" in part


def test_a_new_column_without_purpose_is_refused() -> None:
    actual = privacy_doc.schema()
    actual["sessions"] = [*actual["sessions"], "telegram_username"]
    with pytest.raises(privacy_doc.SchemaMismatch, match=r"sessions\.telegram_username"):
        privacy_doc.render(actual)
