"""``webinar-proxy sink``: the trial next hop as a real process writes each mail into a
folder, records the envelope, continues the numbering after a restart, and exits 0 on
SIGTERM."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from tests.support.env import clean_env
from tests.support.relay import REPO, free_port

PROMPTLY = 60.0
MESSAGE = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: hello\r\n\r\nbody\r\n"


def run_sink(port: int, folder: Path) -> subprocess.Popen[str]:
    env = clean_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "webinar_proxy", "sink", "--listen", f"127.0.0.1:{port}",
         "--folder", str(folder)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # bounded: the process prints it or exits
    assert first.startswith(f"sink listening on 127.0.0.1:{port}, writing mail into {folder}"), (
        first + process.stderr.read() if process.stderr else first)
    return process


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=PROMPTLY)
    return process.returncode, stdout, stderr


def test_sink_writes_each_mail_into_the_folder_and_keeps_numbering(tmp_path: Path):
    folder = tmp_path / "mail"
    port = free_port()
    sink = run_sink(port, folder)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=PROMPTLY) as smtp:
            smtp.sendmail("o@example.org", ["a@example.net", "b@example.net"], MESSAGE)
            smtp.sendmail("", ["o@example.org"], MESSAGE)  # a null sender, like a notice
    finally:
        code, stdout, stderr = stop(sink)
    assert code == 0 and "sink stopped" in stdout
    assert f"delivered {folder / '0001.eml'}" in stderr
    first = (folder / "0001.eml").read_bytes()
    envelope = b"Return-Path: <o@example.org>\r\nX-Envelope-To: a@example.net, b@example.net\r\n"
    assert first == envelope + MESSAGE
    assert (folder / "0002.eml").read_bytes().startswith(b"Return-Path: <>\r\n")

    port = free_port()
    sink = run_sink(port, folder)  # again: earlier mail is never overwritten
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=PROMPTLY) as smtp:
            smtp.sendmail("o@example.org", ["a@example.net"], MESSAGE)
        deadline = time.monotonic() + PROMPTLY
        while not (folder / "0003.eml").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop(sink)
    assert (folder / "0001.eml").read_bytes() == first
    assert (folder / "0003.eml").exists()


def test_sink_that_cannot_listen_exits_1(tmp_path: Path):
    port = free_port()
    first = run_sink(port, tmp_path / "one")
    try:
        env = clean_env()
        second = subprocess.run(
            [sys.executable, "-m", "webinar_proxy", "sink", "--listen", f"127.0.0.1:{port}",
             "--folder", str(tmp_path / "two")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=PROMPTLY,
        )
    finally:
        stop(first)
    assert second.returncode == 1 and "webinar-proxy: sink:" in second.stderr
