"""A private, real Postfix instance wired to the real relay with the shipped snippets.

Everything lives in one temporary directory: config_directory, queue_directory,
data_directory, the mail log and the delivered mail. Postfix listens on loopback
ephemeral ports only; ``postfix -c DIR`` keeps it apart from any system instance
(nothing under /etc/postfix is read for writing or changed, no service is touched).

The configuration is built the way an administrator would:
  main.cf   = a base (paths, loopback, local delivery) + config/postfix/<mode>/main.cf
  master.cf = Debian's stock master.cf             + config/postfix/<mode>/master.cf
and then only ports are substituted with ``postconf`` edits (the relay's address in
the ``webinar_proxy_*`` parameter, the service names ``submission`` and
``127.0.0.1:10026``); the stock port-25 smtpd is commented out and chroot is off.

Final delivery: virtual(8) into one Maildir, ``mail/inbox/``, for every recipient in
the domains in ``LOCAL_DOMAINS`` (each copy names its recipient in Delivered-To);
anything else fails at once (``error:`` transport), so nothing leaves the machine.

The API a test uses (``PostfixInstance``):
  submit(message, mail_from, rcpts)     SMTP to the submission port; returns the queue id
  wait_delivered(n / message_id=…)      bounded wait for mail in the Maildirs
  delivered()                           what arrived (``DeliveredMail``)
  queue() / wait_queue(predicate)       ``postqueue -j`` entries
  flush()                               ``postqueue -f``
  start_relay(env) / stop_relay()       the relay process (``python -m webinar_proxy serve``)
  maillog() / relay_log()               logs, for assertions and failure messages
From an async test (e.g. with an in-loop fake Webinar server), call the blocking
methods through ``asyncio.to_thread`` so the event loop keeps serving.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from tests.support.processes import gone
from tests.support.serve import serve_process
from tests.support.systemd import REPO, notify_socket

Mode = Literal["after-queue", "before-queue", "milter"]

POSTFIX = Path("/usr/sbin/postfix")
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
POSTSUPER = "/usr/sbin/postsuper"
STOCK_MASTER_CF = (Path("/usr/share/postfix/master.cf.dist"), Path("/etc/postfix/master.cf.proto"))
SNIPPETS = REPO / "config" / "postfix"
LOCAL_DOMAINS = ("example.net", "example.org")
TOKEN = "postfix-test-token"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
#: SASL users of the milter-mode instance (Cyrus sasldb): login → password.
SASL_USERS = {"boss@example.org": "boss-secret", "ann@example.net": "ann-secret"}


def skip_reason() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if not POSTFIX.exists():
        return "Debian's postfix is not installed (/usr/sbin/postfix missing; .ci/run installs it)"
    if os.geteuid() != 0:
        return "a private Postfix instance has to be started as root (its daemons drop to 'postfix')"
    if not any(path.exists() for path in STOCK_MASTER_CF):
        return "the stock master.cf of the postfix package is missing"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the 'postfix' user does not exist"
    return None


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               describe: Callable[[], str] | None = None) -> object:
    """Poll ``condition`` (quickly at first) until it returns something truthy, at most ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f"\n{describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all probes held open until every port is chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
        return ports


@dataclass(frozen=True)
class DeliveredMail:
    """One message as virtual(8) stored it in a recipient's Maildir."""

    path: Path
    recipient: str
    #: The file as stored: LF line ends, with Return-Path/Delivered-To on top.
    raw: bytes

    @property
    def wire(self) -> bytes:
        """The message with CRLF line ends, i.e. as Postfix would pass it on over SMTP.

        Postfix keeps lines without terminators in its queue and the Maildir uses LF,
        so this is exact for any message whose lines end in CRLF.
        """
        return self.raw.replace(b"\n", b"\r\n")

    @property
    def body(self) -> bytes:
        """Everything after the header block (CRLF line ends)."""
        return self.wire.split(b"\r\n\r\n", 1)[1]

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str | None:
        match = re.search(rb"^Message-ID:\s*(\S+)", self.raw, re.IGNORECASE | re.MULTILINE)
        return match[1].decode("ascii", "replace") if match else None


class PostfixInstance:
    def __init__(self, base: Path, mode: Mode, relay_env: dict[str, str] | None = None) -> None:
        self.base = base
        self.mode: Mode = mode
        self.config_dir = base / "etc"
        self.queue_dir = base / "queue"
        self.data_dir = base / "data"
        self.mail_dir = base / "mail"
        self.maillog_path = base / "maillog"
        self.submission_port, self.reinject_port, self.relay_port = free_ports(3)
        self.relay_env = dict(relay_env or {})
        self.relay: subprocess.Popen[bytes] | None = None
        self._relay_stack: contextlib.ExitStack | None = None
        self._relay_runs = 0
        self._started = False

    # ---------------------------------------------------------------- configuration
    def _postconf(self, *args: str) -> str:
        result = subprocess.run([POSTCONF, "-c", str(self.config_dir), *args],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (args, result.stderr)
        assert "warning" not in result.stderr, (args, result.stderr)
        return result.stdout

    def _base_main_cf(self) -> str:
        nobody = pwd.getpwnam("nobody")
        return "\n".join([
            "# --- test instance base (paths, loopback, local delivery); not shipped ---",
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {self.data_dir}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = postfix.test",
            "mydomain = test",
            "myorigin = $myhostname",
            "mydestination =",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            f"maillog_file = {self.maillog_path}",
            f"maillog_file_prefixes = {self.base}",
            f"virtual_mailbox_domains = {', '.join(LOCAL_DOMAINS)}",
            f"virtual_mailbox_base = {self.mail_dir}",
            "virtual_mailbox_maps = static:inbox/",
            f"virtual_uid_maps = static:{nobody.pw_uid}",
            f"virtual_gid_maps = static:{nobody.pw_gid}",
            "default_transport = error:5.7.1 this test instance delivers locally only",
            "relay_transport = $default_transport",
            "",
        ])

    def configure(self) -> None:
        for directory in (self.config_dir, self.queue_dir, self.data_dir, self.mail_dir):
            directory.mkdir(parents=True, exist_ok=True)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        snippets = SNIPPETS / self.mode
        stock = next(path for path in STOCK_MASTER_CF if path.exists())
        (self.config_dir / "main.cf").write_text(
            self._base_main_cf() + "\n# --- shipped " + f"config/postfix/{self.mode}/main.cf ---\n"
            + (snippets / "main.cf").read_text()
        )
        (self.config_dir / "master.cf").write_text(
            stock.read_text() + f"\n# --- shipped config/postfix/{self.mode}/master.cf ---\n"
            + (snippets / "master.cf").read_text()
        )
        # Base edits: no port 25, no chroot (the queue directory has no /etc copies).
        if self.mode == "milter":
            # Port 25 stays, on a loopback port: organizer notices are submitted there.
            self._postconf("-F", f"smtp/inet/service = 127.0.0.1:{self.reinject_port}")
        else:
            self._postconf("-M#", "smtp/inet")
        self._postconf("-F", "*/*/chroot = n")
        # Ports only, in the shipped snippets' own terms.
        if self.mode == "after-queue":
            relay = f"webinar-proxy:[127.0.0.1]:{self.relay_port}"
            self._postconf("-e", f"webinar_proxy_content_filter = {relay}")
        elif self.mode == "before-queue":
            self._postconf("-e", f"webinar_proxy_proxy_filter = 127.0.0.1:{self.relay_port}")
        else:
            self._configure_milter()
        self._postconf("-F", f"submission/inet/service = 127.0.0.1:{self.submission_port}")
        if self.mode != "milter":
            self._postconf("-F", f"127.0.0.1:10026/inet/service = 127.0.0.1:{self.reinject_port}")
        self._postconf("-n")  # the whole main.cf: no "unused parameter" warnings

    def _configure_milter(self) -> None:
        """The milter's address, no DKIM signer, and Cyrus SASL (sasldb) with the test users.

        The one departure from the shipped snippet: no TLS on submission (the test has
        no certificate), so ``smtpd_tls_security_level`` is ``none`` there.
        """
        self._postconf("-e", f"webinar_proxy_milter = inet:127.0.0.1:{self.relay_port}", "dkim_milter =")
        self._postconf("-P", "submission/inet/smtpd_tls_security_level=none")
        sasl = self.config_dir / "sasl"  # where Debian's Postfix looks, whatever cyrus_sasl_config_path says
        sasl.mkdir(exist_ok=True)
        database = sasl / "sasldb2"
        (sasl / "smtpd.conf").write_text(
            f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
            f"sasldb_path: {database}\n")
        for user, password in SASL_USERS.items():
            local, _, realm = user.partition("@")
            subprocess.run([SASLPASSWD2, "-p", "-c", "-f", str(database), "-u", realm, local],
                           input=password.encode(), check=True, capture_output=True, timeout=30)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(database, postfix_user.pw_uid, postfix_user.pw_gid)
        self._postconf("-e", f"cyrus_sasl_config_path = {sasl}", "smtpd_sasl_type = cyrus",
                       "smtpd_sasl_path = smtpd")

    def service_parameters(self, service: str) -> dict[str, str]:
        """``-o`` overrides of one master.cf service, e.g. ``"submission/inet"`` (as renamed)."""
        service = {"submission/inet": f"127.0.0.1:{self.submission_port}/inet",
                   "reinject/inet": f"127.0.0.1:{self.reinject_port}/inet"}.get(service, service)
        values = {}
        for line in self._postconf("-P").splitlines():
            name, _, value = line.partition(" =")
            value = value.removeprefix(" ")
            if name.startswith(service + "/"):
                values[name.removeprefix(service + "/")] = value
        return values

    # ---------------------------------------------------------------- Postfix itself
    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(POSTFIX), "-c", str(self.config_dir), command],
                              capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        self.configure()
        result = self._postfix("start")
        assert result.returncode == 0, result.stdout + result.stderr + self.maillog()
        self._started = True
        wait_until(lambda: _accepts(self.submission_port) and _accepts(self.reinject_port), 30,
                   "Postfix to listen", self.maillog)

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if not self._started:
            return
        pid = self._master_pid()
        result = self._postfix("stop")
        if pid is not None:
            try:
                wait_until(lambda: gone(pid), 30, "the Postfix master to exit")
            except AssertionError:
                self._postfix("abort")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise AssertionError("Postfix did not stop: " + result.stdout + result.stderr) from None
        self._started = False

    def maillog(self) -> str:
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---------------------------------------------------------------- the relay
    def start_relay(self, env: dict[str, str] | None = None, timeout: float = 30) -> None:
        """Start ``python -m webinar_proxy serve`` on the port Postfix uses; return once READY=1."""
        assert self.relay is None, "the relay is already running"
        self._relay_runs += 1
        full_env = {
            "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{self.relay_port}",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{self.reinject_port}",
            "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "5",
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_STORE__URL": f"sqlite:///{self.base}/state.db",
        }
        if self.mode == "before-queue":  # below smtpd_proxy_timeout (100 s)
            full_env["WEBINAR_PROXY_SMTP__DEADLINE_SECONDS"] = "60"
        if self.mode == "milter":
            full_env.update({
                "WEBINAR_PROXY_SMTP__ENABLED": "false",
                "WEBINAR_PROXY_MILTER__LISTEN": f"inet:127.0.0.1:{self.relay_port}",
                "WEBINAR_PROXY_MILTER__NOTICE_SUBMIT": f"127.0.0.1:{self.reinject_port}",
            })
        full_env.update(self.relay_env)
        full_env.update(env or {})
        stack = contextlib.ExitStack()
        try:
            listener = stack.enter_context(notify_socket())
            full_env["NOTIFY_SOCKET"] = listener.env_value
            self.relay = stack.enter_context(
                serve_process(full_env, ready=None,
                              log_path=self.base / f"relay-{self._relay_runs}.log"))
            listener.wait_for("READY", "1", timeout=timeout, process=self.relay)
        except BaseException as exc:
            stack.close()
            self.relay = None
            raise AssertionError(f"relay did not start:\n{self.relay_log()}") from exc
        self._relay_stack = stack

    def stop_relay(self, timeout: float = 30) -> int:
        """SIGTERM (as systemd stops it); returns the exit status."""
        assert self.relay is not None and self._relay_stack is not None, "the relay is not running"
        self.relay.send_signal(signal.SIGTERM)
        try:
            status = self.relay.wait(timeout=timeout)
        finally:
            self._relay_stack.close()
            self.relay = None
            self._relay_stack = None
        return status

    def relay_log(self) -> str:
        path = self.base / f"relay-{self._relay_runs}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---------------------------------------------------------------- mail in, mail out
    def submit(self, message: bytes, mail_from: str, rcpts: list[str],
               mail_options: tuple[str, ...] = (), login: str | None = None) -> str | None:
        """Submit over SMTP to the submission port; returns the queue id from the final reply.

        ``message`` must use CRLF line ends. Raises ``smtplib.SMTPResponseException``
        on a refusal (e.g. a 451 from the before-queue proxy).
        """
        with smtplib.SMTP("127.0.0.1", self.submission_port, local_hostname="client.test",
                          timeout=120) as client:
            client.ehlo()
            if login is not None:
                client.login(login, SASL_USERS[login])
            code, reply = client.mail(mail_from, list(mail_options))
            if code != 250:
                raise smtplib.SMTPResponseException(code, reply)
            for rcpt in rcpts:
                code, reply = client.rcpt(rcpt)
                if code not in (250, 251):
                    raise smtplib.SMTPResponseException(code, reply)
            code, reply = client.data(message)
            if code != 250:
                raise smtplib.SMTPResponseException(code, reply)
        match = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
        return match[1].decode() if match else None

    def delivered(self) -> list[DeliveredMail]:
        """Every message in every Maildir, oldest first."""
        found = []
        for path in (self.mail_dir / "inbox" / "new").glob("*"):
            raw = path.read_bytes()
            match = re.search(rb"^Delivered-To: (\S+)", raw, re.MULTILINE)
            recipient = match[1].decode() if match else ""
            found.append((path.stat().st_mtime_ns, path.name, DeliveredMail(path, recipient, raw)))
        return [mail for _, _, mail in sorted(found, key=lambda item: item[:2])]

    def wait_delivered(self, count: int = 1, *, message_id: str | None = None,
                       timeout: float = 30) -> list[DeliveredMail]:
        """Wait until at least ``count`` copies (of ``message_id``, if given) were delivered."""

        def matching() -> list[DeliveredMail]:
            mails = self.delivered()
            if message_id is not None:
                mails = [mail for mail in mails if mail.message_id == message_id]
            return mails if len(mails) >= count else []

        return wait_until(matching, timeout, f"{count} delivered message(s)", self._state)  # type: ignore[return-value]

    def queue(self) -> list[dict]:
        """``postqueue -j``: one dict per queued message (queue_name, queue_id, recipients…)."""
        result = subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-j"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_queue(self, predicate: Callable[[list[dict]], bool], what: str,
                   timeout: float = 30) -> list[dict]:
        def check() -> tuple[list[dict]] | None:
            entries = self.queue()
            return (entries,) if predicate(entries) else None  # a tuple: truthy even when empty

        [entries] = wait_until(check, timeout, what, self._state)  # type: ignore[misc]
        return entries

    def flush(self) -> None:
        """``postqueue -f``: deliver deferred mail now (forgets "dead" destinations too)."""
        result = subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-f"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr

    def reset(self) -> None:
        """Between tests: drop queued mail and delivered mail."""
        subprocess.run([POSTSUPER, "-c", str(self.config_dir), "-d", "ALL"],
                       capture_output=True, timeout=30, check=True)
        for child in self.mail_dir.iterdir():
            shutil.rmtree(child)

    def _state(self) -> str:
        return (f"queue: {self.queue()}\ndelivered: {[m.path.name for m in self.delivered()]}\n"
                f"--- maillog ---\n{self.maillog()[-6000:]}\n--- relay log ---\n{self.relay_log()[-3000:]}")


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0



@contextlib.contextmanager
def postfix_instance(mode: Mode, relay_env: dict[str, str] | None = None,
                     start_relay: bool = True) -> Iterator[PostfixInstance]:
    """A running private Postfix (and relay) for ``mode``; everything removed afterwards.

    The base directory is made with ``tempfile.mkdtemp`` and opened to 0755 (pytest's
    tmp_path sits under a 0700 directory, which the unprivileged Postfix daemons and
    the delivery user cannot traverse).
    """
    reason = skip_reason()
    if reason:
        raise RuntimeError(reason)
    base = Path(tempfile.mkdtemp(prefix=f"webinar-proxy-postfix-{mode}-"))
    base.chmod(0o755)
    instance = PostfixInstance(base, mode, relay_env)
    try:
        instance.start()
        if start_relay:
            instance.start_relay()
        yield instance
    finally:
        try:
            if instance.relay is not None:
                instance.stop_relay()
        finally:
            instance.stop()
            shutil.rmtree(base, ignore_errors=True)


def fresh(instance: PostfixInstance) -> PostfixInstance:
    """The instance with the relay running, an empty queue and empty mailboxes."""
    if instance.relay is None:
        instance.start_relay()
    instance.reset()
    return instance
