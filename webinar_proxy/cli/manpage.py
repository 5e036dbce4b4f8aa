"""webinar-proxy(8), rendered in roff from the command-line parser.

The page is generated, so it names every command and option the program has:
``python -m webinar_proxy.cli.manpage > man/webinar-proxy.8`` (``make man``); a test
checks that the shipped page is current, and the wheel installs it as
``share/man/man8/webinar-proxy.8``.
"""

from __future__ import annotations

import argparse
import sys

from webinar_proxy import __version__
from webinar_proxy.cli import build_parser

DESCRIPTION = """\
webinar-proxy sits between Postfix and the next hop as an after-queue content filter
(or a before-queue proxy).  Every calendar invitation (iTIP REQUEST) that asks for a
conference gets one on the Webinar (MTS Link) platform: the relay reserves it through the
user API v3, writes the join link into the invitation and its readable body, and forwards
the mail.  Updates move the conference, cancellations delete it.  All other mail passes
byte for byte.  The relay answers 250 only after the next hop answered 250; anything
unexpected is a temporary 451, so Postfix keeps the mail and retries."""

FILES = """\
/etc/webinar-proxy/webinar-proxy.toml
The configuration file the systemd unit passes with --config (an annotated example is
installed as share/webinar-proxy/webinar-proxy.toml).

/etc/webinar-proxy/token
The API token, given to the service as the systemd credential webinar-token and read
from $CREDENTIALS_DIRECTORY/webinar-token.

/var/lib/webinar-proxy/state.db
The default conference store (store.url); PostgreSQL is the alternative.

share/webinar-proxy/systemd/webinar-proxy.service, share/webinar-proxy/postfix/
The systemd unit and the Postfix snippets (after-queue and before-queue)."""

ENVIRONMENT = """\
WEBINAR_PROXY_CONFIG
The configuration file when --config is not given.

WEBINAR_PROXY_<SECTION>__<KEY>
Any setting, e.g. WEBINAR_PROXY_WEBINAR__TOKEN or WEBINAR_PROXY_STORE__URL; the
environment wins over the file.  Lists are JSON or comma-separated.

CREDENTIALS_DIRECTORY
Set by systemd; the token is read from its webinar-token file."""

EXIT_STATUS = """\
0 success; 1 a runtime failure; 2 a bad configuration or bad usage (the systemd unit's
RestartPreventExitStatus=2 relies on it).  Each command below lists its own."""

SEE_ALSO = """\
postfix(1), master(5), systemd.service(5), systemd.exec(5).  The deployment guide is
installed as share/doc/webinar-proxy/deployment.md."""


def _escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(text: str) -> str:
    return "\n.PP\n".join(_escape(" ".join(block.split())) for block in text.split("\n\n"))


def _tagged(text: str) -> str:
    """Blocks of 'TAG\\nexplanation' as .TP entries."""
    out = []
    for block in text.split("\n\n"):
        tag, _, rest = block.partition("\n")
        out.append(f".TP\n.B {_escape(tag)}\n{_escape(' '.join(rest.split()))}")
    return "\n".join(out)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            found.extend((name, helps.get(name, ""), sub) for name, sub in action.choices.items())
    return found


def _option_label(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"\\fB{_escape(name)}\\fR" for name in action.option_strings)
        if action.nargs == 0:
            return names
        if action.choices:
            value = "{" + ",".join(str(choice) for choice in action.choices) + "}"
        else:
            value = action.metavar or action.dest.upper()
        return f"{names} \\fI{_escape(str(value))}\\fR"
    return f"\\fI{_escape(str(action.metavar or action.dest))}\\fR"


def _options(parser: argparse.ArgumentParser) -> str:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        out.append(f".TP\n{_option_label(action)}\n{_escape(' '.join((action.help or '').split()))}")
    return "\n".join(out)


def _command(path: str, help_text: str, parser: argparse.ArgumentParser) -> str:
    out = [f'.SS "{_escape(path)}"', _escape(help_text[:1].upper() + help_text[1:]) + "."]
    if options := _options(parser):
        out.append(options)
    if parser.epilog:
        out.append(".PP\n.nf\n" + _escape(parser.epilog) + "\n.fi")
    for name, sub_help, sub in _subcommands(parser):
        out.append(f'.TP\n.B "{_escape(path)} {_escape(name)}"\n{_escape(sub_help)}.')
        if options := _options(sub):
            out.append(".RS\n" + options + "\n.RE")
    return "\n".join(out)


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole page as roff text."""
    parser = parser or build_parser()
    commands = _subcommands(parser)
    sections = [
        f'.TH WEBINAR\\-PROXY 8 "" "webinar-proxy {__version__}" "System Administration"',
        ".SH NAME",
        "webinar\\-proxy \\- outbound SMTP relay that gives calendar invitations a Webinar conference",
        ".SH SYNOPSIS",
        ".B webinar\\-proxy\n.RB [ \\-\\-version ]\n.I COMMAND\n.RI [ options ]",
        ".SH DESCRIPTION",
        _paragraphs(DESCRIPTION),
        ".PP\n" + _escape(" ".join((parser.description or "").split())),
        ".SH COMMANDS",
        "\n".join(_command(f"webinar-proxy {name}", help_text, sub) for name, help_text, sub in commands),
        ".SH EXIT STATUS",
        _paragraphs(EXIT_STATUS),
        ".SH ENVIRONMENT",
        _tagged(ENVIRONMENT),
        ".SH FILES",
        _tagged(FILES),
        ".SH SEE ALSO",
        _paragraphs(SEE_ALSO),
    ]
    return "\n".join(sections) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
