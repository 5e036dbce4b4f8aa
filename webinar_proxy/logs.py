"""Logging set-up shared by every command: plain lines on stderr, libraries kept quiet.

The relay's own loggers (``webinar_proxy.*``) log from the configured level up.
Libraries log WARNING and above unless the level is DEBUG: httpx would otherwise log
every API call at INFO with its query string (organizers' addresses), and aiosmtpd
every SMTP command line.

Every line logged while a message is being handled names it: the front doors put
the session id (and the MTA's queue id when known) into ``MESSAGE_CONTEXT`` with
``message_context``, and ``MessageContextFilter`` writes ``session=… queue_id=…``
in front of each line that does not already start with them.  Tasks started
meanwhile (the organizer notices) inherit the context.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

#: Loggers of libraries that talk too much at INFO.
LIBRARY_LOGGERS = ("httpx", "httpcore", "mail.log", "aiohttp", "asyncio", "psycopg", "hpack")


@dataclass(frozen=True, slots=True)
class MessageContext:
    session: str
    queue_id: str | None = None

    def prefix(self) -> str:
        return f"session={self.session}" + (f" queue_id={self.queue_id}" if self.queue_id else "")


#: The message being handled in this task, if any.
MESSAGE_CONTEXT: ContextVar[MessageContext | None] = ContextVar("message_context", default=None)


@contextlib.contextmanager
def message_context(session: str, queue_id: str | None = None) -> Iterator[MessageContext]:
    """Name ``session`` (and ``queue_id``) in every line logged inside the ``with`` block."""
    context = MessageContext(session, queue_id)
    token = MESSAGE_CONTEXT.set(context)
    try:
        yield context
    finally:
        MESSAGE_CONTEXT.reset(token)


class MessageContextFilter(logging.Filter):
    """Puts the current message's ``session=``/``queue_id=`` in front of each line."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = MESSAGE_CONTEXT.get()
        record.session = context.session if context else None
        record.queue_id = context.queue_id if context else None
        if context is not None and isinstance(record.msg, str) and not record.msg.startswith("session="):
            record.msg = context.prefix().replace("%", "%%") + " " + record.msg
        return True


def configure_logging(level: str | int = "INFO", *, worker: int | None = None) -> None:
    """Log at ``level`` (a name like ``"INFO"`` or a number); journald adds its own time stamps.

    A worker of a group tags its lines: ``webinar_proxy.smtp[worker 1]: …``."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    tag = "" if worker is None else f"[worker {worker}]"
    fmt = f"%(levelname)s %(name)s{tag}: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=numeric, format=fmt, stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MessageContextFilter())
    library_level = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
