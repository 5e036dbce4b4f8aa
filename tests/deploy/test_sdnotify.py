"""``Type=notify`` for real: the relay process talks to a datagram socket the way it talks
to systemd (READY after the port is bound, STOPPING on SIGTERM, WATCHDOG, reload on SIGHUP)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.support.relay import free_port
from tests.support.serve import serve_process
from tests.support.systemd import notify_socket
from webinar_proxy import sdnotify


def _env(tmp_path: Path, port: int, notify: str, **extra: str) -> dict[str, str]:
    return {
        "NOTIFY_SOCKET": notify,
        "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{port}",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{free_port()}",
        "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "2",
        "WEBINAR_PROXY_WEBINAR__TOKEN": "test-token",
        "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db",
        **extra,
    }


def _banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        return conn.recv(512)


@pytest.mark.parametrize("kind", ["abstract", "path"])
def test_ready_after_the_port_is_bound_and_stopping_on_sigterm(tmp_path: Path, kind: str):
    port = free_port()
    with notify_socket(tmp_path if kind == "path" else None) as listener, \
            serve_process(_env(tmp_path, port, listener.env_value), ready=None,
                          log_path=tmp_path / "relay.log") as process:
        ready = listener.wait_for("READY", "1")
        # READY promises a bound listener: the first connection after it gets the banner.
        assert _banner(port).startswith(b"220 ")
        assert "STATUS" in ready
        process.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING", "1")
        assert process.wait(timeout=30) == 0
    assert (tmp_path / "relay.log").read_text().count("listening on") == 1


def test_watchdog_pings_at_half_the_interval(tmp_path: Path):
    port = free_port()
    env_extra = {"WATCHDOG_USEC": "200000"}  # 0.2 s: pings every 0.1 s
    with notify_socket() as listener, serve_process(
        _env(tmp_path, port, listener.env_value, **env_extra), ready=None, log_path=tmp_path / "r.log"
    ) as process:
        listener.wait_for("READY", "1")
        for _ in range(3):
            listener.wait_for("WATCHDOG", "1", timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_watchdog_meant_for_another_process_is_left_alone(tmp_path: Path):
    port = free_port()
    env_extra = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    with notify_socket() as listener, serve_process(
        _env(tmp_path, port, listener.env_value, **env_extra), ready=None, log_path=tmp_path / "r.log"
    ) as process:
        listener.wait_for("READY", "1")
        process.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING", "1")
        assert process.wait(timeout=30) == 0
    assert not any("WATCHDOG" in message for message in listener.received)


def test_sighup_reloads_without_dropping_the_listener(tmp_path: Path):
    port = free_port()
    log_path = tmp_path / "relay.log"
    with notify_socket() as listener, \
            serve_process(_env(tmp_path, port, listener.env_value), ready=None,
                          log_path=log_path) as process:
        listener.wait_for("READY", "1")
        # A connection open across the reload stays usable.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            assert conn.recv(512).startswith(b"220 ")
            process.send_signal(signal.SIGHUP)
            reloading = listener.wait_for("RELOADING", "1")
            assert int(reloading["MONOTONIC_USEC"]) > 0
            listener.wait_for("READY", "1")  # the reload is over
            conn.sendall(b"NOOP\r\n")
            assert conn.recv(512).startswith(b"250")
        assert process.poll() is None
        assert _banner(port).startswith(b"220 ")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "reload requested" in log_path.read_text()


def test_notify_is_a_no_op_without_a_socket():
    assert sdnotify.notify("READY=1", environ={}) is False
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "nonsense"}) is None


def test_notify_survives_a_socket_nobody_listens_on(tmp_path: Path):
    gone = tmp_path / "gone.sock"
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": str(gone)}) is False
