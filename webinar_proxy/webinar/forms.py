"""PHP-style bracket forms, the Webinar API's request encoding, in both directions.

The platform takes ``application/x-www-form-urlencoded`` bodies whose keys carry the
nesting: ``startsAt[date][year]=2025``, ``users[0][email]=a@example.org``,
``participationIds[0]=7``.  ``encode_form`` flattens a nested mapping into such pairs
(the client's side); ``decode_form`` rebuilds the nesting from pairs (the fake's side)
and accepts both array spellings seen in the wild, ``ids[]=…`` and ``ids[0]=…``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_KEY_RE = re.compile(r"^(?P<head>[^\[\]]+)(?P<rest>(?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A form key or value that cannot be decoded into one consistent structure."""


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested mapping → ``[(bracket key, text value), …]``; ``None`` values are left out.

    Booleans become ``true``/``false`` (send ``0``/``1`` as ints where the API wants
    those); sequences get indexed keys, the form the documentation writes.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        pairs.extend(_flatten_value(name, value))
    return pairs


def _flatten_value(name: str, value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return flatten(value, name)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        pairs: list[tuple[str, str]] = []
        for index, item in enumerate(value):
            pairs.extend(_flatten_value(f"{name}[{index}]", item))
        return pairs
    return [(name, _scalar(value))]


def encode_form(data: Mapping[str, Any]) -> bytes:
    """Nested mapping → an urlencoded body with bracket keys."""
    return urlencode(flatten(data)).encode("ascii")


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``[(bracket key, value), …]`` → nested dicts and lists.

    ``a[]`` appends; a mapping whose keys are all decimal indexes becomes a list in
    index order.  Conflicting keys (``a=1`` and ``a[b]=2``) raise ``FormError``.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY_RE.match(key)
        if not match:
            raise FormError(f"malformed form key {key!r}")
        path = [match["head"], *_PART_RE.findall(match["rest"])]
        _insert(root, path, value, key)
    return _listify(root)


def _insert(node: dict[str, Any], path: list[str], value: str, key: str) -> None:
    for position, part in enumerate(path):
        last = position == len(path) - 1
        if part == "":
            # ``a[]``: the next free index of this level.
            part = str(sum(1 for existing in node if existing.isdigit()))
        if last:
            if isinstance(node.get(part), dict):
                raise FormError(f"form key {key!r} conflicts with a nested key")
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise FormError(f"form key {key!r} conflicts with a plain key")
        node = child


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
