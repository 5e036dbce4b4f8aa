"""Shared fixtures for the invitation engine tests.

The real-world corpus lives outside the repository, in ``../shared/corpus/itip``
(read-only); tests that need it skip with a clear reason when it is absent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from webinar_proxy.engine import EngineOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = (REPO_ROOT / "../shared/corpus/itip").resolve()
LINK = "https://events.webinar.ru/demo-org/1234567"
OTHER_LINK = "https://events.webinar.ru/demo-org/7654321"
#: A fixed "now" before every corpus event, so each has an upcoming occurrence.
EARLY = datetime(1990, 1, 1, tzinfo=UTC)


def corpus_path(name: str) -> Path:
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"invitation corpus not found at {CORPUS_DIR}")
    path = CORPUS_DIR / name
    if not path.is_file():
        pytest.skip(f"corpus file {name} is missing")
    return path


def corpus_bytes(name: str) -> bytes:
    return corpus_path(name).read_bytes()


def corpus_names() -> list[str]:
    if not CORPUS_DIR.is_dir():
        return []
    return sorted(p.name for p in CORPUS_DIR.iterdir() if p.suffix in (".eml", ".ics", ".mbox"))


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions()
