"""Bounds on how much MIME structure the scanner is willing to read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MimeLimits:
    #: Messages above this size are not scanned (the SMTP edge has its own, lower cap).
    max_message_bytes: int = 64 * 1024 * 1024
    #: Nesting of multiparts and attached messages.
    max_depth: int = 12
    #: MIME entities in one message, multiparts included.
    max_parts: int = 250
    #: Decoded size of one calendar part.
    max_calendar_bytes: int = 4 * 1024 * 1024
    #: Calendar parts (inline and attached copies) in one message.
    max_calendar_parts: int = 8
