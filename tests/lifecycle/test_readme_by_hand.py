"""The README's "By hand" walkthrough, run as written: its four shell blocks in four
shells (fake API, sink, relay, sender), on free loopback ports and in a temporary
folder instead of the fixed ones, then the places it says to look at."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.env import ONE_PROCESS, clean_env
from tests.support.relay import REPO, free_port

PROMPTLY = 60.0


def by_hand_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### By hand", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


@contextmanager
def shell(script: str, env: dict[str, str], ready: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``script`` in bash like a terminal would; returns once ``ready`` was printed."""
    process = subprocess.Popen(
        ["bash", "-c", script], cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + PROMPTLY
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"{script!r} ended early:\n{''.join(seen)}")
            seen.append(line)
            if ready in line:
                break
        else:
            raise AssertionError(f"{script!r} not ready in time:\n{''.join(seen)}")
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the session we started, like Ctrl-C
        process.wait(timeout=PROMPTLY)
        process.stdout.close()


def test_the_by_hand_walkthrough_works_as_written(tmp_path: Path):
    fake_block, sink_block, relay_block, send_block = by_hand_blocks()
    ports = {"8080": free_port(), "10026": free_port(), "10025": free_port()}
    mail, state = tmp_path / "wp-mail", tmp_path / "wp-state.db"

    def localise(text: str) -> str:
        for fixed, port in ports.items():
            text = text.replace(f"127.0.0.1:{fixed}", f"127.0.0.1:{port}")
            text = text.replace(f'"127.0.0.1", {fixed}', f'"127.0.0.1", {port}')
        return text.replace("/tmp/wp-mail", str(mail)).replace("/tmp/wp-state.db", str(state))

    env = clean_env()
    # The relay's defaults (listen 10025, next hop 10026) moved to the free ports.
    relay_env = {**env, **ONE_PROCESS, "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{ports['10025']}",
                 "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{ports['10026']}"}
    with (
        shell(localise(fake_block), env, "fake-webinar listening on"),
        shell(localise(sink_block), env, "sink listening on"),
        shell(localise(relay_block), relay_env, "listening on"),
    ):
        sent = subprocess.run(["bash", "-c", localise(send_block)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=PROMPTLY)
        assert sent.returncode == 0 and sent.stdout.strip() == "accepted", sent.stderr
        deadline = time.monotonic() + PROMPTLY
        while not (mail / "0002.eml").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the notice goes out just after the invitation's 250
        inspected = subprocess.run(
            [sys.executable, "-m", "webinar_proxy", "inspect", str(mail / "0001.eml")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=PROMPTLY,
        )
        listed = subprocess.run(
            ["bash", "-c", localise("WEBINAR_PROXY_STORE__URL=sqlite:///tmp/wp-state.db "
                                    ".venv/bin/webinar-proxy conferences list")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=PROMPTLY,
        )
    assert re.search(r"our_link\s+https://events\.webinar\.ru/", inspected.stdout), inspected.stdout
    notice = (mail / "0002.eml").read_bytes()
    assert notice.startswith(b"Return-Path: <>\r\nX-Envelope-To: organizer@example.org")
    assert "weekly-sales-1@example.org" in listed.stdout, listed.stderr
