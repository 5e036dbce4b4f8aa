"""Logging set-up shared by every command: plain lines on stderr, libraries kept quiet.

The relay's own loggers (``webinar_proxy.*``) log from the configured level up.
Libraries log WARNING and above unless the level is DEBUG: httpx would otherwise log
every API call at INFO with its query string (organizers' addresses), and aiosmtpd
every SMTP command line.
"""

from __future__ import annotations

import logging
import os
import sys

#: Loggers of libraries that talk too much at INFO.
LIBRARY_LOGGERS = ("httpx", "httpcore", "mail.log", "aiohttp", "asyncio", "psycopg", "hpack")


def configure_logging(level: str | int = "INFO") -> None:
    """Log at ``level`` (a name like ``"INFO"`` or a number); journald adds its own time stamps."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=numeric, format=fmt, stream=sys.stderr, force=True)
    library_level = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
