"""The one configuration model of webinar-proxy.

Settings are read once at start-up, from a TOML file (``--config PATH`` or the
environment variable ``WEBINAR_PROXY_CONFIG``) and from environment variables
``WEBINAR_PROXY_<SECTION>__<KEY>`` (the environment wins), validated into a frozen
model and passed down.  Nothing else in the package reads the environment or a
config file.  Validation problems come back as plain one-line messages that never
contain the API token.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

import email_validator
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

ENV_PREFIX = "WEBINAR_PROXY_"
CONFIG_ENV = "WEBINAR_PROXY_CONFIG"
#: Name of the systemd credential (``LoadCredential=webinar-token:…``) holding the token.
TOKEN_CREDENTIAL = "webinar-token"


def available_cores() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class HostPort(NamedTuple):
    """A TCP endpoint; IPv6 hosts are kept without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOSTPORT_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^\[\]:]+)):(?P<port>\d{1,5})$")


def parse_host_port(value: Any) -> HostPort:
    if isinstance(value, HostPort):
        return value
    if isinstance(value, list | tuple) and len(value) == 2:
        value = f"{value[0]}:{value[1]}" if ":" not in str(value[0]) else f"[{value[0]}]:{value[1]}"
    if not isinstance(value, str):
        raise ValueError("expected 'host:port' (IPv6 as '[::1]:port')")
    match = _HOSTPORT_RE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not 'host:port' (IPv6 as '[::1]:port')")
    host = match["v6"] or match["host"]
    if match["v6"]:
        try:
            ipaddress.IPv6Address(match["v6"].split("%")[0])
        except ValueError:
            raise ValueError(f"{match['v6']!r} is not an IPv6 address") from None
    port = int(match["port"])
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return HostPort(host, port)


HostPortField = Annotated[HostPort, BeforeValidator(parse_host_port), NoDecode]


def _list_from_env(value: Any) -> Any:
    """Lists come from TOML as arrays and from the environment as JSON or 'a, b'."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("not a JSON list") from None
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def _networks(value: Any) -> Any:
    """Each entry an IP network, explained in plain words when it is not one."""
    value = _list_from_env(value)
    if not isinstance(value, list | tuple):
        return value
    networks = []
    problems = []
    for entry in value:
        if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(entry)
            continue
        text = str(entry).strip()
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                problems.append(f"{text!r} is not an IP network")
            else:
                problems.append(f"{text!r} has host bits set (did you mean '{loose}'?)")
    if problems:
        raise ValueError("; ".join(problems) + " (write networks as '127.0.0.0/8', '::1/128' or '192.0.2.7')")
    return tuple(networks)


NetworkList = Annotated[
    tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    BeforeValidator(_networks),
    NoDecode,
]
DomainList = Annotated[tuple[str, ...], BeforeValidator(_list_from_env), NoDecode]


def _mail_address_problem(address: str) -> str | None:
    """Why ``address`` (a bare ``local@domain``) is not a mail address, or None."""
    local, _, domain = address.rpartition("@")
    parent, _, top = domain.rpartition(".")
    if parent and top.lower() in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        # Internal names (corp.local, relay.test) are normal inside an organization;
        # email-validator refuses them for the Internet, so only the rest's shape is checked.
        address = f"{local}@{parent}.org"
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        return str(exc)
    return None


def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    checked, problems = [], []
    for value in values:
        address = value.strip().strip("<>").strip().lower()
        if (problem := _mail_address_problem(address)) is not None:
            problems.append(f"{value!r} is not a mail address ({problem})")
        checked.append(address)
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(checked)


AddressList = Annotated[
    tuple[str, ...], BeforeValidator(_list_from_env), AfterValidator(_addresses), NoDecode
]


def _https_or_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("not an http(s) URL")
    return value.rstrip("/")


UrlField = Annotated[str, AfterValidator(_https_or_http_url)]


def _iana_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'Europe/Moscow', 'UTC')") from None
    return value


#: A time zone by its IANA name, known to this machine's zone database.
IanaZone = Annotated[str, AfterValidator(_iana_zone)]


def _address_or_empty(value: str) -> str:
    if not value.strip():
        return ""
    address = email.utils.parseaddr(value)[1] if "<" in value else value.strip()
    if (problem := _mail_address_problem(address)) is not None:
        raise ValueError(f"{value!r} is not a mail address ({problem})")
    return value.strip()


#: A mail address (``a@example.org`` or ``Name <a@example.org>``); empty = unset.
AddressOrEmpty = Annotated[str, AfterValidator(_address_or_empty)]


def _template_dir(value: Path | None) -> Path | None:
    if value is None:
        return None
    if not value.is_dir():
        raise ValueError(f"{str(value)!r} is not a directory")
    from webinar_proxy.invitation import LANGUAGES, JoinTemplates

    problems = []
    for language in LANGUAGES:
        try:
            JoinTemplates.load(language, value)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return value


#: A directory of join-block templates; every ``join_<language>.<txt|html>`` in it must be valid.
TemplateDir = Annotated[Path | None, AfterValidator(_template_dir)]


def _keyword(value: str) -> str:
    if not value.strip():
        raise ValueError("empty: it would match nothing (to turn the keyword off, set "
                         "policy.location_trigger = false)")
    return value


def _store_url(value: str) -> str:
    if not (value.startswith("sqlite:///") or re.match(r"^postgres(ql)?://", value)):
        raise ValueError(f"{value!r}: expected sqlite:///PATH or postgresql://…")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpSettings(_Section):
    #: False: no SMTP listener (the milter alone serves; see [milter]).
    enabled: bool = True
    listen: HostPortField = HostPort("127.0.0.1", 10025)
    next_hop: HostPortField = HostPort("127.0.0.1", 10026)
    allowed_clients: NetworkList = (
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv6Network("::1/128"),
    )
    max_message_size: int = Field(52_428_800, ge=1024)
    deadline_seconds: float = Field(300.0, gt=0, le=3600)
    #: Name this relay gives in its banner and in EHLO to the next hop.
    hostname: str = "webinar-proxy"
    #: Seconds a client may stay silent between commands before it is dropped with 421.
    idle_timeout_seconds: float = Field(300.0, gt=0)
    #: Seconds to connect to the next hop (within the deadline).
    next_hop_connect_timeout_seconds: float = Field(30.0, gt=0)
    #: Seconds that in-flight transactions get to finish after SIGTERM.
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    #: Client connections at once; one more is told 421 before the banner and closed.
    max_connections: int = Field(100, ge=1)
    #: Recipients per transaction (Postfix's smtpd_recipient_limit default); more get 452.
    max_recipients: int = Field(1000, ge=1)
    #: Relay processes sharing the listeners; unset: one per core.  1: one process, no supervisor.
    workers: int | None = Field(None, ge=1, le=256)
    #: With several workers: seconds a worker's event loop may go without a heartbeat
    #: to the supervisor before the supervisor kills and replaces it.
    worker_stall_seconds: float = Field(30.0, ge=1, le=3600)

    def worker_count(self) -> int:
        """``workers``, or the number of cores this process may run on when unset."""
        return self.workers if self.workers is not None else available_cores()


class WebinarSettings(_Section):
    api_url: UrlField = "https://userapi.mts-link.ru/v3"
    token: SecretStr | None = None
    #: Requests per second towards the platform, for all relays using this token
    #: together (they share the pace through the store).  The platform allows 2; the
    #: default keeps a margin, as exact 0.5 s spacing meets 429s from jitter.
    rate_limit: float = Field(1.8, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    read_timeout_seconds: float = Field(20.0, gt=0)
    #: Budget for one API operation including its retries.
    call_deadline_seconds: float = Field(60.0, gt=0)
    #: Zone used when the platform lacks the meeting's zone (platform id 1 = Moscow).
    default_timezone: IanaZone = "Europe/Moscow"
    #: Owner (organization member id) for conferences whose organizer is not a member.
    default_owner_id: int | None = None
    #: Interface language of created events ("RU" or "EN").
    lang: Literal["RU", "EN"] = "RU"


class StoreSettings(_Section):
    url: Annotated[str, AfterValidator(_store_url)] = "sqlite:///var/lib/webinar-proxy/state.db"
    #: Days a deleted conference stays in the store before it is purged.
    deleted_retention_days: int = Field(30, ge=0)
    #: PostgreSQL: most connections for queries.
    pool_size: int = Field(10, ge=1, le=1000)
    #: PostgreSQL: most key locks held at once (one connection each); more wait for one.
    lock_pool_size: int = Field(40, ge=1, le=1000)
    #: PostgreSQL: seconds to wait for a connection (at start and from the pool).
    connect_timeout_seconds: float = Field(10.0, gt=0)
    #: SQLite: seconds to wait for another process's write lock on the file.
    busy_timeout_seconds: float = Field(5.0, gt=0)


def _login_map(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("not a JSON object") from None
    if not isinstance(value, Mapping):
        raise ValueError("expected a table of login = [addresses]")
    result = {}
    for login, addresses in value.items():
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list | tuple) or not all(isinstance(a, str) for a in addresses):
            raise ValueError(f"{login!r}: expected a list of addresses")
        result[str(login).strip().lower()] = tuple(a.strip().lower() for a in addresses)
    return result


LoginMap = Annotated[Mapping[str, tuple[str, ...]], BeforeValidator(_login_map), NoDecode]


class PolicySettings(_Section):
    organizer_domains: DomainList = ()
    location_keyword: Annotated[str, AfterValidator(_keyword)] = "@webinar"
    #: False: LOCATION never asks for a conference (the other triggers still do).
    location_trigger: bool = True
    #: Language of the join block and organizer notices ("ru" or "en").
    language: Literal["ru", "en"] = "ru"
    #: Directory with administrator templates overriding the shipped ones.
    template_dir: TemplateDir = None
    #: Zone in which floating (zone-less) times in invitations are read.
    default_timezone: IanaZone = "Europe/Moscow"
    #: Organizer domains whose every invitation gets a conference, keyword or not.
    always_domains: DomainList = ()
    #: When the platform cannot be reached after retries: "tempfail" answers 451 so the
    #: MTA retries later; "deliver" forwards the invitation without a link and tells the
    #: organizer.
    on_api_failure: Literal["tempfail", "deliver"] = "tempfail"
    #: Send the organizer a short notice when a conference is created, removed, or
    #: could not be created.
    notify_organizer: bool = True
    #: From: of organizer notices; empty = "webinar-noreply@<organizer's domain>".
    notice_from: AddressOrEmpty = ""
    #: The platform's limit of participants per conference.
    max_attendees: int = Field(10_000, ge=1)
    #: Who counts as the organizer: "envelope_or_from" = the envelope sender or
    #: From: equals ORGANIZER or its SENT-BY; "envelope" = only an envelope sender equal to
    #: ORGANIZER (the address Postfix can bind to the SASL login), so a forged From: or
    #: SENT-BY acts on nothing (delegates sending for the organizer are then not honoured).
    #: "login" = the SASL login the MTA reports (milter) maps to ORGANIZER, see login_addresses.
    organizer_check: Literal["envelope_or_from", "envelope", "login"] = "envelope_or_from"
    #: SASL login → the addresses it may organize for; a login not listed stands for itself.
    login_addresses: LoginMap = Field(default_factory=dict)
    #: Envelope senders that speak for the ORGANIZER written in the invitation: calendar
    #: servers (Nextcloud, Baïkal) that mail invitations for their users from their own
    #: address.  The organizer's domain must still be served.
    trusted_senders: AddressList = ()
    #: Worker processes that run the invitation engine (classify, rewrite, next
    #: occurrence), never the event loop, in each relay process; unset = the cores
    #: shared out over ``smtp.workers`` (at least one each), so the group as a whole
    #: has one per core.  A restart applies it.
    engine_workers: int | None = Field(None, ge=1, le=256)
    #: Longest one engine call may take; a worker past it is killed and replaced, and
    #: its mail forwarded unchanged ("not processable: engine timeout").
    engine_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    #: Address-space limit of each engine worker, in MiB; a worker past it is replaced
    #: and its mail forwarded unchanged ("engine memory").  A restart applies it.
    engine_memory_mb: int = Field(512, ge=32, le=1024 * 1024)


class SchedulerSettings(_Section):
    #: Seconds between scheduler passes (roll recurring conferences forward, retry
    #: deletes, clean up interrupted creations, purge old rows).
    interval_seconds: float = Field(60.0, gt=0)
    #: Longest wait between two attempts to delete a conference the platform refused to delete.
    delete_retry_max_seconds: float = Field(3600.0, gt=0)
    #: A creation interrupted this long ago (crash, lost connection) is cleaned up.
    stale_creating_seconds: float = Field(3600.0, gt=0)
    #: A batch of attendee registrations a relay took is free for any relay again after
    #: this long without being finished (the relay crashed or was killed).
    registration_lease_seconds: float = Field(120.0, gt=0)


class MilterAddress(NamedTuple):
    """Where the milter listens: ``inet:host:port`` or ``unix:/path`` (Postfix's notation)."""

    kind: Literal["inet", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"inet:{HostPort(self.host, self.port)}"


def parse_milter_address(value: Any) -> MilterAddress:
    if isinstance(value, MilterAddress):
        return value
    if not isinstance(value, str):
        raise ValueError("expected 'inet:host:port' or 'unix:/path'")
    kind, _, rest = value.strip().partition(":")
    if kind in ("unix", "local") and rest.startswith("/"):
        return MilterAddress("unix", path=rest)
    if kind == "inet":
        host, port = parse_host_port(rest)
        return MilterAddress("inet", host, port)
    raise ValueError(f"{value!r} is not 'inet:host:port' or 'unix:/absolute/path'")


class MilterSettings(_Section):
    #: Where the milter listens (``inet:127.0.0.1:8899``, ``unix:/run/…/milter.sock``); unset = off.
    listen: Annotated[MilterAddress, BeforeValidator(parse_milter_address), NoDecode] | None = None
    #: Where organizer notices are submitted (``host:port``, e.g. Postfix's port 25 on loopback);
    #: unset = ``smtp.next_hop``.
    notice_submit: HostPortField | None = None
    #: Seconds between keep-alives (SMFIR_PROGRESS) while a message waits for the platform.
    progress_interval_seconds: float = Field(30.0, gt=0)


class MetricsSettings(_Section):
    #: Where to serve /metrics and /healthz (``host:port``, keep it loopback); unset = off.
    listen: HostPortField | None = None


def _level_name(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_level_name)]


class LoggingSettings(_Section):
    #: The relay's own messages from this level up; libraries (httpx, aiosmtpd, …) log
    #: WARNING and above unless the level is DEBUG.
    level: LogLevel = "INFO"


class Settings(BaseSettings):
    """Everything webinar-proxy is configured with; frozen once loaded."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    smtp: SmtpSettings = SmtpSettings()
    webinar: WebinarSettings = WebinarSettings()
    store: StoreSettings = StoreSettings()
    policy: PolicySettings = PolicySettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    milter: MilterSettings = MilterSettings()

    def engine_pool_size(self) -> int:
        """Engine worker processes per relay process: ``policy.engine_workers``, or the
        cores shared out over the relay processes (at least one each)."""
        if self.policy.engine_workers is not None:
            return self.policy.engine_workers
        return max(1, -(-available_cores() // self.smtp.worker_count()))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment wins over them.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one plain line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"{location}: unknown key"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    # pydantic echoes the offending input only in ``input``; we never print it, so a
    # token pasted into the wrong key cannot leak.
    return f"{location}: {message}" if location else message


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None


def _unknown_env_keys(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Environment variables with our prefix that name no setting, as (location, problem)."""
    problems = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        section = Settings.model_fields.get(parts[0])
        location = ".".join(parts)
        if section is None or len(parts) != 2:
            problems.append((location, f"{name}: unknown setting"))
            continue
        section_model = section.annotation
        if isinstance(section_model, type) and parts[1] not in section_model.model_fields:
            problems.append((location, f"{name}: unknown setting"))
    return problems


def _redact(problems: list[str], secrets: list[str]) -> list[str]:
    for secret in secrets:
        if len(secret) >= 4:
            problems = [problem.replace(secret, "***") for problem in problems]
    return problems


def _read_credential_token(environ: Mapping[str, str]) -> str | None:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / TOKEN_CREDENTIAL
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def load_settings(
    config_path: str | os.PathLike[str] | None = None, *, for_serving: bool = False
) -> Settings:
    """Read the file (if any) and the environment into a frozen ``Settings``.

    Raises ``ConfigError`` with every problem found.  ``for_serving``: a token is
    required too (``serve``, ``check-config``).
    """
    environ = os.environ
    if config_path is None and environ.get(CONFIG_ENV):
        config_path = environ[CONFIG_ENV]
    file_values: dict[str, Any] = _read_toml(Path(config_path)) if config_path else {}
    env_problems = _unknown_env_keys(environ)
    problems = [problem for _, problem in env_problems]
    reported = {location for location, _ in env_problems}
    credential = _read_credential_token(environ)
    secrets = [str(value) for value in (
        credential,
        environ.get(f"{ENV_PREFIX}WEBINAR__TOKEN"),
        (file_values.get("webinar") or {}).get("token") if isinstance(
            file_values.get("webinar"), dict) else None,
    ) if value]
    if for_serving and not any(secret.strip() for secret in secrets):
        problems.append(TOKEN_MISSING)
    if credential is not None and isinstance(file_values.get("webinar", {}), dict):
        # systemd's LoadCredential= wins over the file; an explicit env var wins over both.
        file_values["webinar"] = {**file_values.get("webinar", {}), "token": credential}
    try:
        settings = Settings(**file_values)
    except ValidationError as exc:
        problems.extend(
            _describe(error) for error in exc.errors()
            if ".".join(str(part) for part in error.get("loc", ())) not in reported
        )
        raise ConfigError(_redact(problems, secrets)) from None
    except SettingsError as exc:
        problems.append(str(exc).split(" from source")[0].replace("error parsing value", "bad value"))
        raise ConfigError(_redact(problems, secrets)) from None
    if problems:
        raise ConfigError(_redact(problems, secrets))
    return settings


TOKEN_MISSING = (
    "webinar.token: missing (set WEBINAR_PROXY_WEBINAR__TOKEN, the systemd credential "
    f"'{TOKEN_CREDENTIAL}', or [webinar] token in the config file)"
)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to may be reachable from outside


#: The platform's own limit per API token, and its hosts (the rate warning is for them).
PLATFORM_RATE = 2.0
PLATFORM_HOSTS = frozenset({"userapi.mts-link.ru", "userapi.webinar.ru"})


def settings_warnings(settings: Settings) -> list[str]:
    """Usable but probably unintended settings, one plain line each (not errors)."""
    warnings = []
    listen = settings.smtp.listen
    if not _is_loopback(listen.host):
        allowed = ", ".join(str(network) for network in settings.smtp.allowed_clients) or "nobody"
        warnings.append(
            f"smtp.listen: {listen} is not a loopback address: the relay is reachable from the "
            f"network (smtp.allowed_clients lets in {allowed}); use 127.0.0.1 or ::1 unless "
            "Postfix runs on another host"
        )
    metrics = settings.metrics.listen
    if metrics is not None and not _is_loopback(metrics.host):
        warnings.append(
            f"metrics.listen: {metrics} is not a loopback address: /metrics and /healthz are "
            "open to the network without authentication; use 127.0.0.1 or ::1, or firewall the port"
        )
    rate = settings.webinar.rate_limit
    if rate >= PLATFORM_RATE and urlsplit(str(settings.webinar.api_url)).hostname in PLATFORM_HOSTS:
        warnings.append(
            f"webinar.rate_limit: {rate:g} requests/s leaves no margin under the platform's "
            f"{PLATFORM_RATE:g}/s: requests arrive with jitter and some get 429; keep it at 1.8 "
            "or lower"
        )
    return warnings


def serve_problems(settings: Settings) -> list[str]:
    """What must also hold before ``serve`` may start (beyond the model's own checks)."""
    problems: list[str] = []
    token = settings.webinar.token
    if token is None or not token.get_secret_value().strip():
        problems.append(TOKEN_MISSING)
    if not settings.smtp.enabled and settings.milter.listen is None:
        problems.append("smtp.enabled: false needs milter.listen, or nothing would listen")
    if (not settings.smtp.enabled and settings.policy.notify_organizer
            and settings.milter.notice_submit is None):
        problems.append("milter.notice_submit: required when smtp.enabled is false and "
                        "policy.notify_organizer is true (where organizer notices go)")
    return problems
