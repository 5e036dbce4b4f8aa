"""The Webinar (MTS Link) user API v3: the client the relay uses, and a fake server.

``WebinarClient`` (``client.py``) is the only code that talks to the platform; its
errors are in ``errors.py`` and its typed values in ``models.py``.  ``fake.py`` is an
in-memory aiohttp server speaking the same API, for tests, demos and trials; it is
imported on demand, not from here.
"""

from webinar_proxy.webinar.client import WebinarClient
from webinar_proxy.webinar.errors import (
    ConflictError,
    NotFoundError,
    RejectedError,
    TemporaryError,
    UnauthorizedError,
    WebinarError,
)
from webinar_proxy.webinar.models import (
    AccessSettings,
    CreatedEvent,
    CreatedSession,
    Event,
    EventSession,
    EventType,
    Invitee,
    Member,
    Participation,
    PlatformTime,
    Registration,
    Role,
    Timezone,
)

__all__ = [
    "AccessSettings",
    "ConflictError",
    "CreatedEvent",
    "CreatedSession",
    "Event",
    "EventSession",
    "EventType",
    "Invitee",
    "Member",
    "NotFoundError",
    "Participation",
    "PlatformTime",
    "Registration",
    "RejectedError",
    "Role",
    "TemporaryError",
    "Timezone",
    "UnauthorizedError",
    "WebinarClient",
    "WebinarError",
]
