"""Runs the invitation engine away from the event loop, bounded in time and memory.

``EnginePool`` is the supervisor the lifecycle talks to: N worker processes
(``invitation/worker.py``, started with ``python -m`` like a spawn, never forked
from the running loop), one call in flight per worker, each over its own socket
pair, waited for with the loop's socket functions (the loop never blocks).  Every
call has a wall-clock limit; every worker an address-space limit.  A worker past
either, or one that died, is killed and replaced, and the call raises
``EngineStopped`` (``reason``: ``timeout``, ``memory`` or ``crash``): the caller
treats that mail as "not processable".  ``EngineUnavailable`` means the pool is
closed or has no worker (shutdown): the caller answers "try again later".

``InThreadEngine`` runs the same four calls in a thread with no limits; it is what
the lifecycle uses when built without a pool (pieces assembled in tests) and the
benchmarks' baseline.  Both offer the async ``Engine`` protocol:
``classify``, ``rewrite``, ``remove_conference``, ``next_occurrence``, with the
engine functions' own arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from webinar_proxy.calendar import Occurrence
from webinar_proxy.invitation.classification import Classification, classify
from webinar_proxy.invitation.errors import EngineError
from webinar_proxy.invitation.occurrences import next_occurrence
from webinar_proxy.invitation.options import EngineOptions
from webinar_proxy.invitation.rewriting import remove_conference, rewrite
from webinar_proxy.invitation.worker import EXIT_MEMORY, HEADER, READY

log = logging.getLogger("webinar_proxy.engine")

#: Why a worker was stopped: the labels of ``webinar_proxy_engine_stopped_total``.
STOP_REASONS = ("timeout", "memory", "crash")
#: How long a new worker may take to import the engine and say it is ready.
START_TIMEOUT_SECONDS = 60.0
#: Socket buffers of the pair: fewer system calls for a large mail.
SOCKET_BUFFER = 1024 * 1024


#: Workers run at this lower priority (``nice``), imports included: when every core is
#: busy reading invitations, the event loop still gets the CPU for the plain mail.
WORKER_NICENESS = 10
#: The child's program (``-c``, not ``-m``: the package imports its ``worker`` module).
_WORKER_MAIN = (
    "import contextlib, os, sys\n"
    f"with contextlib.suppress(OSError): os.nice({WORKER_NICENESS})\n"
    "from webinar_proxy.invitation.worker import main\n"
    "sys.exit(main(sys.argv))\n"
)


class EngineStopped(EngineError):
    """The worker running this call passed a limit (or died) and was replaced."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"engine {reason}")
        self.reason = reason


class EngineUnavailable(Exception):
    """No worker can take the call now (the pool is closed or could not start one)."""


class Engine(Protocol):
    """The engine's four calls, awaited."""

    async def classify(self, raw: bytes, mail_from: str | None, options: EngineOptions,
                       now: datetime) -> Classification: ...

    async def rewrite(self, raw: bytes, uid: str, link: str, options: EngineOptions) -> bytes: ...

    async def remove_conference(self, raw: bytes, uid: str, options: EngineOptions) -> bytes: ...

    async def next_occurrence(self, calendar: bytes, uid: str, after: datetime,
                              options: EngineOptions, *, cancelled: Iterable[datetime] = (),
                              include_ongoing: bool = True) -> Occurrence | None: ...


class InThreadEngine:
    """The engine in a worker thread of this process: no limits, no isolation."""

    async def classify(self, raw: bytes, mail_from: str | None, options: EngineOptions,
                       now: datetime) -> Classification:
        return await asyncio.to_thread(classify, raw, mail_from, options, now)

    async def rewrite(self, raw: bytes, uid: str, link: str, options: EngineOptions) -> bytes:
        return await asyncio.to_thread(rewrite, raw, uid, link, options)

    async def remove_conference(self, raw: bytes, uid: str, options: EngineOptions) -> bytes:
        return await asyncio.to_thread(remove_conference, raw, uid, options)

    async def next_occurrence(self, calendar: bytes, uid: str, after: datetime,
                              options: EngineOptions, *, cancelled: Iterable[datetime] = (),
                              include_ongoing: bool = True) -> Occurrence | None:
        return await asyncio.to_thread(
            lambda: next_occurrence(calendar, uid, after, options, cancelled=frozenset(cancelled),
                                    include_ongoing=include_ongoing))

    async def close(self) -> None:
        return None


class _Gone(Exception):
    """The worker's socket closed: it exited or was killed."""


class _OutOfMemory(Exception):
    """The worker hit its address-space limit."""


class _Worker:
    """One child process and the parent's end of its socket pair."""

    def __init__(self, process: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        #: The options this worker holds (sent again only when they change).
        self.options: EngineOptions | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and self.sock.fileno() != -1

    async def receive(self) -> tuple[Any, bytes]:
        loop = asyncio.get_running_loop()
        meta_size, blob_size = HEADER.unpack(await self._read(loop, HEADER.size))
        head = pickle.loads(await self._read(loop, meta_size))
        blob = bytes(await self._read(loop, blob_size)) if blob_size else b""
        return head, blob

    async def _read(self, loop: asyncio.AbstractEventLoop, n: int) -> bytearray:
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = 0
        try:
            while got < n:
                count = await loop.sock_recv_into(self.sock, view[got:])
                if count == 0:
                    raise _Gone
                got += count
        except OSError:
            raise _Gone from None
        finally:
            view.release()
        return buffer

    async def call(self, operation: str, blob: bytes, args: tuple[Any, ...],
                   kwargs: dict[str, Any], options: EngineOptions) -> Any:
        loop = asyncio.get_running_loop()
        send_options = None if options is self.options else options
        # The blob (the mail) goes as it is after the pickled head, never pickled itself.
        meta = pickle.dumps((operation, args, kwargs, send_options), protocol=pickle.HIGHEST_PROTOCOL)
        first = HEADER.pack(len(meta), len(blob)) + meta
        try:
            await loop.sock_sendall(self.sock, first)
            if blob:
                await loop.sock_sendall(self.sock, blob)
        except OSError:
            raise _Gone from None
        self.options = options
        head, out = await self.receive()
        kind = head[0]
        if kind == "ok":
            return head[1]
        if kind == "bytes":
            return out
        if kind == "memory":
            raise _OutOfMemory
        _, error, text = head
        raise (ValueError(text) if error == "value" else EngineError(text))

    def kill(self) -> None:
        """SIGKILL; a call waiting on the socket then reads its end (never close it under one)."""
        with contextlib.suppress(ProcessLookupError):
            if self.process.returncode is None:
                self.process.kill()

    def close(self) -> None:
        """Kill and close the socket (no call may be waiting on it)."""
        self.kill()
        self.sock.close()


async def _spawn(memory_mb: int) -> _Worker:
    parent_end, child_end = socket.socketpair()
    for end in (parent_end, child_end):
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                end.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER_MAIN,
            str(child_end.fileno()), str(os.getpid()), str(memory_mb),
            pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_end.close()
    parent_end.setblocking(False)
    worker = _Worker(process, parent_end)
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            head, _ = await worker.receive()
        if head[0] != READY:
            raise _Gone
    except BaseException as exc:
        worker.close()
        await worker.process.wait()
        if isinstance(exc, (_Gone, TimeoutError)):
            raise EngineUnavailable(
                f"an engine worker did not start (exit status {worker.process.returncode}; "
                f"is policy.engine_memory_mb={memory_mb} too small?)") from None
        raise
    return worker


class EnginePool:
    """N supervised engine workers; see the module docstring."""

    def __init__(self, *, workers: int, timeout_seconds: float = 10.0,
                 memory_mb: int = 512, on_stopped: Callable[[str], None] | None = None) -> None:
        self.size = workers
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self._on_stopped = on_stopped or (lambda reason: None)
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._waiters: list[asyncio.Future[_Worker | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._started = False

    @property
    def pids(self) -> list[int]:
        return sorted(worker.pid for worker in self._workers)

    async def start(self) -> None:
        """Start every worker; raises ``EngineUnavailable`` (and starts none) if one fails."""
        results = await asyncio.gather(*(_spawn(self.memory_mb) for _ in range(self.size)),
                                       return_exceptions=True)
        started = [result for result in results if isinstance(result, _Worker)]
        failed = [result for result in results if not isinstance(result, _Worker)]
        if failed:
            for worker in started:
                worker.close()
                await worker.process.wait()
            error = failed[0]
            raise error if isinstance(error, BaseException) else EngineUnavailable(str(error))
        for worker in started:
            self._workers.add(worker)
            self._release(worker)
        self._started = True
        log.info("engine pool: %d workers (timeout %gs, memory %d MiB each)",
                 self.size, self.timeout_seconds, self.memory_mb)

    async def close(self) -> None:
        """Kill every worker now, busy or not (a stuck one included); waiting calls fail."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        workers = list(self._workers)
        idle = list(self._idle)
        self._workers.clear()
        self._idle.clear()
        for worker in workers:
            worker.kill()  # a busy worker's call reads the end of its socket and fails
        for worker in workers:
            await worker.process.wait()
        for worker in idle:
            worker.sock.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the engine's calls -------------------------------------------------------------

    async def classify(self, raw: bytes, mail_from: str | None, options: EngineOptions,
                       now: datetime) -> Classification:
        result: Classification = await self._call("classify", raw, (mail_from, now), {}, options)
        return result

    async def rewrite(self, raw: bytes, uid: str, link: str, options: EngineOptions) -> bytes:
        result: bytes = await self._call("rewrite", raw, (uid, link), {}, options)
        return result

    async def remove_conference(self, raw: bytes, uid: str, options: EngineOptions) -> bytes:
        result: bytes = await self._call("remove_conference", raw, (uid,), {}, options)
        return result

    async def next_occurrence(self, calendar: bytes, uid: str, after: datetime,
                              options: EngineOptions, *, cancelled: Iterable[datetime] = (),
                              include_ongoing: bool = True) -> Occurrence | None:
        result: Occurrence | None = await self._call(
            "next_occurrence", calendar, (uid, after),
            {"cancelled": frozenset(cancelled), "include_ongoing": include_ongoing}, options)
        return result

    # -- supervision --------------------------------------------------------------------

    async def _call(self, operation: str, blob: bytes, args: tuple[Any, ...],
                    kwargs: dict[str, Any], options: EngineOptions) -> Any:
        worker = await self._acquire()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                result = await worker.call(operation, blob, args, kwargs, options)
        except TimeoutError:
            raise await self._stopped(worker, "timeout") from None
        except _OutOfMemory:
            raise await self._stopped(worker, "memory") from None
        except _Gone:
            if self._closed:
                worker.sock.close()
                raise EngineUnavailable("the engine pool is closed") from None
            if worker.process.returncode is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await worker.process.wait()
            reason = "memory" if worker.process.returncode == EXIT_MEMORY else "crash"
            raise await self._stopped(worker, reason) from None
        except (EngineError, ValueError):  # the engine's own answer: the worker is fine
            self._release(worker)
            raise
        except BaseException:
            # Cancelled mid-call (the message's deadline, shutdown): the worker is
            # still busy with a request nobody waits for, so it is replaced.
            self._replace(worker)
            raise
        self._release(worker)
        return result

    async def _acquire(self) -> _Worker:
        while True:
            if self._closed or not self._started:
                raise EngineUnavailable("the engine pool is not running")
            if self._idle:
                worker = self._idle.pop()
            else:
                waiter: asyncio.Future[_Worker | None] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    found = await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                        self._release(waiter.result())  # handed over just as we were cancelled
                    raise
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                if found is None:
                    continue
                worker = found
            if worker.alive:
                return worker
            await self._stopped(worker, "crash", quiet=True)  # died while idle: replace, try another

    def _release(self, worker: _Worker) -> None:
        if self._closed:  # finished just as the pool closed: nobody will use it again
            worker.close()
            return
        if worker not in self._workers:
            return
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    async def _stopped(self, worker: _Worker, reason: str, *, quiet: bool = False) -> EngineStopped:
        """Kill ``worker`` and wait for it to be gone (SIGKILL: milliseconds), start its successor."""
        if not quiet:
            self._on_stopped(reason)
        log.debug("engine worker %d stopped (%s); starting a new one", worker.pid, reason)
        worker.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await worker.process.wait()
        self._replace(worker)  # closes its socket: no call waits on it any more
        return EngineStopped(reason)

    def _replace(self, worker: _Worker) -> None:
        worker.close()
        self._workers.discard(worker)
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._respawn(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respawn(self, old: _Worker) -> None:
        await old.process.wait()  # reap it: the killed pid is gone before its successor runs
        delay = 1.0
        while not self._closed:
            try:
                worker = await _spawn(self.memory_mb)
            except (EngineUnavailable, OSError) as exc:
                log.error("engine worker not replaced, retrying in %.0fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self._closed:
                worker.close()
                await worker.process.wait()
                return
            self._workers.add(worker)
            self._release(worker)
            return
