"""The child side of the engine pool: one process that runs engine calls, one at a time.

``pool.EnginePool`` starts a Python running ``main([-c, FD, PARENT, MB])`` with one
end of a socket pair as ``FD``.  The worker limits its own address space to ``MB``
MiB (``RLIMIT_AS``), reads a small warm-up invitation under that limit (a limit too
small for the engine fails the start, not the first mail), says it is ready, then
answers requests until the socket closes.  It ignores SIGINT, SIGTERM and SIGHUP
(the parent decides when it ends) and is killed by the kernel when the parent dies
(``PR_SET_PDEATHSIG``), so a worker stuck in a computation never outlives the relay.

Frames, both ways: a 16-byte header (two big-endian lengths), a pickled head, then
an optional blob of raw bytes (the message, or the rewritten message), so a large
mail is never pickled and is read into one ``bytes`` object.

Request head: ``(operation, args, kwargs, options or None)``; the blob is the first
argument (the mail, or the calendar for ``next_occurrence``).  ``options`` is sent
only when it changed since the worker's last request.
Reply head: ``("ok", value)``, ``("bytes", None)`` with the value as blob,
``("error", kind, text)`` or ``("memory", None)`` (the worker then exits).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import resource
import signal
import socket
import struct
import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO

from webinar_proxy.invitation.classification import classify
from webinar_proxy.invitation.errors import EngineError
from webinar_proxy.invitation.occurrences import next_occurrence
from webinar_proxy.invitation.options import EngineOptions
from webinar_proxy.invitation.rewriting import remove_conference, rewrite

HEADER = struct.Struct("!QQ")
#: Exit status of a worker that ran out of its address space.
EXIT_MEMORY = 3
#: The worker's first reply, once its imports are done and its limit is set.
READY = "ready"

OPERATIONS = {
    "classify": classify,
    "rewrite": rewrite,
    "remove_conference": remove_conference,
    "next_occurrence": next_occurrence,
}

_PR_SET_PDEATHSIG = 1
#: How ``classify`` (which never raises) reports a MemoryError it caught.
_CLASSIFY_OUT_OF_MEMORY = "internal error: MemoryError"


def encode(head: Any, blob: bytes = b"") -> tuple[bytes, bytes]:
    """The frame of ``head`` and ``blob``: (header + pickled head, blob)."""
    meta = pickle.dumps(head, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(meta), len(blob)) + meta, blob


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    # BufferedReader.read(n) reads a large n straight into the one bytes object it returns.
    data = stream.read(n) if n else b""
    return data if len(data) == n else None


def _send(sock: socket.socket, head: Any, blob: bytes = b"") -> None:
    first, rest = encode(head, blob)
    sock.sendall(first)
    if rest:
        sock.sendall(rest)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the parent goes; exit if it is gone already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the socket's EOF still ends the worker
        pass
    if os.getppid() != parent:
        os._exit(0)


#: Room a worker needs beyond what it holds after its imports, to read any mail at all.
_HEADROOM = 16 * 1024 * 1024


def _limit_memory(megabytes: int) -> None:
    """Cap the address space; MemoryError when the cap leaves no room to work in."""
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        try:
            with open("/proc/self/statm", encoding="ascii") as statm:
                in_use = int(statm.read().split()[0]) * resource.getpagesize()
        except OSError:  # not Linux: the warm-up still tells
            in_use = 0
        if limit < in_use + _HEADROOM:
            raise MemoryError
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (OSError, ValueError) as exc:  # a sandbox refusing it: the timeout still holds
            print(f"webinar-proxy engine worker: address space not limited: {exc}",
                  file=sys.stderr, flush=True)


def _answer(head: Any, blob: bytes, options: EngineOptions | None) -> tuple[Any, bytes]:
    operation, args, kwargs = head[0], head[1], head[2]
    try:
        value = _call(OPERATIONS[operation], operation, blob, args, kwargs, options)
    except (EngineError, ValueError) as exc:
        return ("error", "engine" if isinstance(exc, EngineError) else "value", str(exc)), b""
    except MemoryError:
        raise
    except Exception as exc:  # a bug in the engine: the caller treats it as "cannot process"
        return ("error", "engine", f"internal error: {type(exc).__name__}: {exc}"[:300]), b""
    if isinstance(value, bytes):
        return ("bytes", None), value
    return ("ok", value), b""


def _call(function: Any, operation: str, blob: bytes, args: tuple[Any, ...],
          kwargs: dict[str, Any], options: EngineOptions | None) -> Any:
    # Every engine function takes (bytes, ...positional..., options[, now]); the pool
    # sends the arguments between the bytes and the options as ``args``.
    if operation == "classify":  # classify(raw, mail_from, options, now)
        mail_from, now = args
        result = function(blob, mail_from, options, now)
        if result.reason.startswith(_CLASSIFY_OUT_OF_MEMORY):
            raise MemoryError  # classify never raises: it reports even this as a reason
        return result
    if operation == "next_occurrence":  # next_occurrence(calendar, uid, after, options, ...)
        uid, after = args
        return function(blob, uid, after, options, **kwargs)
    return function(blob, *args, options, **kwargs)  # rewrite / remove_conference


def serve(sock: socket.socket) -> int:
    """Answer requests on ``sock`` until it closes; returns the exit status."""
    stream = sock.makefile("rb")
    options: EngineOptions | None = None
    while True:
        try:
            header = _read_exactly(stream, HEADER.size)
            if header is None:
                return 0  # the parent closed the pool (or died)
            meta_size, blob_size = HEADER.unpack(header)
            meta = _read_exactly(stream, meta_size)
            blob = _read_exactly(stream, blob_size)
            if meta is None or blob is None:
                return 0
            head = pickle.loads(meta)
            del meta
            if head[3] is not None:
                options = head[3]
            reply, out = _answer(head, blob, options)
            del blob
        except MemoryError:
            blob = out = b""  # free what we can before saying so
            with contextlib.suppress(OSError, MemoryError):
                _send(sock, ("memory", None))
            return EXIT_MEMORY
        try:
            _send(sock, reply, out)
        except MemoryError:
            return EXIT_MEMORY
        except OSError:
            return 0
        del reply, out


#: A small invitation read once under the memory limit, before the worker says it is
#: ready: a limit too small for the engine stops the start, not the first mail.
_WARM_UP = (
    b"Content-Type: text/calendar; method=REQUEST\r\n\r\n"
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//webinar-proxy//warm-up//EN\r\n"
    b"METHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:warm-up\r\nDTSTAMP:20240101T000000Z\r\n"
    b"DTSTART:20240101T100000Z\r\nDTEND:20240101T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\n"
    b"ORGANIZER:mailto:o@example.org\r\nATTENDEE:mailto:a@example.org\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _warm_up() -> None:
    result = classify(_WARM_UP, None, EngineOptions(), datetime(2024, 1, 1, tzinfo=UTC))
    if not result.processable:
        raise MemoryError if result.reason.startswith(_CLASSIFY_OUT_OF_MEMORY) else \
            RuntimeError(f"the engine cannot read its warm-up invitation: {result.reason}")


def main(argv: list[str]) -> int:
    fd, parent, megabytes = (int(value) for value in argv[1:4])
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _die_with_parent(parent)
    sock = socket.socket(fileno=fd)
    try:
        _limit_memory(megabytes)
        _warm_up()
    except MemoryError:
        return EXIT_MEMORY
    try:
        _send(sock, (READY, os.getpid()))
    except OSError:
        return 0
    return serve(sock)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
