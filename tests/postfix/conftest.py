"""Private Postfix instances (one per wiring, shared by a module) with the relay behind them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postfix import PostfixInstance, fresh, postfix_instance, skip_reason


@pytest.fixture(scope="module")
def _after_queue_instance() -> Iterator[PostfixInstance]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with postfix_instance("after-queue") as instance:
        yield instance


@pytest.fixture(scope="module")
def _before_queue_instance() -> Iterator[PostfixInstance]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with postfix_instance("before-queue") as instance:
        yield instance


@pytest.fixture
def after_queue(_after_queue_instance: PostfixInstance) -> PostfixInstance:
    return fresh(_after_queue_instance)


@pytest.fixture
def before_queue(_before_queue_instance: PostfixInstance) -> PostfixInstance:
    return fresh(_before_queue_instance)
