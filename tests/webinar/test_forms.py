"""Bracket-key form encoding (client side) and decoding (fake side)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webinar_proxy.webinar.forms import FormError, decode_form, encode_form, flatten

# Shapes of the platform's documented request examples (POST /events, register,
# invite, PUT), with our own values.
CREATE_EVENT_BODY = (
    "name=Planning&type=meeting&lang=RU"
    "&startsAt[date][year]=2025&startsAt[date][month]=3&startsAt[date][day]=10"
    "&startsAt[time][hour]=15&startsAt[time][minute]=0&timezone=1&duration=PT1H30M0S"
    "&accessSettings[isPasswordRequired]=0&accessSettings[isRegistrationRequired]=1"
    "&accessSettings[isModerationRequired]=0&ownerId=501"
)
INVITE_BODY = (
    "users[0][email]=a@example.org&users[0][name]=Anna&users[0][role]=GUEST"
    "&users[1][email]=b@example.org&users[1][secondName]=Petrov"
    "&isAutoEnter=true&sendEmail=false"
)


def test_decodes_the_create_event_example() -> None:
    form = decode_form(parse_qsl(CREATE_EVENT_BODY))
    assert form == {
        "name": "Planning", "type": "meeting", "lang": "RU",
        "startsAt": {"date": {"year": "2025", "month": "3", "day": "10"},
                     "time": {"hour": "15", "minute": "0"}},
        "timezone": "1", "duration": "PT1H30M0S",
        "accessSettings": {"isPasswordRequired": "0", "isRegistrationRequired": "1",
                           "isModerationRequired": "0"},
        "ownerId": "501",
    }


def test_decodes_indexed_users_into_a_list() -> None:
    form = decode_form(parse_qsl(INVITE_BODY))
    assert form["users"] == [
        {"email": "a@example.org", "name": "Anna", "role": "GUEST"},
        {"email": "b@example.org", "secondName": "Petrov"},
    ]
    assert form["isAutoEnter"] == "true"
    assert form["sendEmail"] == "false"


@pytest.mark.parametrize(
    "body",
    ["participationIds[0]=7&participationIds[1]=8", "participationIds[]=7&participationIds[]=8"],
)
def test_both_array_spellings_decode_alike(body: str) -> None:
    assert decode_form(parse_qsl(body)) == {"participationIds": ["7", "8"]}


def test_percent_encoded_brackets_decode_too() -> None:
    body = "startsAt%5Bdate%5D%5Byear%5D=2025&email=a%40example.org"
    assert decode_form(parse_qsl(body)) == {
        "startsAt": {"date": {"year": "2025"}}, "email": "a@example.org"
    }


@pytest.mark.parametrize(
    "pairs",
    [[("a", "1"), ("a[b]", "2")], [("a[b]", "2"), ("a", "1")], [("a]", "1")], [("[a]", "1")]],
)
def test_conflicting_or_malformed_keys_are_rejected(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(FormError):
        decode_form(pairs)


def test_encoding_uses_indexed_brackets_and_platform_booleans() -> None:
    pairs = flatten({
        "participationIds": [7, 8],
        "sendEmail": False,
        "isAutoEnter": True,
        "startsAt": {"date": {"year": 2025}},
        "omitted": None,
    })
    assert pairs == [
        ("participationIds[0]", "7"), ("participationIds[1]", "8"),
        ("sendEmail", "false"), ("isAutoEnter", "true"), ("startsAt[date][year]", "2025"),
    ]
    assert encode_form({"users": [{"email": "a@b.c"}]}) == b"users%5B0%5D%5Bemail%5D=a%40b.c"


_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_", min_size=1, max_size=6)
_values = st.text(alphabet="ab =&[]%@é", max_size=5)
_forms = st.recursive(
    _values,
    lambda children: st.one_of(
        st.dictionaries(_keys, children, min_size=1, max_size=4),
        st.lists(children, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


# Generation cost varies with machine load; the property, not the speed, is tested.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _forms, max_size=4))
def test_encode_then_decode_round_trips(data: dict) -> None:
    assert decode_form(parse_qsl(encode_form(data).decode(), keep_blank_values=True)) == data
