"""Shared fixtures for the invitation engine tests.

The invitation corpus is part of the repository, in ``tests/fixtures/clients``
(``tests.support.fixtures`` says how to add an extra corpus from outside).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from webinar_proxy.engine import EngineOptions

LINK = "https://events.webinar.ru/demo-org/1234567"
OTHER_LINK = "https://events.webinar.ru/demo-org/7654321"
#: A fixed "now" before every corpus event, so each has an upcoming occurrence.
EARLY = datetime(1990, 1, 1, tzinfo=UTC)


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions()
