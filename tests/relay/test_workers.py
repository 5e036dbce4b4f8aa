"""``smtp.workers`` = 2: the real ``serve`` as a supervisor with two relay worker processes.

One conference per meeting across workers (the store's per-key lock holds across
processes), systemd notifications and signals for the whole group, metrics summed
over the workers, and a killed worker replaced.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.invites import invitation
from tests.support.serve import Serve, running_serve
from tests.support.smtp import WireClient, dot_stuff, running_next_hop, send_one
from tests.support.systemd import notify_socket
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TOKEN = "workers-token-5d1e0c37"
PLAIN = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n\r\nbody\r\n"
INVITE = invitation(start=datetime(2031, 3, 1, 9, tzinfo=UTC), end=datetime(2031, 3, 1, 10, tzinfo=UTC))
_RELAYED = re.compile(r"\[worker (\d+)\]: session=\S+ .*outcome=relayed")


def group_env(tmp_path: Path, hop_port: int, api_url: str, store_url: str | None = None,
              **extra: str) -> dict[str, str]:
    return {
        "WEBINAR_PROXY_SMTP__WORKERS": "2",
        "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop_port}",
        "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "10",
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
        "WEBINAR_PROXY_WEBINAR__API_URL": api_url,
        "WEBINAR_PROXY_STORE__URL": store_url or f"sqlite:///{tmp_path}/state.db",
        "WEBINAR_PROXY_POLICY__ORGANIZER_DOMAINS": '["example.org"]',
        "WEBINAR_PROXY_POLICY__NOTIFY_ORGANIZER": "false",
        **extra,
    }


def relayed_by(serve: Serve) -> list[int]:
    """The worker of each relayed message, in log order."""
    return [int(match[1]) for line in serve.lines if (match := _RELAYED.search(line))]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return "zombie" not in status.read()
    except FileNotFoundError:
        return False


def workers_of(serve: Serve) -> set[int]:
    pid = serve.process.pid
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
        return {int(child) for child in children.read().split()}


async def until_both_workers_relayed(serve: Serve, message: bytes, rounds: int = 30) -> int:
    """Send ``message`` on four connections at once, round after round, until each worker
    relayed at least one (the supervisor picks the worker); how many were sent."""
    sent = 0
    for _ in range(rounds):
        codes = await asyncio.gather(*(send_one(serve.smtp_port, message) for _ in range(4)))
        assert codes == [250] * 4
        sent += 4
        if set(relayed_by(serve)) == {0, 1}:
            return sent
    raise AssertionError(f"one worker took every connection: {relayed_by(serve)}")


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def passed(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return samples[("webinar_proxy_mails_total", frozenset({("outcome", "passed")}))]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("pg_url")


async def test_an_invitation_handled_by_two_workers_makes_one_conference(tmp_path: Path, store_url: str):
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        async with running_serve(group_env(tmp_path, hop.port, fake.api_url, store_url)) as serve:
            sent = await until_both_workers_relayed(serve, INVITE)
            [event] = fake.state()["events"]
        assert serve.process.returncode == 0, serve.output
    assert len(hop.handler.delivered) == sent
    link = event["link"].encode()
    assert all(link in delivered.content for delivered in hop.handler.delivered)


async def test_the_group_notifies_systemd_reloads_and_drains_as_one(tmp_path: Path):
    config = tmp_path / "relay.toml"
    config.write_text('[policy]\nlanguage = "ru"\n')
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        with notify_socket() as systemd:
            env = group_env(tmp_path, hop.port, fake.api_url, NOTIFY_SOCKET=systemd.env_value)
            async with running_serve(env, "--config", str(config)) as serve:
                ready = await asyncio.to_thread(systemd.wait_for, "READY", "1")
                assert "2 workers" in ready["STATUS"]
                workers = workers_of(serve)
                assert len(workers) == 2

                config.write_text('[policy]\nlanguage = "en"\n')
                serve.process.send_signal(signal.SIGHUP)
                await asyncio.to_thread(systemd.wait_for, "RELOADING", "1")
                await asyncio.to_thread(systemd.wait_for, "READY", "1")
                # Each worker applied it (its log line may trail the notification a little).
                async with asyncio.timeout(10):
                    while True:
                        if {line.split("[worker ")[1][0] for line in serve.lines
                                if "reloaded: templates and policy (language=en)" in line} == {"0", "1"}:
                            break
                        await asyncio.sleep(0.05)
                assert workers_of(serve) == workers  # nothing restarted

                # A transaction in flight when SIGTERM arrives still finishes.
                client = await WireClient.connect("127.0.0.1", serve.smtp_port)
                await client.reply()
                await client.command("EHLO client.test")
                assert (await client.command("MAIL FROM:<o@example.org>"))[0] == 250
                assert (await client.command("RCPT TO:<a@example.net>"))[0] == 250
                assert (await client.command("DATA"))[0] == 354
                serve.process.send_signal(signal.SIGTERM)
                stopping = await asyncio.to_thread(systemd.wait_for, "STOPPING", "1")
                assert "draining" in stopping["STATUS"]
                await client.send_raw(dot_stuff(PLAIN))
                assert (await client.reply())[0] == 250
                await client.close()
                async with asyncio.timeout(30):
                    assert await serve.process.wait() == 0, serve.output
    assert [d.content for d in hop.handler.delivered] == [PLAIN]
    assert not any(alive(pid) for pid in workers)  # the workers went with the supervisor
    assert sum(message.get("READY") == "1" for message in systemd.received) == 2  # start, reload


async def test_metrics_add_up_over_workers_and_a_killed_worker_is_replaced(tmp_path: Path):
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = group_env(tmp_path, hop.port, fake.api_url, WEBINAR_PROXY_METRICS__LISTEN="127.0.0.1:0")
        async with running_serve(env) as serve:
            assert serve.metrics_port is not None
            sent = await until_both_workers_relayed(serve, PLAIN)
            assert passed(await scrape(serve.metrics_port)) == sent

            before = workers_of(serve)
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
                async with asyncio.timeout(30):
                    while True:  # /healthz is 503 until the replacement is ready
                        health = await http.get(f"http://127.0.0.1:{serve.metrics_port}/healthz")
                        after = workers_of(serve)
                        if health.status_code == 200 and len(after) == 2 and victim not in after:
                            break
                        await asyncio.sleep(0.1)
            assert health.json() == {"status": "ok", "listener": True, "store": True}
            assert f"(pid {victim}) exited with -9" in serve.output

            # The dead worker's counts stay in the sum; the group keeps relaying.
            samples = await scrape(serve.metrics_port)
            assert passed(samples) == sent
            replaced = {dict(labels)["reason"]: value for (name, labels), value in samples.items()
                        if name == "webinar_proxy_workers_replaced_total"}
            assert replaced == {"exited": 1}
            # Every connection was closed (the workers report it) and the dead one's reset.
            async with asyncio.timeout(30):
                while True:
                    connections = {dict(labels)["worker"]: value
                                   for (name, labels), value in (await scrape(serve.metrics_port)).items()
                                   if name == "webinar_proxy_worker_connections"}
                    if set(connections) == {"0", "1"} and set(connections.values()) == {0}:
                        break
                    await asyncio.sleep(0.1)
            assert await send_one(serve.smtp_port, PLAIN) == 250
            assert passed(await scrape(serve.metrics_port)) == sent + 1
            assert len(hop.handler.delivered) == sent + 1


async def test_workers_go_when_the_supervisor_dies(tmp_path: Path):
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        async with running_serve(group_env(tmp_path, hop.port, fake.api_url)) as serve:
            workers = workers_of(serve)
            assert len(workers) == 2
            serve.process.kill()  # no drain, no goodbye: the control sockets just close
            await serve.process.wait()
            async with asyncio.timeout(30):
                while True:
                    if not any(alive(pid) for pid in workers):
                        break
                    await asyncio.sleep(0.1)
        assert "the supervisor is gone; draining" in serve.output


async def test_the_milter_runs_in_every_worker_of_the_group(tmp_path: Path):
    from kilter.protocol import Continue

    from tests.support.milter import MtaClient

    async def one() -> bytes:
        client = await MtaClient.connect(serve.smtp_port)  # the milter's port: SMTP is off
        try:
            outcome = await client.message(INVITE, "boss@example.org", ["ann@example.net"])
        finally:
            await client.close()
        assert outcome.stage == "eom" and isinstance(outcome.reply, Continue)
        return outcome.message

    handled = re.compile(r"webinar_proxy\.milter\[worker (\d+)\]: session=\S+ .*outcome=")
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = group_env(tmp_path, hop.port, fake.api_url, WEBINAR_PROXY_SMTP__ENABLED="false",
                        WEBINAR_PROXY_MILTER__LISTEN="inet:127.0.0.1:0",
                        WEBINAR_PROXY_MILTER__NOTICE_SUBMIT=f"127.0.0.1:{hop.port}")
        async with running_serve(env) as serve:
            assert "milter listening on" in serve.output
            for _ in range(30):
                messages = await asyncio.gather(*(one() for _ in range(4)))
                if {int(m[1]) for line in serve.lines if (m := handled.search(line))} == {0, 1}:
                    break
            else:
                raise AssertionError("one worker took every milter connection")
            [event] = fake.state()["events"]
            assert all(event["link"].encode() in message for message in messages)


async def test_a_worker_whose_loop_is_stuck_is_replaced(tmp_path: Path):
    # SIGSTOP freezes the worker as a stuck event loop would: no heartbeat, no accept.
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = group_env(tmp_path, hop.port, fake.api_url, WEBINAR_PROXY_SMTP__WORKER_STALL_SECONDS="2",
                        WEBINAR_PROXY_METRICS__LISTEN="127.0.0.1:0")
        async with running_serve(env) as serve:
            await until_both_workers_relayed(serve, PLAIN)
            before = workers_of(serve)
            victim, bystander = sorted(before)
            os.kill(victim, signal.SIGSTOP)
            try:
                async with asyncio.timeout(60):
                    while True:
                        after = workers_of(serve)
                        new = after - before
                        if len(after) == 2 and new and f"(pid {min(new)}) ready" in serve.output:
                            break
                        await asyncio.sleep(0.1)
            finally:
                if alive(victim):
                    os.kill(victim, signal.SIGKILL)
            assert f"(pid {victim}) sent no heartbeat for" in serve.output
            assert f"(pid {victim}) exited with -9" in serve.output
            assert bystander in after  # the live worker was left alone
            assert serve.metrics_port is not None
            replaced = {dict(labels)["reason"]: value
                        for (name, labels), value in (await scrape(serve.metrics_port)).items()
                        if name == "webinar_proxy_workers_replaced_total"}
            assert replaced == {"stuck": 1}
            # The replacement serves the stuck worker's socket: every connection is relayed.
            delivered = len(hop.handler.delivered)
            codes = await asyncio.gather(*(send_one(serve.smtp_port, PLAIN) for _ in range(8)))
            assert codes == [250] * 8
            assert len(hop.handler.delivered) == delivered + 8


async def test_connections_are_shared_out_evenly_over_the_workers(tmp_path: Path):
    # Ten connections held open, as an MTA's connection cache does: five per worker
    # (the kernel's SO_REUSEPORT hashing would split them at random: 5/5 one time in four).
    async with (
        running_fake_webinar(token=TOKEN) as fake,
        running_next_hop() as hop,
        running_serve(group_env(tmp_path, hop.port, fake.api_url)) as serve,
    ):
        clients = []
        try:
            for _ in range(10):
                client = await WireClient.connect("127.0.0.1", serve.smtp_port)
                clients.append(client)
                assert (await client.reply())[0] == 220
                assert (await client.command("EHLO client.example"))[0] == 250
                code, text = await client.transaction("o@example.org", ["a@example.net"],
                                                      dot_stuff(PLAIN))
                assert code == 250, text
            async with asyncio.timeout(30):
                while True:  # the log line follows the reply
                    if len(relayed_by(serve)) == 10:
                        break
                    await asyncio.sleep(0.05)
            assert sorted(relayed_by(serve)) == [0] * 5 + [1] * 5
        finally:
            for client in clients:
                await client.close()


async def test_a_silent_worker_gets_no_new_connections_until_it_is_replaced(tmp_path: Path):
    # Stall limit 60 s: missing two heartbeats (11 s) stops new connections long before
    # the kill, so every connection made in between is served by the other worker.
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = group_env(tmp_path, hop.port, fake.api_url, WEBINAR_PROXY_SMTP__WORKER_STALL_SECONDS="60")
        async with running_serve(env) as serve:
            victim, bystander = sorted(workers_of(serve))
            os.kill(victim, signal.SIGSTOP)
            try:
                async with asyncio.timeout(60):
                    while True:
                        if f"(pid {victim}) missed its heartbeats" in serve.output:
                            break
                        await asyncio.sleep(0.1)
                served = len(relayed_by(serve))
                async with asyncio.timeout(30):  # one handed to the frozen worker would hang
                    codes = await asyncio.gather(*(send_one(serve.smtp_port, PLAIN) for _ in range(6)))
                assert codes == [250] * 6
                assert alive(victim) and f"(pid {victim}) sent no heartbeat" not in serve.output
            finally:
                os.kill(victim, signal.SIGKILL)
            async with asyncio.timeout(30):
                while True:
                    if len(relayed_by(serve)) == served + 6:
                        break
                    await asyncio.sleep(0.05)
            by_worker = relayed_by(serve)[served:]
            assert by_worker == [by_worker[0]] * 6  # all by the bystander
            assert bystander in workers_of(serve)


async def test_connections_wait_while_no_worker_answers_and_are_served_when_one_does(tmp_path: Path):
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = group_env(tmp_path, hop.port, fake.api_url, WEBINAR_PROXY_SMTP__WORKER_STALL_SECONDS="60")
        async with running_serve(env) as serve:
            workers = sorted(workers_of(serve))
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            try:
                async with asyncio.timeout(60):
                    while True:
                        if all(f"(pid {pid}) missed its heartbeats" in serve.output for pid in workers):
                            break
                        await asyncio.sleep(0.1)
                # Its connection waits in the listener's queue: the workers count as silent
                # until their next heartbeat, even once they run again.
                waiting = asyncio.create_task(send_one(serve.smtp_port, PLAIN))
            finally:
                for pid in workers:
                    os.kill(pid, signal.SIGCONT)
            async with asyncio.timeout(30):
                assert await waiting == 250
            async with asyncio.timeout(30):  # logged at the supervisor's next look
                while True:
                    if all(f"(pid {pid}) answers again" in serve.output for pid in workers):
                        break
                    await asyncio.sleep(0.1)
            assert sorted(workers_of(serve)) == workers  # nobody was replaced
            assert len(hop.handler.delivered) == 1
