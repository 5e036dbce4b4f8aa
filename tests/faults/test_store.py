"""The conference store failing under the real ``webinar-proxy serve`` process: SQLite
locked by another process or on a read-only disk, a private PostgreSQL stopped and
started again.  Invitations get 451 while it lasts (nothing is reserved on the
platform for them), ordinary mail keeps flowing, and after it full service: one
conference per meeting.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.helpers import PLAIN, TOKEN, Relay, invitations, meeting, relay_env, send, serve, wait_until
from tests.support.smtp import running_next_hop
from webinar_proxy.testing.fake_webinar import running_fake_webinar


async def outage_then_recovery(  # type: ignore[no-untyped-def]
    relay: Relay, fake, hop, uid: str, outage, recovery_limit: float = 0.0
) -> float:
    """Inside ``outage``: the invitation gets 451 and nothing is reserved, plain mail
    passes; after it: 250 and exactly one conference.  With ``recovery_limit``, the
    invitation is retried (as an MTA would, more often) until it gets 250 within that
    many seconds; returns how long that took."""
    invite = meeting(uid)
    with outage():
        for _ in range(2):
            code, text = await send(relay.port, invite)
            assert (code, text[:5]) == (451, "4.3.0"), text
        assert (await send(relay.port, PLAIN))[0] == 250  # mail that needs no store
    assert fake.state()["events"] == []
    assert hop.handler.delivered[0].content == PLAIN
    recovered = time.monotonic()
    code, text = await send(relay.port, invite)
    while code != 250 and time.monotonic() - recovered < recovery_limit:
        await asyncio.sleep(0.2)  # the retry interval of an impatient MTA
        code, text = await send(relay.port, invite)
    assert code == 250, text
    recovered = time.monotonic() - recovered
    code, text = await send(relay.port, invite)  # the MTA's duplicate: same conference
    assert code == 250, text
    state = fake.state()
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1
    copies = invitations(hop.handler.delivered)
    assert len(copies) == 2 and all(state["events"][0]["link"].encode() in c.content for c in copies)
    return recovered


async def test_sqlite_locked_by_another_process_gives_451_then_full_service(tmp_path: Path):
    db = tmp_path / "state.db"

    @contextlib.contextmanager
    def locked() -> Iterator[None]:
        holder = sqlite3.connect(db, isolation_level=None)  # this process, not the relay's
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=f"sqlite:///{db}",
                        store__busy_timeout_seconds="0.3")
        with serve(env) as relay:
            await outage_then_recovery(relay, fake, hop, "locked@example.org", locked)
            await wait_until(lambda: "database is locked" in relay.log(), "the lock in the log")


def check_immutable_works(files: list[str]) -> None:
    """Skip unless ``chattr +i`` works on these files (it needs CAP_LINUX_IMMUTABLE and ext4-like fs)."""
    missing = [f for f in files if not os.path.exists(f)]
    assert not missing, missing  # WAL mode: the relay's open connection keeps the -wal file
    probe = subprocess.run(["chattr", "+i", files[0]], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {probe.stderr.strip()}")
    subprocess.run(["chattr", "-i", files[0]], check=True)


async def test_sqlite_on_a_read_only_disk_gives_451_then_full_service(tmp_path: Path):
    # Tests run as root, where chmod does not stop writes: the immutable attribute does.
    # It goes on the database and its WAL (not on the -shm file, which SQLite maps into
    # memory: a write to an immutable mapping is SIGBUS, not a read-only disk).
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    db = tmp_path / "state.db"
    files = [str(db), f"{db}-wal"]

    @contextlib.contextmanager
    def read_only() -> Iterator[None]:
        subprocess.run(["chattr", "+i", *files], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)

    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=f"sqlite:///{db}")
        with serve(env) as relay:
            check_immutable_works(files)
            await outage_then_recovery(relay, fake, hop, "read-only@example.org", read_only)
            await wait_until(lambda: "disk I/O error" in relay.log() or "readonly" in relay.log(),
                             "the write error in the log")


# ---- a private PostgreSQL cluster (never the machine's shared one) --------------------


@dataclass
class PrivatePostgres:
    base: Path
    bin: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.base / "data"),
             "-l", str(self.base / "log"), "-w", "-t", "60", *args],
            check=True, capture_output=True, timeout=90,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("a private cluster is started as the postgres OS user: needs root and runuser")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres OS user")
    base = Path(tempfile.mkdtemp(prefix="wp-faults-pg-"))  # outside pytest's root-only tmp
    shutil.chown(base, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = PrivatePostgres(base, Path(initdbs[-1]).parent, port)
    try:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(cluster.bin / "initdb"), "-D", str(base / "data"),
             "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
async def test_postgresql_stopped_mid_run_gives_451_then_full_service(private_postgres: PrivatePostgres):
    pg = private_postgres

    @contextlib.contextmanager
    def stopped() -> Iterator[None]:
        pg.stop()
        try:
            yield
        finally:
            pg.start()

    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=pg.url,
                        store__connect_timeout_seconds="1")
        with serve(env) as relay:
            # psycopg_pool reconnects with its own backoff (1 s, doubling, jittered), so
            # the first retries after the restart may still get 451; bounded here.
            recovered = await outage_then_recovery(
                relay, fake, hop, "pg-restart@example.org", stopped, recovery_limit=30
            )
            print(f"PostgreSQL restart: full service {recovered:.1f} s after the server was back")
