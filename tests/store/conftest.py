"""Fixtures for the store's contract tests: one store per test on each backend.

``pg_base_url`` and ``pg_url`` come from ``tests/conftest.py``.

SQLite gets a fresh file under ``tmp_path``.  PostgreSQL gets a fresh schema
(named after this process and a random suffix, dropped afterwards) on the server
at ``WEBINAR_PROXY_TEST_PG_URL`` (default ``postgresql://127.0.0.1:5432/test``, as
the current OS user, then as ``postgres``); PostgreSQL tests skip, saying why,
when no server answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from webinar_proxy.store import ConferenceStore, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/state/conferences.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ConferenceStore]:
    opened = await open_store(store_url, pool_size=4, lock_pool_size=8)
    try:
        yield opened
    finally:
        await opened.close()
