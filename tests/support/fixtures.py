"""Where the test suite finds invitation mails.

* ``tests/fixtures/clients``: the project's own corpus, written for these tests in the
  styles of the mail clients and calendar servers it must read (see its README.md).
  Every file must be there: a missing one fails the test, it never skips.
* ``WEBINAR_PROXY_EXTRA_CORPUS``: an optional directory of more mails (``.eml``, ``.ics``,
  ``.mbox``).  When set, the corpus-wide property tests run over its files too; when it
  is set to a directory that does not exist, those tests fail instead of silently
  running without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CLIENTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "clients"
EXTRA_CORPUS_ENV = "WEBINAR_PROXY_EXTRA_CORPUS"
SUFFIXES = (".eml", ".ics", ".mbox")


def client_fixture_path(name: str) -> Path:
    path = CLIENTS_DIR / name
    if not path.is_file():
        pytest.fail(f"missing fixture: {path} (the corpus is part of the repository)")
    return path


def client_fixture(name: str) -> bytes:
    """The bytes of one file of the in-repository corpus."""
    return client_fixture_path(name).read_bytes()


def client_fixture_names() -> list[str]:
    return sorted(p.name for p in CLIENTS_DIR.iterdir() if p.suffix in SUFFIXES)


def extra_corpus_dir() -> Path | None:
    """The directory named by WEBINAR_PROXY_EXTRA_CORPUS, or None when it is not set."""
    value = os.environ.get(EXTRA_CORPUS_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def corpus_files() -> list[tuple[str, Path]]:
    """(test id, path) of every in-repository file, then of every extra-corpus file."""
    files = [(f"clients/{name}", CLIENTS_DIR / name) for name in client_fixture_names()]
    extra = extra_corpus_dir()
    if extra is not None:
        if not extra.is_dir():
            raise pytest.UsageError(f"{EXTRA_CORPUS_ENV}={extra}: no such directory")
        files += [(f"extra/{p.name}", p) for p in sorted(extra.iterdir()) if p.suffix in SUFFIXES]
    return files
