"""The [milter] section, smtp.enabled and policy.organizer_check = "login" as check-config sees them."""

from __future__ import annotations

import pytest

from webinar_proxy.lifecycle.decide import login_may_organize
from webinar_proxy.settings import ConfigError, MilterAddress, load_settings, serve_problems


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):
    for name in list(__import__("os").environ):
        if name.startswith("WEBINAR_PROXY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WEBINAR_PROXY_WEBINAR__TOKEN", "t0ken-for-settings")
    return monkeypatch


@pytest.mark.parametrize(("text", "address"), [
    ("inet:127.0.0.1:8899", MilterAddress("inet", "127.0.0.1", 8899)),
    ("inet:[::1]:8899", MilterAddress("inet", "::1", 8899)),
    ("unix:/run/webinar-proxy/milter.sock", MilterAddress("unix", path="/run/webinar-proxy/milter.sock")),
    ("local:/run/m.sock", MilterAddress("unix", path="/run/m.sock")),
])
def test_milter_listen_takes_postfix_notation(environment, text, address):
    environment.setenv("WEBINAR_PROXY_MILTER__LISTEN", text)
    settings = load_settings()
    assert settings.milter.listen == address
    assert str(settings.milter.listen).split(":")[0] == address.kind


@pytest.mark.parametrize("text", ["127.0.0.1:8899", "unix:relative.sock", "inet:host", "tcp:1.2.3.4:5"])
def test_a_bad_milter_address_is_one_problem_line(environment, text):
    environment.setenv("WEBINAR_PROXY_MILTER__LISTEN", text)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert [p for p in error.value.problems if p.startswith("milter.listen")]


def test_milter_alone_needs_a_listener_and_a_place_for_notices(environment):
    environment.setenv("WEBINAR_PROXY_SMTP__ENABLED", "false")
    problems = serve_problems(load_settings())
    assert any(p.startswith("smtp.enabled") for p in problems)
    assert any(p.startswith("milter.notice_submit") for p in problems)
    environment.setenv("WEBINAR_PROXY_MILTER__LISTEN", "inet:127.0.0.1:8899")
    environment.setenv("WEBINAR_PROXY_MILTER__NOTICE_SUBMIT", "127.0.0.1:25")
    assert serve_problems(load_settings()) == []


def test_login_addresses_from_the_environment_as_json(environment):
    environment.setenv("WEBINAR_PROXY_POLICY__ORGANIZER_CHECK", "login")
    environment.setenv("WEBINAR_PROXY_POLICY__LOGIN_ADDRESSES", '{"JDoe": ["John.Doe@example.org"]}')
    policy = load_settings().policy
    assert policy.login_addresses == {"jdoe": ("john.doe@example.org",)}
    assert login_may_organize("jdoe", "john.doe@example.org", policy.login_addresses)
    assert not login_may_organize("jdoe", "jdoe@example.org", policy.login_addresses)
    assert login_may_organize("ann@example.net", "ann@example.net", policy.login_addresses)
    assert not login_may_organize(None, "ann@example.net", policy.login_addresses)
