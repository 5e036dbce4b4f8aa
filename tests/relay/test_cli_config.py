"""``check-config`` and ``serve`` start-up: exit codes, one line per problem, no secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support.env import clean_env
from tests.support.relay import REPO
from webinar_proxy.settings import ConfigError, HostPort, load_settings

TOKEN = "tok-3b9f0c51d2e84a7f-SECRET"


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 30):
    clean = clean_env()
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


def test_every_mistake_is_reported_at_once_one_plain_line_each(tmp_path: Path):
    config = tmp_path / "mistakes.toml"
    config.write_text(
        '[smtp]\nallowed_clients = ["127.0.0.0/8", "10.1.2.3/16", "bogus"]\n'
        '[webinar]\ndefault_timezone = "Mars/Olympus"\n'
        f'[policy]\ntemplate_dir = "{tmp_path / "no-such-dir"}"\nnotice_from = "not an address"\n'
        'location_keyword = ""\ndefault_timezone = "Moscow"\n'
        '[logging]\nlevel = "verbose"\n'
    )
    result = _run(["check-config", "--config", str(config)])  # and no token either
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    keys = [line.removeprefix("webinar-proxy: ").split(":")[0] for line in lines]
    assert sorted(keys) == sorted([
        "webinar.token", "smtp.allowed_clients", "webinar.default_timezone", "policy.template_dir",
        "policy.notice_from", "policy.location_keyword", "policy.default_timezone", "logging.level",
    ]), lines
    text = result.stderr
    assert "'Mars/Olympus' is not an IANA time zone" in text
    assert "'10.1.2.3/16' has host bits set (did you mean '10.1.0.0/16'?)" in text
    assert "'bogus' is not an IP network" in text
    assert "is not a directory" in text
    assert "'not an address' is not a mail address" in text
    assert "policy.location_trigger = false" in text  # the way to turn the keyword off
    assert "lax-or-strict" not in text and "function-plain" not in text


def test_template_dir_must_hold_valid_templates_for_every_language(tmp_path: Path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "join_en.html").write_text("<p>no link here</p>\n")  # not the configured language
    result = _run(["check-config"], {
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN, "WEBINAR_PROXY_POLICY__TEMPLATE_DIR": str(templates),
    })
    assert result.returncode == 2
    assert "policy.template_dir:" in result.stderr and "join_en.html" in result.stderr
    assert "must contain $link" in result.stderr
    (templates / "join_en.html").write_text('<p><a href="$link">$label</a></p>\n')
    assert _run(["check-config"], {
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN, "WEBINAR_PROXY_POLICY__TEMPLATE_DIR": str(templates),
    }).returncode == 0


def test_the_location_trigger_is_turned_off_by_its_own_key(tmp_path: Path):
    invitation = REPO / "examples" / "invitation.eml"
    on = _run(["inspect", str(invitation), "--json"])
    off = _run(["inspect", str(invitation), "--json"], {"WEBINAR_PROXY_POLICY__LOCATION_TRIGGER": "false"})
    assert on.returncode == off.returncode == 0, on.stderr + off.stderr
    assert '"conference_requested": true' in on.stdout
    assert '"conference_requested": false' in off.stdout


def test_listeners_off_loopback_get_a_warning_but_pass(tmp_path: Path):
    env = {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN, "WEBINAR_PROXY_METRICS__LISTEN": "0.0.0.0:9100",
           "WEBINAR_PROXY_SMTP__LISTEN": "[::]:10025"}
    result = _run(["check-config"], env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("webinar-proxy: warning: ")]
    assert len(warnings) == 2, result.stderr
    assert any("metrics.listen: 0.0.0.0:9100 is not a loopback address" in line for line in warnings)
    assert any("smtp.listen: [::]:10025 is not a loopback address" in line for line in warnings)
    quiet = _run(["check-config"], {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
                                    "WEBINAR_PROXY_METRICS__LISTEN": "[::1]:9100"})
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_every_command_takes_log_level_and_ends_its_help_with_exit_codes():
    from webinar_proxy.cli import build_parser

    [commands] = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in commands.choices:
        result = _run([name, "--help"])
        assert result.returncode == 0, name
        assert "--log-level" in result.stdout, name
        assert "exit status:" in result.stdout and "  0  " in result.stdout, name
    assert "SIGHUP" in _run(["serve", "--help"]).stdout
    assert "$CREDENTIALS_DIRECTORY/webinar-token" in _run(["check-config", "--help"]).stdout
    bad = _run(["check-config", "--log-level", "loud"])
    assert bad.returncode == 2 and "--log-level" in bad.stderr


def test_addresses_are_checked_by_email_validator_and_internal_domains_pass():
    def check(**env: str) -> subprocess.CompletedProcess[str]:
        return _run(["check-config"], {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN, **env})

    assert check(WEBINAR_PROXY_POLICY__NOTICE_FROM="Webinar <noreply@corp.local>").returncode == 0
    assert check(WEBINAR_PROXY_POLICY__TRUSTED_SENDERS='["www-data@cal.corp.test"]').returncode == 0
    refused = check(WEBINAR_PROXY_POLICY__NOTICE_FROM="noreply@localhost",
                    WEBINAR_PROXY_POLICY__TRUSTED_SENDERS='["ok@example.org", "a b@example.org"]')
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("webinar-proxy: policy.notice_from: 'noreply@localhost' is not a mail")
    assert lines[1].startswith("webinar-proxy: policy.trusted_senders: 'a b@example.org' is not a mail")


def test_a_rate_limit_without_margin_under_the_platforms_gets_a_warning_but_passes():
    loud = _run(["check-config"], {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
                                   "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "2"})
    assert loud.returncode == 0, loud.stderr
    assert "webinar.rate_limit: 2 requests/s leaves no margin" in loud.stderr
    quiet = _run(["check-config"], {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN})  # 1.8 by default
    assert quiet.returncode == 0 and quiet.stderr == ""
