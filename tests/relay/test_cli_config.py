"""``check-config`` and ``serve`` start-up: exit codes, one line per problem, no secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support.relay import REPO
from webinar_proxy.settings import ConfigError, HostPort, load_settings

TOKEN = "tok-3b9f0c51d2e84a7f-SECRET"


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 30):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEBINAR_PROXY_")}
    clean.pop("CREDENTIALS_DIRECTORY", None)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "webinar_proxy", *args],
        cwd=REPO, env=clean, capture_output=True, text=True, timeout=timeout,
    )


def test_shipped_example_config_is_valid_with_a_token():
    result = _run(
        ["check-config", "--config", str(REPO / "config" / "webinar-proxy.toml")],
        {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_missing_token_is_reported_and_exits_2():
    result = _run(["check-config"])
    assert result.returncode == 2
    assert "webinar.token: missing" in result.stderr


def test_each_problem_gets_one_line_and_the_token_is_never_printed(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text(
        '[smtp]\nlisten = "localhost"\nnext_hop = "[::1]:99999"\nunknown_key = 1\n'
        f'[webinar]\ntoken = "{TOKEN}"\napi_url = "{TOKEN}"\n'
    )
    result = _run(["check-config", "--config", str(config)], {"WEBINAR_PROXY_SMTP__BOGUS": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.endswith("smtp.listen: 'localhost' is not 'host:port' (IPv6 as '[::1]:port')")
               for line in lines), lines
    assert any("smtp.next_hop: port 99999 is out of range" in line for line in lines), lines
    assert any("smtp.unknown_key: unknown key" in line for line in lines), lines
    assert any("WEBINAR_PROXY_SMTP__BOGUS: unknown setting" in line for line in lines), lines
    assert any(line.startswith("webinar-proxy: webinar.api_url:") for line in lines), lines
    assert len(lines) == 5, lines
    assert TOKEN not in result.stdout + result.stderr


def test_serve_exits_2_on_a_bad_config_before_binding(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text('[smtp]\nlisten = "127.0.0.1:notaport"\n')
    result = _run(["serve", "--config", str(config)], {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN})
    assert result.returncode == 2
    assert "smtp.listen" in result.stderr


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "c.toml"
    config.write_text('[smtp]\nlisten = "127.0.0.1:2525"\nnext_hop = "127.0.0.1:2526"\n')
    monkeypatch.setenv("WEBINAR_PROXY_SMTP__NEXT_HOP", "[::1]:10026")
    monkeypatch.setenv("WEBINAR_PROXY_SMTP__ALLOWED_CLIENTS", "10.1.0.0/16, ::1/128")
    monkeypatch.setenv("WEBINAR_PROXY_POLICY__ORGANIZER_DOMAINS", '["example.org"]')
    settings = load_settings(config)
    assert settings.smtp.listen == HostPort("127.0.0.1", 2525)
    assert settings.smtp.next_hop == HostPort("::1", 10026)
    assert [str(n) for n in settings.smtp.allowed_clients] == ["10.1.0.0/16", "::1/128"]
    assert settings.policy.organizer_domains == ("example.org",)
    with pytest.raises(ValidationError):  # frozen: loaded once, never changed
        settings.smtp.deadline_seconds = 1  # type: ignore[misc]


def test_token_from_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "webinar-token").write_text(TOKEN + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = load_settings(None)
    assert settings.webinar.token is not None
    assert settings.webinar.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


def test_bad_toml_is_one_clear_problem(tmp_path: Path):
    config = tmp_path / "broken.toml"
    config.write_text("[smtp\nlisten=")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert len(caught.value.problems) == 1
    assert "not valid TOML" in caught.value.problems[0]


def test_version_and_help():
    version = _run(["--version"])
    assert version.returncode == 0 and version.stdout.startswith("webinar-proxy ")
    help_text = _run(["--help"]).stdout
    for command in ("serve", "check-config", "inspect", "fake-webinar", "conferences"):
        assert command in help_text


def test_a_bad_join_template_is_a_config_problem(tmp_path: Path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "join_ru.txt").write_text("Ссылка: $url\n")  # $link is required, $url unknown
    result = _run(["check-config"], {
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
        "WEBINAR_PROXY_POLICY__TEMPLATE_DIR": str(templates),
    })
    assert result.returncode == 2
    assert result.stderr.startswith("webinar-proxy: policy.template_dir:"), result.stderr
