"""The invitation engine: the only door to ``mail/`` and ``calendar/``.

``engine`` classifies a message (is it an invitation, which event, which
conference link does it carry), rewrites it with a join block and computes the
next occurrence.  It is pure: bytes and settings in, facts and bytes out.
"""
