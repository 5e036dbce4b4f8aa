"""The typed failures of the Webinar API client.

Callers decide by type: ``TemporaryError`` means "try the whole thing again later"
(the relay answers 451), everything else is a definite answer from the platform.
No error ever carries the API token: messages are built from the operation name,
the HTTP status and the platform's own error text only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class WebinarError(Exception):
    """Any failure of a Webinar API operation.

    ``operation`` is ``"METHOD /path"`` (ids, never the token); ``status`` the HTTP
    status when there was a response; ``message`` the platform's error text.
    """

    def __init__(self, message: str, *, operation: str = "", status: int | None = None) -> None:
        self.message = message
        self.operation = operation
        self.status = status
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.operation}: " if self.operation else ""
        status = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{status}{self.message}".strip()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()!r})"


class TemporaryError(WebinarError):
    """Retryable: connection failure, timeout, 5xx, 429 or a garbled answer.

    Raised once the per-call deadline is spent; the caller should defer the work.
    ``maybe_done`` is True when a creating call (not retried by the client) failed
    after its request may have reached the platform: the platform may have carried
    it out although no answer arrived, so the caller should look before creating again.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
        maybe_done: bool = False,
    ) -> None:
        self.maybe_done = maybe_done
        super().__init__(message, operation=operation, status=status)


class NotFoundError(WebinarError):
    """404: the event, session or participation does not exist (any more)."""


class ConflictError(WebinarError):
    """409: e.g. a second session on a non-series event, or a duplicate registration."""


class RejectedError(WebinarError):
    """Another 4xx: the platform refused the request's content.

    ``field_errors`` maps a field name to the platform's code for it
    (``{"email": "ERROR_EMPTY"}``); empty when the platform named none.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
        field_errors: Mapping[str, Any] | None = None,
    ) -> None:
        self.field_errors: Mapping[str, Any] = MappingProxyType(dict(field_errors or {}))
        super().__init__(message, operation=operation, status=status)

    def _describe(self) -> str:
        text = super()._describe()
        if self.field_errors:
            fields = ", ".join(f"{name}={code}" for name, code in self.field_errors.items())
            text = f"{text} ({fields})"
        return text


class UnauthorizedError(WebinarError):
    """401/403: the token is missing, wrong, revoked, or the plan has no API access."""
