"""SMTP replies this relay writes itself (RFC 5321 codes, RFC 3463 enhanced codes).

Replies that come from the next hop are relayed as the next hop wrote them; only
the situations where the relay has to speak for itself are named here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500


# 4.3.0: other or undefined mail system status — our own fault, try again later.
TEMPFAIL_INTERNAL = Reply(451, "4.3.0 Temporary failure in the relay, try again later")
# 4.4.1: no answer from host; 4.4.2: bad connection (RFC 3463 §3.5).
TEMPFAIL_NEXT_HOP_UNREACHABLE = Reply(451, "4.4.1 Next hop unreachable, try again later")
TEMPFAIL_NEXT_HOP_LOST = Reply(451, "4.4.2 Connection to the next hop lost, try again later")
TEMPFAIL_DEADLINE = Reply(451, "4.4.7 Processing took too long, try again later")
TEMPFAIL_SHUTTING_DOWN = Reply(421, "4.3.2 Relay shutting down, try again later")
IDLE_TIMEOUT = Reply(421, "4.4.2 Idle too long, closing connection")
# 5.7.1: delivery not authorized (RFC 3463 §3.8).
CLIENT_NOT_ALLOWED = Reply(554, "5.7.1 Client not authorized to use this relay")
# 4.7.0: other security or policy status; 4.5.3: too many recipients (RFC 3463 §3.6, §3.8).
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0 Too many connections, try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3 Too many recipients")
# 5.3.4: message too big for system.
MESSAGE_TOO_BIG = Reply(552, "5.3.4 Message size exceeds the fixed maximum message size")
XFORWARD_OK = Reply(250, "2.0.0 Ok")
XFORWARD_SYNTAX = Reply(501, "5.5.4 Syntax: XFORWARD attribute=value …")
XFORWARD_IN_TRANSACTION = Reply(503, "5.5.1 XFORWARD not allowed inside a mail transaction")
