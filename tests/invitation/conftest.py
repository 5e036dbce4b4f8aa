"""Shared fixtures for the invitation engine tests.

The invitation corpus is part of the repository, in ``tests/fixtures/clients``
(``tests.support.fixtures`` says how to add an extra corpus from outside).
"""

from __future__ import annotations

import pytest

from webinar_proxy.invitation import EngineOptions


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions()
