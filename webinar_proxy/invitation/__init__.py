"""The invitation engine: the only door to ``mail/`` and ``calendar/``.

``engine`` classifies a message (is it an invitation, which event, which
conference link does it carry), rewrites it with a join block and computes the
next occurrence.  It is pure: bytes and settings in, facts and bytes out.
``pool`` runs it in supervised worker processes (``worker``), bounded in time and
memory, so the event loop never does; the lifecycle calls the engine through it.
"""

from webinar_proxy.calendar import normalise_address
from webinar_proxy.invitation.engine import (
    Classification,
    EngineError,
    EngineOptions,
    Occurrence,
    check_link,
    classify,
    next_occurrence,
    remove_conference,
    rewrite,
)
from webinar_proxy.invitation.pool import (
    STOP_REASONS,
    Engine,
    EnginePool,
    EngineStopped,
    EngineUnavailable,
    InThreadEngine,
    default_workers,
)
from webinar_proxy.mail import may_carry_calendar
from webinar_proxy.mail.precheck import headers_may_carry_calendar

__all__ = [
    "STOP_REASONS",
    "Classification",
    "Engine",
    "EngineError",
    "EngineOptions",
    "EnginePool",
    "EngineStopped",
    "EngineUnavailable",
    "InThreadEngine",
    "Occurrence",
    "check_link",
    "classify",
    "default_workers",
    "headers_may_carry_calendar",
    "may_carry_calendar",
    "next_occurrence",
    "normalise_address",
    "remove_conference",
    "rewrite",
]
