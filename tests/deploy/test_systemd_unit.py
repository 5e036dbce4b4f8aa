"""The shipped unit ``systemd/webinar-proxy.service``: systemd accepts it, its promises match
the program (exit 2 on bad config, credential name, state path, stop timeout), and its
sandbox scores well in ``systemd-analyze security``."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import clean_env
from tests.support.relay import free_port
from tests.support.systemd import REPO
from webinar_proxy.settings import TOKEN_CREDENTIAL, SmtpSettings, StoreSettings

UNIT = REPO / "systemd" / "webinar-proxy.service"
SHIPPED_COMMAND = "/usr/local/bin/webinar-proxy"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def unit_settings() -> dict[str, list[str]]:
    """Key → values (systemd keys may repeat, so configparser cannot read a unit)."""
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min)?", value)
    assert match, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The shipped unit with its command path pointed at this venv's ``webinar-proxy``.

    ``systemd-analyze verify`` checks that every Exec* binary exists and is executable,
    and the shipped unit names /usr/local/bin/webinar-proxy (where ``pip install .`` as
    root puts it), which a test machine need not have. Only that path is replaced.
    """
    command = Path(sys.executable).with_name("webinar-proxy")
    assert command.exists(), command
    lines = UNIT.read_text().splitlines(keepends=True)
    exec_lines = [i for i, line in enumerate(lines) if line.startswith("ExecStart")]
    assert len(exec_lines) == 2  # ExecStartPre and ExecStart
    for i in exec_lines:
        assert lines[i].count(SHIPPED_COMMAND) == 1, lines[i]
        lines[i] = lines[i].replace(SHIPPED_COMMAND, str(command))
    copy = tmp_path / UNIT.name  # verify wants the unit's own file name
    copy.write_text("".join(lines))
    return copy


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path):
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit_for_this_machine(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # verify reports unknown keys and bad values as warnings with exit 0: demand silence.
    assert result.stdout + result.stderr == ""


@needs_systemd_analyze
def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path):
    broken = unit_for_this_machine(tmp_path)
    broken.write_text(broken.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomme=yes"))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(broken)],
                            capture_output=True, text=True, timeout=60)
    assert "ProtectHomme" in result.stdout + result.stderr


@needs_systemd_analyze
def test_security_exposure_stays_low(tmp_path: Path):
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit_for_this_machine(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {result.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    # 0 = fully locked down, 10 = unprotected. The relay needs the network, so the
    # network items cost it about 1 point; keep it at "OK" or better.
    assert float(match[1]) <= 2.0, result.stdout


def test_unit_matches_what_the_program_does():
    unit = unit_settings()
    assert unit["Type"] == ["notify"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["ExecStartPre"] == [f"{SHIPPED_COMMAND} check-config"]
    assert unit["ExecStart"] == [f"{SHIPPED_COMMAND} serve"]
    # The stop timeout leaves room for the whole drain (plus start-up of the shutdown).
    grace = SmtpSettings.model_fields["shutdown_grace_seconds"].default
    assert seconds(unit["TimeoutStopSec"][0]) >= grace + 10
    # The credential has the name the settings read from $CREDENTIALS_DIRECTORY.
    [credential] = unit["LoadCredential"]
    assert credential.split(":", 1)[0] == TOKEN_CREDENTIAL
    # The default SQLite store lives in the StateDirectory.
    [state] = unit["StateDirectory"]
    assert StoreSettings.model_fields["url"].default == f"sqlite:///var/lib/{state}/state.db"
    assert unit["ConfigurationDirectory"] == ["webinar-proxy"]
    assert unit["Environment"] == ["WEBINAR_PROXY_CONFIG=/etc/webinar-proxy/webinar-proxy.toml"]
    assert unit["UMask"] == ["0077"]
    for key, value in {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "MemoryDenyWriteExecute": "yes", "DynamicUser": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
    }.items():
        assert unit[key] == [value], key
    assert "@system-service" in unit["SystemCallFilter"]
    assert seconds(unit["WatchdogSec"][0]) > 0


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = clean_env("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET")
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "webinar_proxy", *args],
                          cwd=REPO, env=clean, capture_output=True, text=True, timeout=60)


def _credentials(tmp_path: Path, token: str = "tok-from-credential") -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / TOKEN_CREDENTIAL).write_text(token + "\n")
    return directory


def test_example_config_passes_the_units_start_check_with_the_credential(tmp_path: Path):
    # What ExecStartPre does on a host: the config from $WEBINAR_PROXY_CONFIG, the token
    # from the credential only.
    result = _run(["check-config"], {
        "WEBINAR_PROXY_CONFIG": str(REPO / "config" / "webinar-proxy.toml"),
        "CREDENTIALS_DIRECTORY": str(_credentials(tmp_path)),
    })
    assert result.returncode == 0, result.stderr
    assert "tok-from-credential" not in result.stdout + result.stderr


BAD_CONFIGS = {
    "unknown key": '[smtp]\nlisten = "127.0.0.1:{port}"\nlissten = "x"\n',
    "bad value": '[smtp]\nlisten = "127.0.0.1:{port}"\nshutdown_grace_seconds = -1\n',
    "not TOML": '[smtp\nlisten = "127.0.0.1:{port}"\n',
    "no token": '[smtp]\nlisten = "127.0.0.1:{port}"\n',
}


@pytest.mark.parametrize("problem", list(BAD_CONFIGS))
def test_bad_config_exits_with_the_status_the_unit_does_not_restart_on(tmp_path: Path, problem: str):
    [prevent] = unit_settings()["RestartPreventExitStatus"]
    port = free_port()
    config = tmp_path / "webinar-proxy.toml"
    config.write_text(BAD_CONFIGS[problem].format(port=port))
    env = {"WEBINAR_PROXY_CONFIG": str(config),
           "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db"}
    if problem != "no token":
        env["CREDENTIALS_DIRECTORY"] = str(_credentials(tmp_path))
    for command in ("check-config", "serve"):  # ExecStartPre, then ExecStart
        result = _run([command], env)
        assert str(result.returncode) == prevent, (command, result.returncode, result.stderr)
        assert result.stderr.startswith("webinar-proxy: "), result.stderr
    # serve gave up before binding anything
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
