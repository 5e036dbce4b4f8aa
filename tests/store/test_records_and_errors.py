"""Record normalisation, URL handling, and how failures surface (``StoreError``)."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest

from webinar_proxy.store import (
    ConferenceRecord,
    StoreConfigError,
    StoreError,
    open_store,
)
from webinar_proxy.store.records import redact_url


def test_records_normalise_to_utc_and_lower_case_organizer():
    record = ConferenceRecord(
        "Boss@Example.ORG",
        "u",
        state="active",
        booked_start=datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=3))),
        cancelled_occurrences=[datetime(2030, 1, 8, 9, tzinfo=UTC)],
    )
    assert record.organizer == "boss@example.org"
    assert record.booked_start == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert record.booked_start.tzinfo is UTC
    assert isinstance(record.cancelled_occurrences, tuple)
    assert dataclasses.replace(record, sequence=2).booked_start.tzinfo is UTC


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        ConferenceRecord("a@example.org", "u", booked_end=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        ConferenceRecord("a@example.org", "u", cancelled_occurrences=(datetime(2030, 1, 1),))


def test_unknown_state_is_refused():
    with pytest.raises(ValueError):
        ConferenceRecord("a@example.org", "u", state="gone")


def test_redact_url():
    assert redact_url("postgresql://relay:pa%40ss@db:5432/x") == "postgresql://relay:***@db:5432/x"
    assert redact_url("postgresql://db/x") == "postgresql://db/x"


async def test_sqlite_creates_its_directory_and_uses_wal(tmp_path):
    path = tmp_path / "deep" / "er" / "state.db"
    store = await open_store(f"sqlite:///{path}")
    await store.close()
    with sqlite3.connect(path) as conn:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    conn.close()
    assert mode == "wal"


async def test_sqlite_failure_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="sqlite store"):
        await open_store(f"sqlite:///{blocker}/state.db")


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path):
    garbage = tmp_path / "state.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        await open_store(f"sqlite:///{garbage}")


@pytest.mark.parametrize(
    "url", ["sqlite://relative.db", "sqlite:///tmp/dir/", "mysql://x/y", "postgresql://h/d?bad=1"]
)
async def test_unusable_urls_are_config_errors(url):
    with pytest.raises(StoreConfigError):
        await open_store(url)


async def test_unreachable_postgresql_is_a_store_error_without_the_password():
    with pytest.raises(StoreError) as caught:
        await open_store("postgresql://relay:hunter2-secret@127.0.0.1:1/x", connect_timeout=2)
    assert "hunter2-secret" not in str(caught.value)
    assert "relay:***@127.0.0.1:1" in str(caught.value)
