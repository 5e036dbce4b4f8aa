"""The logging context: every line logged while a message is handled names its session."""

from __future__ import annotations

import asyncio
import io
import logging

from webinar_proxy.logs import MESSAGE_CONTEXT, MessageContextFilter, message_context


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(MessageContextFilter())
    logger = logging.getLogger("webinar_proxy.test_log_context")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_lines_inside_a_message_name_its_session_and_queue_id() -> None:
    logger, out = _logger()
    logger.info("before uid=%s", "a")
    with message_context("s1.1", "4XyZ1"):
        logger.info("uid=%s action=%s 100%%", "b", "ensure")
        logger.info("session=%s outcome=relayed", "s1.1")  # written by hand: left as it is
    logger.info("after")
    assert out.getvalue().splitlines() == [
        "before uid=a",
        "session=s1.1 queue_id=4XyZ1 uid=b action=ensure 100%",
        "session=s1.1 outcome=relayed",
        "after",
    ]
    assert MESSAGE_CONTEXT.get() is None


async def test_tasks_started_inside_a_message_keep_its_context() -> None:
    logger, out = _logger()

    async def notice() -> None:
        await asyncio.sleep(0)
        logger.info("notice sent")

    with message_context("s2.3"):
        task = asyncio.ensure_future(notice())
    await task
    assert out.getvalue().splitlines() == ["session=s2.3 notice sent"]
