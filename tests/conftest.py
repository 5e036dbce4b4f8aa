"""Fixtures shared by every test package.

PostgreSQL: ``pg_base_url`` is a server that answers (``WEBINAR_PROXY_TEST_PG_URL``,
default ``postgresql://127.0.0.1:5432/test`` as the current OS user, then as
``postgres``), or a skip that says why none did; ``pg_url`` is a store URL whose
tables live in a fresh schema of this test alone, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest

PG_URL_ENV = "WEBINAR_PROXY_TEST_PG_URL"
PG_DEFAULT_URLS = ("postgresql://127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """A PostgreSQL URL that connects, or a skip that says why none did."""
    candidates = (os.environ[PG_URL_ENV],) if os.environ.get(PG_URL_ENV) else PG_DEFAULT_URLS
    failures = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return url
        except psycopg.Error as exc:
            failures.append(f"{url}: {' '.join(str(exc).split())}")
    pytest.skip(f"no PostgreSQL server reachable (set {PG_URL_ENV}): " + "; ".join(failures))


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}', safe='')}"


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    """A store URL whose tables live in a schema of this test alone."""
    schema = f"wp_store_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_search_path(pg_base_url, schema)
    finally:
        with psycopg.connect(pg_base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
