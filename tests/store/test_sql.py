"""The SQL the backends share: one text, rendered per driver, and one schema refusal."""

from __future__ import annotations

import dataclasses

import pytest

from webinar_proxy.store import postgres, sql, sqlite
from webinar_proxy.store.sql import STATEMENTS


def test_rendering_for_psycopg_changes_only_the_placeholders() -> None:
    rendered = STATEMENTS.rendered("%s")
    for field in dataclasses.fields(STATEMENTS):
        qmark, pyformat = getattr(STATEMENTS, field.name), getattr(rendered, field.name)
        assert "?" not in pyformat
        assert pyformat.count("%s") == qmark.count("?")
        assert pyformat.replace("%s", "?") == qmark


def test_a_literal_percent_is_doubled_for_psycopg() -> None:
    statements = dataclasses.replace(STATEMENTS, get="SELECT 1 WHERE 'a%' LIKE ?")
    assert statements.rendered("%s").get == "SELECT 1 WHERE 'a%%' LIKE %s"


def test_both_backends_create_the_same_indexes_in_the_same_migration() -> None:
    def indexes(migrations: tuple[tuple[str, ...], ...]) -> list[list[str]]:
        return [[s for s in step if s.startswith("CREATE INDEX")] for step in migrations]

    assert indexes(sqlite.MIGRATIONS) == indexes(postgres.MIGRATIONS)
    assert sql.INDEX_REGISTRATION_QUEUE_ORDER in sqlite.MIGRATIONS[2]


@pytest.mark.parametrize(("current", "refused"), [(0, False), (3, False), (4, True)])
def test_only_a_newer_schema_is_refused(current: int, refused: bool) -> None:
    reason = sql.newer_schema(current, 3)
    assert (reason is not None) == refused
    if refused:
        assert f"version {current}, newer than this program knows (3)" in reason
