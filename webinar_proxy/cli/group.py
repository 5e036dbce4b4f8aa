"""``serve`` with ``smtp.workers`` > 1: a supervisor and its relay worker processes.

The supervisor (the main process, the one systemd knows) binds the listeners (SMTP,
and the milter's unix or TCP socket), accepts every connection itself and hands it
to the worker with the fewest connections of that listener (equals take turns),
over a SOCK_SEQPACKET socket pair with the descriptor attached (``_Adopter``); the
worker reports each one closed.  So ten long-lived connections from an MTA are
shared five and five, where the kernel's SO_REUSEPORT hashing would split them at
random.  Each worker is a fresh Python process that runs the whole product
(``wiring.running_product``).  While no worker can take one, connections wait in
the listener's queue.  The supervisor:

* sends ``READY=1`` once every worker reported ready, ``STOPPING=1`` on SIGTERM,
  ``RELOADING=1``/``READY=1`` around SIGHUP, and pings the watchdog; workers get no
  ``$NOTIFY_SOCKET``;
* hears a heartbeat from each worker's event loop: a worker silent for two heartbeats
  gets no new connections, and one silent for ``smtp.worker_stall_seconds`` (its loop
  is stuck) is killed, then restarted as below;
* re-reads the configuration on SIGHUP, refuses a bad one once, and hands a good one
  to every worker (templates and policy, as in one process);
* on SIGTERM/SIGINT tells every worker to drain (``smtp.shutdown_grace_seconds``)
  and kills what is left some seconds after that;
* restarts a worker that exits unexpectedly, after a backoff (0.5 s doubling up to
  30 s, reset once a worker ran for a minute);
* serves ``/metrics`` (the sum over the workers, see ``metrics.GroupMetrics``) and
  ``/healthz`` (every worker ready and its store answering).

Worker 0 runs the scheduler; a replacement of worker 0 takes it over.  A worker
whose control socket closes (the supervisor died) drains and exits.

Supervisor and worker talk over a socket pair: length-prefixed pickles of tuples
(``start``, ``reload``, ``health`` one way; ``ready``, ``alive``, ``closed``, ``reloaded``,
``health`` back).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import pickle
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from webinar_proxy import sdnotify
from webinar_proxy.logs import configure_logging
from webinar_proxy.metrics import (
    GroupMetrics,
    run_health_checks,
    start_metrics_server,
    stop_metrics_server,
)
from webinar_proxy.settings import HostPort, Settings

log = logging.getLogger("webinar_proxy")

_LENGTH = struct.Struct("!I")
#: Environment a worker must not inherit: only the supervisor speaks to systemd.
_SUPERVISOR_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_WORKER_CODE = (
    "import sys; from webinar_proxy.cli.group import worker_main; sys.exit(worker_main(sys.argv[1:]))"
)
BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET_AFTER = 0.5, 30.0, 60.0
#: Seconds after the grace period before a worker that has not exited is killed.
KILL_MARGIN = 10.0
REPLY_TIMEOUT = 10.0
#: Connections accepted (or taken over) per wake-up, so one burst cannot hold the loop.
ACCEPT_BATCH = 64
#: Seconds without accepting after accept() itself failed (out of file descriptors).
ACCEPT_PAUSE = 0.5


# ---- the control channel --------------------------------------------------------------


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def _receive(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        body = await reader.readexactly(_LENGTH.unpack(head)[0])
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message = pickle.loads(body)
    assert isinstance(message, tuple)
    return message


def _receive_blocking(sock: socket.socket) -> tuple[Any, ...]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("supervisor closed the control socket")
            data += chunk
        return data

    message = pickle.loads(exactly(_LENGTH.unpack(exactly(_LENGTH.size))[0]))
    assert isinstance(message, tuple)
    return message


# ---- the worker -------------------------------------------------------------------------


def heartbeat_interval(stall_seconds: float) -> float:
    """Seconds between a worker's heartbeats: several within one stall limit."""
    return min(5.0, stall_seconds / 6)


def quiet_after(stall_seconds: float) -> float:
    """Seconds of silence after which a worker gets no new connections: two heartbeats
    missed (and a second to spare)."""
    return 2 * heartbeat_interval(stall_seconds) + 1


class _Adopter:
    """A worker's end of the hand-over: the connections its supervisor accepted.

    Each message on the channel (a SOCK_SEQPACKET socket pair) is the listener's name
    (``smtp`` or ``milter``) with one connection's file descriptor attached; the
    connection goes to that front door, and ``closed(name)`` is called when it is gone.
    """

    def __init__(self, channel: socket.socket, doors: dict[str, Any],
                 closed: Callable[[str], None]) -> None:
        self.channel = channel
        self.doors = doors
        self.closed = closed
        self._reading = False
        self._tasks: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._take)
        self._reading = True

    def stop(self) -> None:
        if self._reading:
            self._reading = False
            asyncio.get_running_loop().remove_reader(self.channel.fileno())

    def _take(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                name, fds, _, _ = socket.recv_fds(self.channel, 16, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stop()
                return
            if not name and not fds:
                self.stop()  # the supervisor is gone (the control socket says so too)
                return
            kind = name.decode("ascii", "replace")
            for fd in fds:
                connection = socket.socket(fileno=fd)
                door = self.doors.get(kind)
                if door is None:
                    connection.close()
                    self.closed(kind)
                    continue
                task = asyncio.ensure_future(door.adopt(connection, functools.partial(self.closed, kind)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


def worker_main(argv: list[str]) -> int:
    """A worker's entry point: ``CONTROL_FD HANDOVER_FD``."""
    control_fd, handover_fd = (int(value) for value in argv[:2])
    control = socket.socket(fileno=control_fd)
    handover = socket.socket(fileno=handover_fd)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads come from the supervisor
    try:
        kind, settings, level, index = _receive_blocking(control)
    except ConnectionError:
        return 1
    assert kind == "start"
    configure_logging(level, worker=index)
    from webinar_proxy.store import StoreError

    try:
        asyncio.run(_work(settings, index, control, handover))
    except (OSError, StoreError) as exc:
        log.error("worker %d cannot start: %s", index, exc)
        return 1
    return 0


async def _work(settings: Settings, index: int, control: socket.socket,
                handover: socket.socket) -> None:
    from webinar_proxy.cli.serve import reload
    from webinar_proxy.wiring import WorkerRole, health_checks, running_product

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader, writer = await asyncio.open_unix_connection(sock=control)
    role = WorkerRole(run_scheduler=index == 0)
    running = settings
    async with running_product(settings, stop=stop, worker=role) as product:
        checks = health_checks(product.relay, product.services.store, product.milter)

        def closed(kind: str) -> None:
            if not writer.is_closing():
                writer.write(_frame(("closed", kind)))

        adopter = _Adopter(handover, {"smtp": product.relay, "milter": product.milter}, closed)
        adopter.start()
        writer.write(_frame(("ready", os.getpid())))

        async def obey() -> None:
            nonlocal running
            while (message := await _receive(reader)) is not None:
                if message[0] == "reload":
                    running = reload(product.services.pipeline, running, lambda m=message: m[1])
                    writer.write(_frame(("reloaded",)))
                elif message[0] == "health":
                    writer.write(_frame(("health", await run_health_checks(checks))))
            log.warning("worker %d: the supervisor is gone; draining", index)
            stop.set()

        async def beat() -> None:
            # Sent from the event loop: a loop stuck for smtp.worker_stall_seconds goes
            # silent, and the supervisor replaces this worker.
            while True:
                writer.write(_frame(("alive",)))
                await asyncio.sleep(heartbeat_interval(running.smtp.worker_stall_seconds))

        control_task = asyncio.create_task(obey())
        heartbeat = asyncio.create_task(beat())
        try:
            await stop.wait()
            await product.shutdown(settings.smtp.shutdown_grace_seconds)
        finally:
            adopter.stop()
            control_task.cancel()
            heartbeat.cancel()
            writer.close()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


# ---- the supervisor ---------------------------------------------------------------------


def _bind_tcp(address: HostPort) -> socket.socket:
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address.host or None, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_unix(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left by an earlier run that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)  # access is governed by the directory, as in one process
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


def _shown(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, str):
        return f"unix:{name}"
    host, port = name[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    started: float
    ready: asyncio.Future[None]
    replies: dict[str, collections.deque[asyncio.Future[Any]]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    #: The supervisor's end of the hand-over channel (see ``_Adopter``).
    handover: socket.socket | None = None
    listener: asyncio.Task[None] | None = None
    #: When the worker last said anything (its heartbeat, on the supervisor's clock).
    last_heard: float = 0.0
    #: True while it gets no new connections for missing its heartbeats (for the log).
    quiet: bool = False
    #: Connections handed to it and not yet reported closed, per listener.
    load: collections.Counter[str] = field(default_factory=collections.Counter)

    def send(self, message: tuple[Any, ...]) -> None:
        if not self.writer.is_closing():
            self.writer.write(_frame(message))

    async def ask(self, message: tuple[Any, ...], reply: str) -> Any:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.replies[reply].append(answer)
        self.send(message)
        async with asyncio.timeout(REPLY_TIMEOUT):
            return await answer


class Supervisor:
    """The group: listeners, workers, signals, metrics endpoint."""

    def __init__(self, settings: Settings, load: Callable[[], Settings], count: int, level: int) -> None:
        self.settings = settings
        self.load = load
        self.count = count
        self.level = level
        #: The listening sockets, by name ("smtp", "milter"): only the supervisor accepts.
        self.listeners: dict[str, socket.socket] = {}
        self.workers: dict[int, _Worker] = {}
        self.stopping = asyncio.Event()
        self.metrics_dir = ""
        self._accepting = False
        self._turn = 0  # where the round among equally loaded workers starts
        self.group_metrics: GroupMetrics | None = None
        #: Workers the heartbeat watch killed (their exit is counted as ``stuck``).
        self._killed_stuck: set[int] = set()

    # -- workers --

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair()
        handover, handover_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        handover.setblocking(False)
        fds = [theirs.fileno(), handover_theirs.fileno()]
        env = {k: v for k, v in os.environ.items() if k not in _SUPERVISOR_ONLY}
        env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WORKER_CODE, *map(str, fds),
                pass_fds=fds, env=env, stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            handover.close()
            raise
        finally:
            theirs.close()
            handover_theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        loop = asyncio.get_running_loop()
        worker = _Worker(index, process, writer, loop.time(), loop.create_future(), handover=handover)
        worker.send(("start", self.settings, self.level, index))
        worker.listener = asyncio.create_task(self._listen(worker, reader))
        self.workers[index] = worker
        return worker

    async def _listen(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        while (message := await _receive(reader)) is not None:
            worker.last_heard = loop.time()
            if not self._accepting and worker.ready.done():
                # Accepting stopped while no worker could take a connection: this one can.
                self._start_accepting()
            if message[0] == "alive":
                continue
            if message[0] == "closed":
                worker.load[message[1]] = max(0, worker.load[message[1]] - 1)
                self._show_load(worker, message[1])
            elif message[0] == "ready":
                if not worker.ready.done():
                    worker.ready.set_result(None)
                self._start_accepting()
            elif worker.replies[message[0]]:
                answer = worker.replies[message[0]].popleft()
                if not answer.done():
                    answer.set_result(message[1:])
        code = await worker.process.wait()
        if not worker.ready.done():
            worker.ready.set_exception(
                RuntimeError(f"worker {worker.index} exited with {code} before it was ready"))
        for waiting in worker.replies.values():
            for answer in waiting:
                if not answer.done():
                    answer.set_exception(ConnectionError(f"worker {worker.index} is gone"))
        worker.writer.close()
        if worker.handover is not None:
            worker.handover.close()

    async def _keep(self, worker: _Worker) -> None:
        """Restart this worker's slot whenever its process exits, until the group stops."""
        from prometheus_client.multiprocess import mark_process_dead

        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            code = await worker.process.wait()
            if worker.listener is not None:
                await worker.listener
            if self.stopping.is_set():
                return
            mark_process_dead(worker.process.pid, self.metrics_dir)
            if self.group_metrics is not None:
                stuck = worker.process.pid in self._killed_stuck
                self.group_metrics.worker_replaced("stuck" if stuck else "exited")
                for name in self.listeners:
                    self.group_metrics.set_worker_connections(worker.index, name, 0)
            failures = 0 if loop.time() - worker.started >= BACKOFF_RESET_AFTER else failures + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(failures - 1, 0))
            log.error("worker %d (pid %d) exited with %s; starting a new one in %.1fs",
                      worker.index, worker.process.pid, code, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            if self.stopping.is_set():
                return
            worker = await self._spawn(worker.index)
            with contextlib.suppress(RuntimeError):
                await worker.ready
                log.info("worker %d (pid %d) ready", worker.index, worker.process.pid)

    # -- connections --

    def _start_accepting(self) -> None:
        if self._accepting or self.stopping.is_set():
            return
        loop = asyncio.get_running_loop()
        for name, sock in self.listeners.items():
            loop.add_reader(sock.fileno(), self._accept, name, sock)
        self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting:
            loop = asyncio.get_running_loop()
            for sock in self.listeners.values():
                loop.remove_reader(sock.fileno())
            self._accepting = False

    def _show_load(self, worker: _Worker, name: str) -> None:
        if self.group_metrics is not None:
            self.group_metrics.set_worker_connections(worker.index, name, worker.load[name])

    def _takers(self) -> list[_Worker]:
        """Workers that may get a connection: ready, running, heard from lately."""
        now = asyncio.get_running_loop().time()
        lately = quiet_after(self.settings.smtp.worker_stall_seconds)
        return [w for w in self.workers.values()
                if w.ready.done() and w.ready.exception() is None and w.process.returncode is None
                and w.handover is not None and now - max(w.last_heard, w.started) <= lately]

    def _accept(self, name: str, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            takers = self._takers()
            if not takers:
                # The connections wait in the listener's queue until a worker is ready.
                self._stop_accepting()
                return
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: pause, then go on
                log.warning("accepting on %s failed: %s", _shown(listener), exc)
                self._stop_accepting()
                asyncio.get_running_loop().call_later(ACCEPT_PAUSE, self._start_accepting)
                return
            with connection:
                self._hand_over(name, connection, takers)

    def _hand_over(self, name: str, connection: socket.socket, takers: list[_Worker]) -> None:
        """Give ``connection`` to the worker with the fewest connections of this listener
        (equals take turns); our copy of the descriptor is closed by the caller."""
        count = len(self.workers) or 1
        takers.sort(key=lambda w: (w.load[name], (w.index - self._turn) % count))
        for worker in takers:
            assert worker.handover is not None
            try:
                socket.send_fds(worker.handover, [name.encode()], [connection.fileno()])
            except OSError:
                continue  # its channel is full or gone: the next worker
            worker.load[name] += 1
            self._show_load(worker, name)
            self._turn = worker.index + 1
            return
        log.warning("no worker could take a connection on %s; closed it", _shown(connection))

    async def _watch_heartbeats(self) -> None:
        """Kill a ready worker that has gone silent for ``smtp.worker_stall_seconds``:
        its event loop is stuck, and the connections it holds wait.  Its keeper then
        starts a new one."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            limit = self.settings.smtp.worker_stall_seconds
            interval = heartbeat_interval(limit)
            await asyncio.sleep(interval)
            now, previous, tick = loop.time(), tick, loop.time()
            if now - previous > 2 * interval:
                continue  # this loop was held up itself: the heartbeats may wait unread
            for worker in list(self.workers.values()):
                if (worker.process.returncode is not None or not worker.ready.done()
                        or worker.ready.exception() is not None):
                    continue
                silent = now - max(worker.last_heard, worker.started)
                quiet = silent > quiet_after(limit)
                if quiet and not worker.quiet:
                    log.warning("worker %d (pid %d) missed its heartbeats for %.0fs: "
                                "no new connections for it", worker.index, worker.process.pid, silent)
                elif worker.quiet and not quiet:
                    log.info("worker %d (pid %d) answers again", worker.index, worker.process.pid)
                worker.quiet = quiet
                if silent > limit:
                    log.error("worker %d (pid %d) sent no heartbeat for %.0fs "
                              "(smtp.worker_stall_seconds): its event loop is stuck; killing it",
                              worker.index, worker.process.pid, silent)
                    self._killed_stuck.add(worker.process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()

    # -- signals --

    async def _reload(self) -> None:
        log.info("reload requested")
        sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            from webinar_proxy.cli.serve import reread

            loaded = reread(self.settings, self.load)
            if loaded is None:
                return
            self.settings = loaded[0]
            workers = [w for w in self.workers.values() if w.ready.done() and w.process.returncode is None]
            results = await asyncio.gather(
                *(w.ask(("reload", self.settings), "reloaded") for w in workers), return_exceptions=True
            )
            failed = [w.index for w, r in zip(workers, results, strict=True) if isinstance(r, BaseException)]
            if failed:
                log.error("reload: workers %s did not confirm", failed)
            else:
                log.info("reloaded %d workers", len(workers))
        except Exception:
            log.exception("reload failed; running on as before")
        finally:
            sdnotify.notify("READY=1")

    async def _worker_health(self) -> list[dict[str, bool]] | None:
        """Every worker's own health checks, or None while one is missing or not ready."""
        workers = list(self.workers.values())
        if len(workers) < self.count or not all(
            w.ready.done() and not w.ready.exception() and w.process.returncode is None for w in workers
        ):
            return None
        answers = await asyncio.gather(*(w.ask(("health",), "health") for w in workers))
        return [answer[0] for answer in answers]

    def _health_checks(self) -> dict[str, Callable[[], Awaitable[bool]]]:
        """``/healthz`` of the group: every worker is up and its own check passes."""

        def check(name: str) -> Callable[[], Awaitable[bool]]:
            async def every_worker() -> bool:
                answers = await self._worker_health()
                return answers is not None and all(answer.get(name, False) for answer in answers)

            return every_worker

        return {"listener": check("listener"), "store": check("store")}

    async def _stop_workers(self, grace: float) -> None:
        for worker in self.workers.values():
            if worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        waits = [asyncio.ensure_future(w.process.wait()) for w in self.workers.values()]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=grace + KILL_MARGIN)
        for worker in self.workers.values():
            if worker.process.returncode is None:
                log.error("worker %d (pid %d) did not stop in time; killing it",
                          worker.index, worker.process.pid)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
        if pending:
            await asyncio.wait(pending)

    # -- the whole --

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        settings = self.settings
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        keepers: list[asyncio.Task[None]] = []
        endpoint = None
        watchdog: asyncio.Task[None] | None = None
        self.metrics_dir = tempfile.mkdtemp(prefix="webinar-proxy-metrics-")
        self.group_metrics = GroupMetrics(self.metrics_dir)
        try:
            if settings.smtp.enabled:
                self.listeners["smtp"] = _bind_tcp(settings.smtp.listen)
            listen = settings.milter.listen
            if listen is not None:
                self.listeners["milter"] = _bind_unix(listen.path) if listen.kind == "unix" else _bind_tcp(
                    HostPort(listen.host, listen.port))
            for sock in self.listeners.values():
                sock.setblocking(False)
            first = [await self._spawn(index) for index in range(self.count)]
            started = asyncio.gather(*(w.ready for w in first))
            stopped = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait([started, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not started.done():
                started.cancel()
                return 0
            if started.exception() is not None:
                log.error("cannot start: %s", started.exception())
                return 1
            keepers = [asyncio.create_task(self._keep(w)) for w in first]
            keepers.append(asyncio.create_task(self._watch_heartbeats()))
            if settings.metrics.listen is not None:
                endpoint = await start_metrics_server(
                    settings.metrics, self.group_metrics, self._health_checks()
                )
                for host, port in endpoint.addresses:
                    log.info("metrics and health on http://%s/ (/metrics, /healthz)",
                             f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload()))
            status = []
            if "smtp" in self.listeners:
                log.info("listening on %s, next hop %s, %d workers",
                         _shown(self.listeners["smtp"]), settings.smtp.next_hop, self.count)
                status.append(f"relaying to {settings.smtp.next_hop}")
            if "milter" in self.listeners:
                log.info("milter listening on %s, %d workers", _shown(self.listeners["milter"]), self.count)
                status.append(f"milter on {settings.milter.listen}")
            status.append(f"{self.count} workers")
            sdnotify.notify("READY=1", "STATUS=" + ", ".join(status))
            if (interval := sdnotify.watchdog_interval()) is not None:
                from webinar_proxy.cli.serve import _watchdog

                watchdog = asyncio.create_task(_watchdog(interval))
            await self.stopping.wait()
            self._stop_accepting()
            sdnotify.notify("STOPPING=1", "STATUS=draining transactions in flight")
            log.info("shutting down: waiting up to %.0fs for transactions in flight",
                     settings.smtp.shutdown_grace_seconds)
            return 0
        finally:
            self.stopping.set()
            self._stop_accepting()
            await self._stop_workers(settings.smtp.shutdown_grace_seconds)
            for keeper in keepers:
                keeper.cancel()
            if watchdog is not None:
                watchdog.cancel()
            await stop_metrics_server(endpoint)
            for sock in self.listeners.values():
                sock.close()
            if settings.milter.listen is not None and settings.milter.listen.kind == "unix" \
                    and "milter" in self.listeners:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(settings.milter.listen.path)
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            log.info("stopped")


def run_group(settings: Settings, load: Callable[[], Settings], count: int) -> int:
    """Run ``count`` workers under a supervisor until SIGTERM/SIGINT; the exit code."""
    level = logging.getLogger().getEffectiveLevel()
    try:
        return asyncio.run(Supervisor(settings, load, count, level).run())
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
