"""The engine's frozen options: limits, the join-block templates, the reader's view.

Templates are read from files once, by ``EngineOptions.from_settings`` (or
``JoinTemplates.load``); everything else here is pure.
"""

from __future__ import annotations

import html
import string
import zoneinfo
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from webinar_proxy.calendar import CalendarLimits, ReaderOptions
from webinar_proxy.mail import MimeLimits

DEFAULT_LINK_HOSTS = ("events.webinar.ru", "my.mts-link.ru", "events.mts-link.ru")
TRIGGER_PROPERTY = "X-WEBINAR-CONFERENCE"
TRIGGER_HEADER = "X-Webinar-Conference"
LANGUAGES = ("ru", "en")
TEMPLATE_FIELDS = ("link", "label")


@dataclass(frozen=True)
class JoinTemplates:
    """The join block as plain text and as HTML (``string.Template``, ``$link``, ``$label``)."""

    text: str
    html: str

    @classmethod
    def load(cls, language: str, template_dir: Path | None = None) -> JoinTemplates:
        """Shipped templates for ``language``, each replaced by the administrator's
        ``join_<language>.txt`` / ``join_<language>.html`` in ``template_dir`` if present.
        """
        if language not in LANGUAGES:
            raise ValueError(f"no join templates for language {language!r}")
        texts = {}
        for kind in ("txt", "html"):
            name = f"join_{language}.{kind}"
            override = template_dir / name if template_dir is not None else None
            if override is not None and override.is_file():
                texts[kind] = override.read_text(encoding="utf-8")
            else:
                texts[kind] = _shipped(name)
            _check_template(texts[kind], override if override and override.is_file() else name)
        return cls(text=texts["txt"], html=texts["html"])

    def render_text(self, link: str, label: str) -> str:
        return string.Template(self.text).substitute(link=link, label=label)

    def render_html(self, link: str, label: str) -> str:
        return string.Template(self.html).substitute(
            link=html.escape(link, quote=True), label=html.escape(label, quote=True)
        )


@cache
def _shipped(name: str) -> str:
    return resources.files("webinar_proxy").joinpath("templates", name).read_text("utf-8")


def _check_template(text: str, where: object) -> None:
    template = string.Template(text)
    names = {
        match.group("named") or match.group("braced")
        for match in template.pattern.finditer(text)
        if match.group("named") or match.group("braced")
    }
    unknown = names - set(TEMPLATE_FIELDS)
    if unknown or not template.is_valid():
        raise ValueError(f"{where}: unknown placeholders {sorted(unknown)} (use $link, $label)")
    if "link" not in names:
        raise ValueError(f"{where}: the template must contain $link")


@cache
def _default_templates(language: str) -> JoinTemplates:
    return JoinTemplates.load(language)


@dataclass(frozen=True)
class EngineLimits:
    """Beyond these a mail is "not processable" and forwarded unchanged."""

    mime: MimeLimits = field(default_factory=MimeLimits)
    calendar: CalendarLimits = field(default_factory=CalendarLimits)


@dataclass(frozen=True)
class EngineOptions:
    """The engine's frozen settings; ``from_settings`` reads ``settings.policy``."""

    location_keyword: str = "@webinar"
    #: Language of the join block: "ru" (default) or "en".
    language: str = "ru"
    #: Zone in which floating times and all-day dates are read.
    default_timezone: str = "Europe/Moscow"
    trigger_property: str = TRIGGER_PROPERTY
    trigger_header: str = TRIGGER_HEADER
    #: Hosts whose https links are ours (lower case).
    link_hosts: tuple[str, ...] = DEFAULT_LINK_HOSTS
    #: None: the shipped templates of ``language``.
    templates: JoinTemplates | None = None
    limits: EngineLimits = field(default_factory=EngineLimits)

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.default_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.default_timezone!r}") from exc
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}")

    @classmethod
    def from_settings(cls, settings: Any) -> EngineOptions:
        """Read ``settings.policy``; loads the administrator's templates (file I/O)."""
        policy = settings.policy
        return cls(
            location_keyword=policy.location_keyword if policy.location_trigger else "",
            language=policy.language,
            default_timezone=policy.default_timezone,
            templates=JoinTemplates.load(policy.language, policy.template_dir),
        )

    @property
    def join_templates(self) -> JoinTemplates:
        return self.templates or _default_templates(self.language)

    @property
    def reader(self) -> ReaderOptions:
        return _reader_options(self)


@cache
def _reader_options(options: EngineOptions) -> ReaderOptions:
    return ReaderOptions(
        default_timezone=options.default_timezone,
        location_keyword=options.location_keyword,
        trigger_property=options.trigger_property,
        link_hosts=tuple(host.lower() for host in options.link_hosts),
        limits=options.limits.calendar,
    )

