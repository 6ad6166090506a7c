"""The headers a safe write reads, parsed on their own: Idempotency-Key (bare or quoted, 1-255
printable ASCII), If-Match (strong comparison) and If-None-Match (weak comparison)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.http.conditional import (
    InvalidIfMatchError,
    InvalidIfNoneMatchError,
    Precondition,
    none_match,
    version_etag,
)
from app.idempotency.errors import InvalidIdempotencyKeyError
from app.idempotency.keys import IdempotentRequest, parse_idempotency_key

MAX_VERSION = 2**31 - 1
PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))
printable_keys = st.text(alphabet=PRINTABLE, min_size=1, max_size=255)
versions = st.integers(min_value=0, max_value=MAX_VERSION)


def quote(key: str) -> str:
    """The draft's sf-string form of ``key``."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def looks_quoted(key: str) -> bool:
    return len(key) >= 2 and key[0] == key[-1] == '"'


# --- Idempotency-Key -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("abc", "abc"),
        ('"abc"', "abc"),
        ("  abc\t", "abc"),
        ('\t"abc" ', "abc"),
        ('"a\\"b"', 'a"b'),
        ('"a\\\\b"', "a\\b"),
        ("a b", "a b"),
        ('" a "', " a "),
        ("k" * 255, "k" * 255),
        ('"' + "k" * 255 + '"', "k" * 255),
        ('"abc', '"abc'),  # not a quoted string: a bare key that starts with a quote
        ("550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
    ],
)
def test_a_key_is_read_bare_or_quoted(header: str, key: str) -> None:
    assert parse_idempotency_key(header) == key


@pytest.mark.parametrize(
    "header",
    [
        "",
        " ",
        "\t",
        '""',
        '"   "',
        "k" * 256,
        '"' + "k" * 256 + '"',
        "cl\xe9",
        "a\x00b",
        "a\x01b",
        "a\x7fb",
        "a\tb",
        "a\nb",
        "abc\n",  # a regex's $ matches before a final newline; the key must end where it ends
        '"abc"\n',
    ],
)
def test_an_invalid_key_is_refused(header: str) -> None:
    with pytest.raises(InvalidIdempotencyKeyError):
        parse_idempotency_key(header)


@given(printable_keys.filter(lambda key: key.strip(" ") == key and not looks_quoted(key)))
def test_any_printable_key_round_trips_bare(key: str) -> None:
    assert parse_idempotency_key(key) == key


@given(printable_keys.filter(lambda key: key.strip(" ") != ""))
def test_any_printable_key_round_trips_quoted(key: str) -> None:
    assert parse_idempotency_key(quote(key)) == key


@given(printable_keys.filter(lambda key: key.strip(" ") == key and not looks_quoted(key)))
def test_the_bare_and_the_quoted_form_are_one_key(key: str) -> None:
    assert parse_idempotency_key(key) == parse_idempotency_key(quote(key))


@given(st.text(min_size=1, max_size=300).filter(lambda key: not set(key) <= set(PRINTABLE)))
def test_a_key_with_anything_but_printable_ascii_is_refused(key: str) -> None:
    # Surrounding spaces and tabs are the header's, not the key's.
    if set(key.strip(" \t")) <= set(PRINTABLE) and key.strip(" \t"):
        return
    with pytest.raises(InvalidIdempotencyKeyError):
        parse_idempotency_key(key)


@given(st.text(alphabet=PRINTABLE.replace('"', ""), min_size=256, max_size=400))
def test_a_key_longer_than_255_characters_is_refused(key: str) -> None:
    if len(key.strip(" ")) <= 255:
        return  # the spaces around it are the header's
    with pytest.raises(InvalidIdempotencyKeyError):
        parse_idempotency_key(key)


def fingerprint(body: bytes, /, **changes: object) -> bytes:
    """The fingerprint of a PATCH of task t1 with ``body``, but for ``changes``."""
    request: dict[str, object] = {
        "method": "PATCH",
        "route": "/api/{user_id}/tasks/{task_id}",
        "path": {"task_id": "t1"},
        "body": body,
    }
    request.update(changes)
    return IdempotentRequest.of("k", **request).fingerprint  # type: ignore[arg-type]


def test_the_fingerprint_ignores_json_spacing_and_member_order() -> None:
    assert fingerprint(b'{"title":"a","completed":true}') == fingerprint(
        b' {\n"completed" : true,  "title":"a"} '
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"body": b'{"title":"b","completed":true}'},
        {"body": b'{"title":"a"}'},
        {"body": b'{"title":"a","completed":true,"description":null}'},
        {"method": "PUT"},
        {"route": "/api/{user_id}/tasks/{task_id}/complete"},
        {"path": {"task_id": "t2"}},
        {"body": b""},
        {"body": b"{not json"},
    ],
)
def test_the_fingerprint_tells_apart_the_method_route_path_and_body(
    changes: dict[str, object],
) -> None:
    assert fingerprint(b'{"title":"a","completed":true}', **changes) != fingerprint(
        b'{"title":"a","completed":true}'
    )


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=5),
        max_size=6,
    )
)
def test_the_fingerprint_of_a_json_object_does_not_depend_on_member_order(
    members: dict[str, object],
) -> None:
    forwards = orjson.dumps(members)
    backwards = orjson.dumps(dict(reversed(list(members.items()))))
    assert fingerprint(forwards) == fingerprint(backwards)


# --- If-Match ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("*", None),
        (" * ", None),
        ('"3"', (3,)),
        (' "3" ', (3,)),
        ('"1", "7"', (1, 7)),
        ('"1","7"\t,  "9"', (1, 7, 9)),
        # RFC 9110 5.6.1.2: empty list elements are accepted and ignored.
        ('"1",,"7"', (1, 7)),
        ('"1",', (1,)),
        (', "1" ,', (1,)),
        ('W/"3"', ()),  # strong comparison: a weak tag matches nothing
        ('W/"3", "4"', (4,)),
        ('"abc"', ()),
        ('""', ()),
        ('"-1"', ()),
        ('"+3"', ()),
        ('"3.0"', ()),
        # An Arabic-Indic three (UTF-8, read as Latin-1 like every header) is not a version.
        ('"\xd9\xa3"', ()),
        (f'"{MAX_VERSION}"', (MAX_VERSION,)),
        (f'"{MAX_VERSION + 1}"', ()),
    ],
)
def test_if_match_names_the_versions_it_accepts(
    header: str, accepted: tuple[int, ...] | None
) -> None:
    assert Precondition.parse(header).versions == accepted


def test_if_match_compares_tags_character_by_character() -> None:
    # RFC 9110 8.8.3.2: "01" and "1" are different entity tags, so "01" names no version.
    assert Precondition.parse('"01"').versions == ()


@pytest.mark.parametrize(
    "header",
    [
        *("", " ", "3", '"3', '3"', "W/3", 'w/"3"', '"3" "4"', '"3";"4"', "**", '* , "3"'),
        '"a b"',
        '"3"\n',  # a regex's $ matches before a final newline; the header ends where it ends
        '"3", ' * 1000 + '"3"',  # longer than any client sends
    ],
)
def test_a_malformed_if_match_is_refused(header: str) -> None:
    with pytest.raises(InvalidIfMatchError):
        Precondition.parse(header)


@given(st.lists(versions, min_size=1, max_size=20))
def test_any_list_of_strong_version_tags_is_read_back(numbers: list[int]) -> None:
    header = ", ".join(version_etag(n) for n in numbers)

    assert Precondition.parse(header).versions == tuple(numbers)


@given(st.lists(st.tuples(versions, st.booleans()), min_size=1, max_size=20))
def test_weak_tags_in_a_list_are_dropped_and_strong_ones_kept(tags: list[tuple[int, bool]]) -> None:
    header = ",".join(("W/" if weak else "") + version_etag(n) for n, weak in tags)

    assert Precondition.parse(header).versions == tuple(n for n, weak in tags if not weak)


# --- If-None-Match -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "etag", "matches"),
    [
        ("*", '"1"', True),
        ('"1"', '"1"', True),
        ('W/"1"', '"1"', True),
        ('"1"', 'W/"1"', True),
        ('W/"ab"', 'W/"ab"', True),
        ('"2", W/"1"', '"1"', True),
        ('"2",, "1",', '"1"', True),
        ('"2"', '"1"', False),
        ('"01"', '"1"', False),
        ('"ab"', 'W/"abc"', False),
    ],
)
def test_if_none_match_compares_weakly(header: str, etag: str, matches: bool) -> None:
    assert none_match(header, etag) is matches


@pytest.mark.parametrize("header", ["", "1", '"1', "W/1", '"1" "2"', "**", '"1",,x', '"1"\n'])
def test_a_malformed_if_none_match_is_refused(header: str) -> None:
    with pytest.raises(InvalidIfNoneMatchError):
        none_match(header, '"1"')


@given(versions, versions, st.booleans(), st.booleans())
def test_if_none_match_matches_exactly_the_same_version_weak_or_strong(
    sent: int, current: int, sent_weak: bool, current_weak: bool
) -> None:
    header = ("W/" if sent_weak else "") + version_etag(sent)
    etag = ("W/" if current_weak else "") + version_etag(current)

    assert none_match(header, etag) is (sent == current)
