"""The invitation engine: the only door to ``mail/`` and ``calendar/``.

``engine`` classifies a message (is it an invitation, which event, which
conference link does it carry), rewrites it with a join block and computes the
next occurrence.  It is pure: bytes and settings in, facts and bytes out.
"""

from webinar_proxy.calendar import normalise_address
from webinar_proxy.mail import may_carry_calendar
from webinar_proxy.mail.precheck import headers_may_carry_calendar

__all__ = ["headers_may_carry_calendar", "may_carry_calendar", "normalise_address"]
