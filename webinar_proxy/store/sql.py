"""The SQL both backends share: statements written once, the shared DDL, the row↔record mapping.

Statements are written once with ``?`` placeholders (SQLite's qmark style) in
``STATEMENTS``; ``STATEMENTS.rendered("%s")`` is the same text for psycopg, whose
placeholders are ``%s`` (and whose literal ``%`` must be doubled).  What the two
databases spell differently stays in its backend module: the upserts of the queue
and the pace, ``BEGIN IMMEDIATE`` against ``FOR UPDATE SKIP LOCKED`` and advisory
locks, ``= ANY(array)`` against one statement per address, and the column types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from webinar_proxy.store.records import (
    COLUMNS,
    ConferenceRecord,
    registrations_from_json,
    registrations_to_json,
)

#: Fields of a queued registration, in the order of ``PendingRegistration``'s arguments.
QUEUE_FIELDS = "address, action, role, name, position"

# The indexes of the migrations, the same DDL on both databases.  Never edit one: a
# database that ran its migration has the index as it was written then.
INDEX_CONFERENCES_UID = "CREATE INDEX conferences_uid ON conferences (uid)"
INDEX_CONFERENCES_NEXT_ATTEMPT = (
    "CREATE INDEX conferences_state_next_attempt ON conferences (state, next_attempt_at)"
)
INDEX_CONFERENCES_BOOKED_END = (
    "CREATE INDEX conferences_state_booked_end ON conferences (state, booked_end)"
)
INDEX_REGISTRATION_QUEUE_ORDER = (
    "CREATE INDEX registration_queue_order ON registration_queue (queued_at, position)"
)

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM conferences"
_ORDER = " ORDER BY created_at, organizer, uid"
_KEY = "organizer = ? AND uid = ?"


@dataclasses.dataclass(frozen=True, slots=True)
class Statements:
    """The statements both databases read alike, in one placeholder style."""

    current_version: str = "SELECT coalesce(max(version), 0) FROM schema_version"
    record_version: str = "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"
    # Every column but the key and created_at is replaced; RETURNING gives what is stored.
    put: str = (
        f"INSERT INTO conferences ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in COLUMNS)}) "
        "ON CONFLICT (organizer, uid) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in COLUMNS[2:] if name != "created_at")
        + f" RETURNING {', '.join(COLUMNS)}"
    )
    get: str = f"{_SELECT} WHERE {_KEY}"
    find_by_uid: str = f"{_SELECT} WHERE uid = ? ORDER BY organizer"
    forget: str = f"DELETE FROM conferences WHERE {_KEY}"
    #: The LIMIT takes the backend's "no limit" value when the caller gives none.
    list_all: str = f"{_SELECT}{_ORDER} LIMIT ?"
    list_state: str = f"{_SELECT} WHERE state = ?{_ORDER} LIMIT ?"
    due_deletes: str = (
        f"{_SELECT} WHERE state = 'pending_delete' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at, organizer, uid LIMIT ?"
    )
    # TRUE is a boolean on PostgreSQL and 1 on SQLite, which keeps the flag as 0/1.
    due_rollovers: str = (
        f"{_SELECT} WHERE state = 'active' AND recurring = TRUE AND booked_end <= ?"
        " ORDER BY booked_end, organizer, uid LIMIT ?"
    )
    stale_creating: str = (
        f"{_SELECT} WHERE state = 'creating' AND updated_at < ?"
        " ORDER BY updated_at, organizer, uid LIMIT ?"
    )
    purge_deleted: str = "DELETE FROM conferences WHERE state = 'deleted' AND deleted_at < ?"
    pending_registrations: str = (
        f"SELECT {QUEUE_FIELDS} FROM registration_queue WHERE {_KEY} ORDER BY position, address"
    )
    finish_registrations: str = f"DELETE FROM registration_queue WHERE {_KEY}"
    registration_counts: str = (
        f"SELECT action, count(*) FROM registration_queue WHERE {_KEY} GROUP BY action"
    )
    queued_registrations: str = "SELECT count(*) FROM registration_queue"

    def rendered(self, placeholder: str) -> Statements:
        """The same statements with ``placeholder`` for ``?`` (``"%s"`` for psycopg)."""
        escape = placeholder.startswith("%")
        return Statements(**{
            field.name: (
                getattr(self, field.name).replace("%", "%%") if escape
                else getattr(self, field.name)
            ).replace("?", placeholder)
            for field in dataclasses.fields(self)
        })


#: The shared statements in SQLite's own placeholder style.
STATEMENTS = Statements()


def newer_schema(current: int, known: int) -> str | None:
    """Why a database at schema ``current`` cannot be used by this program, if it cannot."""
    if current <= known:
        return None
    return (
        f"the database schema is version {current}, newer than this program knows "
        f"({known}); upgrade webinar-proxy"
    )


Convert = Callable[[Any], Any]


def record_to_row(record: ConferenceRecord, encode: Mapping[str, Convert]) -> tuple[Any, ...]:
    """The column values of ``record`` for ``put``, in ``COLUMNS`` order.

    The state is written as its text and the registrations as JSON-ready lists on
    both backends; ``encode`` then turns a column's value into the backend's type.
    """
    values: dict[str, Any] = {name: getattr(record, name) for name in COLUMNS}
    values["state"] = str(record.state)
    values["registrations"] = registrations_to_json(record.registrations)
    return tuple(
        encode[name](value) if name in encode and value is not None else value
        for name, value in values.items()
    )


def row_to_record(row: Sequence[Any], decode: Mapping[str, Convert]) -> ConferenceRecord:
    """The record of one ``conferences`` row (columns in ``COLUMNS`` order).

    ``decode`` turns a non-NULL column value from the backend's type into the
    record's; the record itself then makes the lists tuples and the times UTC.
    """
    fields = {
        name: decode[name](value) if name in decode and value is not None else value
        for name, value in zip(COLUMNS, row, strict=True)
    }
    fields["registrations"] = registrations_from_json(fields["registrations"])
    return ConferenceRecord(**fields)


def counts_by_action(rows: Sequence[Sequence[Any]]) -> dict[str, int]:
    """``{"add": n, "remove": m}`` from ``registration_counts`` rows."""
    counts = {"add": 0, "remove": 0}
    counts.update({action: int(count) for action, count in rows})
    return counts
