"""The refresh token's format: what the server issues it accepts, and any change to a token
(one character, another session's salt, another key) is refused."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from app.sessions.refresh_tokens import MAX_GENERATION, SALT_BYTES, RefreshTokenKey, parse

KEY = RefreshTokenKey.from_secret("test-secret-" + "x" * 40)
OTHER_KEY = RefreshTokenKey.from_secret("another-secret-" + "y" * 40)

sessions = st.uuids()
generations = st.integers(min_value=0, max_value=MAX_GENERATION)
salts = st.binary(min_size=SALT_BYTES, max_size=SALT_BYTES)


@given(sessions, generations, salts)
def test_an_issued_token_parses_back_to_its_parts_and_verifies(
    session_id: uuid.UUID, generation: int, salt: bytes
) -> None:
    presented = parse(KEY.token(session_id, generation, salt))

    assert presented is not None
    assert (presented.session_id, presented.generation) == (session_id, generation)
    assert KEY.verify(presented, salt)
    assert not OTHER_KEY.verify(presented, salt)


@given(sessions, generations, salts, salts)
def test_a_token_does_not_verify_against_another_session_s_salt(
    session_id: uuid.UUID, generation: int, salt: bytes, other_salt: bytes
) -> None:
    presented = parse(KEY.token(session_id, generation, salt))

    assert presented is not None
    assert KEY.verify(presented, other_salt) == (salt == other_salt)


@given(sessions, generations, salts, st.data())
def test_changing_any_character_of_a_token_makes_it_refused(
    session_id: uuid.UUID, generation: int, salt: bytes, data: st.DataObject
) -> None:
    token = KEY.token(session_id, generation, salt)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    changed = token[:position] + replacement + token[position + 1 :]

    presented = parse(changed)

    # Either malformed, or well-formed with parts the MAC was not taken over.
    assert presented is None or not KEY.verify(presented, salt)


@given(st.text(max_size=120))
def test_parse_never_raises_on_arbitrary_text(text: str) -> None:
    parse(text)


def test_a_generation_beyond_the_column_s_range_is_malformed() -> None:
    token = KEY.token(uuid.uuid4(), 0, bytes(SALT_BYTES))
    session, _, mac = token.split(".")

    assert parse(f"{session}.{MAX_GENERATION + 1}.{mac}") is None
    assert parse(f"{session}.{MAX_GENERATION}.{mac}") is not None
