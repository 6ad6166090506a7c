"""The sign-up password policy (NIST SP 800-63B 3.1.1.2: a blocklist of breached passwords, the
email and its derivatives, repeated or sequential characters) and Unicode normalisation of
passwords before hashing and verifying; login verifies whatever was stored before."""

from __future__ import annotations

import unicodedata

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import passwords as security
from app.auth.passwords import COMMON_PASSWORDS, Weakness, weakness
from tests.fixtures.accounts import (
    LOGIN_URL,
    PASSWORD,
    SIGNUP_URL,
    assert_unauthorized,
    count_rows,
    store_user,
)

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

EMAIL = "ada@example.com"
COMMON = "Password is too common; choose another."
PATTERN = "Password is a simple pattern of repeated or consecutive characters; choose another."
NEAR_EMAIL = "Password is too close to your email address; choose another."
TOO_SHORT = "Password must be at least 8 characters long."
# Typed on a keyboard that makes full-width letters (an IME): NFKC makes them ASCII.
FULL_WIDTH_PASSWORD = "".join(
    chr(ord(character) + 0xFEE0) if character != " " else "\u3000" for character in PASSWORD
)
LONG_COMMON_PASSWORDS = sorted(p for p in COMMON_PASSWORDS if len(p) >= 8)
# Alphabets whose letters stay themselves under NFKC and case folding, so a run stays a run.
RUN_ALPHABETS = [
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "".join(map(chr, range(0x4E00, 0x4E40))),  # CJK ideographs
]


@pytest.mark.parametrize(
    ("password", "detail", "kind"),
    [
        ("12345678", COMMON, "password_common"),
        ("password", COMMON, "password_common"),
        ("Password1", COMMON, "password_common"),
        ("\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44", COMMON, "password_common"),
        ("        ", PATTERN, "password_pattern"),
        ("aaaaaaaa", PATTERN, "password_pattern"),
        ("abcdefgh", PATTERN, "password_pattern"),
        ("ZYXWVUTSR", PATTERN, "password_pattern"),
        ("abcabcab", PATTERN, "password_pattern"),
        ("xyz98765", PATTERN, "password_pattern"),
        (EMAIL, NEAR_EMAIL, "password_email"),
        ("ADA@EXAMPLE.COM", NEAR_EMAIL, "password_email"),
        ("ada12345", NEAR_EMAIL, "password_email"),
        ("ada-ada-ada!", NEAR_EMAIL, "password_email"),
        # Eight code points, four characters once composed: the minimum counts characters.
        ("e\u0301" * 4, TOO_SHORT, "string_too_short"),
    ],
)
async def test_signup_refuses_an_obvious_password_with_a_sentence_and_stores_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, password: str, detail: str, kind: str
) -> None:
    response = await client.post(SIGNUP_URL, json={"email": EMAIL, "password": password})

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"] == detail
    assert body["code"] == "validation_error"
    assert body["errors"] == [
        {"loc": ["body", "password"], "msg": detail.removeprefix("Password ")[:-1], "type": kind}
    ]
    if password.strip():  # never echoed (the loc names the field "password" itself)
        assert password not in body["detail"]
        assert password not in body["errors"][0]["msg"]
    assert await count_rows(engine, "users") == 0


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "ada lovelace 1815",  # holds the local part, and plenty besides
        "Tr0ub4dor&3",
        "\u017c\u00f3\u0142w \u0142owi \u017cab\u0119",
        "\U0001f511\U0001f510\U0001f512\U0001f513\U0001f5dd\ufe0f\U0001f6aa\U0001f3e0",
    ],
)
async def test_signup_accepts_a_password_outside_the_policy(
    client: httpx.AsyncClient, password: str
) -> None:
    response = await client.post(SIGNUP_URL, json={"email": EMAIL, "password": password})

    assert response.status_code == 201, response.text


async def test_signup_compares_the_password_with_the_normalised_email(
    client: httpx.AsyncClient,
) -> None:
    # The email is "ada@example.com" once normalised, and so is the password once folded.
    response = await client.post(
        SIGNUP_URL, json={"email": "\uff41\uff44\uff41@Example.com", "password": "Ada@example.com"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == NEAR_EMAIL


async def test_with_an_invalid_email_only_the_email_is_reported(
    client: httpx.AsyncClient,
) -> None:
    # No address to compare with: the password is judged by the other rules alone.
    response = await client.post(SIGNUP_URL, json={"email": "ada", "password": "ada12345"})

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["errors"]] == [["body", "email"]]


@pytest.mark.parametrize("password", ["12345678", "aaaaaaaa", "password", "ada@example.com"])
async def test_login_still_verifies_a_password_the_policy_would_now_refuse(
    client: httpx.AsyncClient, engine: AsyncEngine, password: str
) -> None:
    stored = await store_user(engine, password=password, email=EMAIL)

    response = await client.post(LOGIN_URL, json={"email": EMAIL, "password": password})

    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(stored.id)


# --- normalisation ---------------------------------------------------------------------------


async def test_a_password_is_hashed_in_nfkc_so_either_spelling_logs_in(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    created = await client.post(SIGNUP_URL, json={"email": EMAIL, "password": FULL_WIDTH_PASSWORD})
    assert created.status_code == 201, created.text

    typed_in_ascii = await client.post(LOGIN_URL, json={"email": EMAIL, "password": PASSWORD})
    typed_full_width = await client.post(
        LOGIN_URL, json={"email": EMAIL, "password": FULL_WIDTH_PASSWORD}
    )

    assert typed_in_ascii.status_code == 200, typed_in_ascii.text
    assert typed_full_width.status_code == 200, typed_full_width.text
    async with engine.connect() as connection:
        stored_hash = (
            await connection.execute(
                text("SELECT password_hash FROM users WHERE email = :email"), {"email": EMAIL}
            )
        ).scalar_one()
    assert security._password_hash.verify(PASSWORD, stored_hash)
    assert not security._password_hash.verify(FULL_WIDTH_PASSWORD, stored_hash)


async def test_an_account_hashed_before_normalisation_still_logs_in_as_typed(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # What signup stored before passwords were normalised: the hash of the password as typed.
    stored = await store_user(engine, password=FULL_WIDTH_PASSWORD)

    as_typed = await client.post(
        LOGIN_URL, json={"email": stored.email, "password": FULL_WIDTH_PASSWORD}
    )
    normalised = await client.post(LOGIN_URL, json={"email": stored.email, "password": PASSWORD})

    assert as_typed.status_code == 200, as_typed.text
    assert as_typed.json()["user"]["id"] == str(stored.id)
    # That hash knows only the form it was made from.
    assert_unauthorized(normalised, "invalid_credentials")


async def test_a_password_normalisation_changes_costs_two_verifications_known_user_or_not(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raw form's second try runs for unknown emails too, so it does not tell them apart."""
    stored = await store_user(engine)
    verified_against: list[str] = []
    real_verify = security._password_hash.verify

    def spy(password: str, password_hash: str) -> bool:
        verified_against.append(password_hash)
        return real_verify(password, password_hash)

    monkeypatch.setattr(security._password_hash, "verify", spy)
    wrong = "\uff57\uff52\uff4f\uff4e\uff47 password"  # full-width: NFKC changes it

    unknown = await client.post(LOGIN_URL, json={"email": "nobody@x.io", "password": wrong})
    known = await client.post(LOGIN_URL, json={"email": stored.email, "password": wrong})

    assert_unauthorized(unknown, "invalid_credentials")
    assert_unauthorized(known, "invalid_credentials")
    assert verified_against[:2] == [security._DUMMY_HASH] * 2
    assert len(verified_against) == 4
    assert verified_against[2] == verified_against[3] != security._DUMMY_HASH


# --- the policy as a function: its invariants ----------------------------------------------


@settings(max_examples=300)
@given(st.sampled_from(LONG_COMMON_PASSWORDS), st.lists(st.booleans(), min_size=20))
def test_every_common_password_is_refused_in_any_case(password: str, upper: list[bool]) -> None:
    mixed = "".join(c.upper() if flip else c for c, flip in zip(password, upper, strict=False))

    assert weakness(mixed) is Weakness.COMMON


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=5), st.integers(min_value=2, max_value=20))
def test_a_short_piece_repeated_is_refused(piece: str, times: int) -> None:
    password = piece * times
    # Else NFKC may compose across the seams ("\u0301e" twice is "\u0301\u00e9"): another text.
    assume(unicodedata.normalize("NFKC", password) == password)

    assert weakness(password) is not None


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(RUN_ALPHABETS),
            st.integers(min_value=0, max_value=20),
            st.integers(min_value=2, max_value=20),
            st.booleans(),
        ),
        min_size=1,
        max_size=2,
    )
)
def test_one_or_two_runs_of_consecutive_characters_are_refused(
    runs: list[tuple[str, int, int, bool]],
) -> None:
    password = ""
    for alphabet, start, length, descending in runs:
        run = alphabet[start : start + length]
        password += run[::-1] if descending else run

    assert weakness(password) is not None


@settings(max_examples=300)
@given(
    st.text("abcdefghijklmnopqrstuvwxyz.", min_size=3, max_size=20),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=7),
    st.booleans(),
)
def test_the_local_part_with_fewer_than_eight_more_characters_is_refused(
    local_part: str, extra: str, extra_first: bool
) -> None:
    password = extra + local_part if extra_first else local_part + extra

    assert weakness(password, f"{local_part}@example.com") is not None


@settings(max_examples=300)
@given(st.text(min_size=8, max_size=30))
def test_the_verdict_is_the_same_for_every_spelling_nfkc_makes_one(password: str) -> None:
    assert weakness(password) == weakness(unicodedata.normalize("NFKC", password))


def test_the_blocklist_is_the_breached_password_list_zxcvbn_ships() -> None:
    assert len(COMMON_PASSWORDS) == 30_000
    assert {"12345678", "password", "iloveyou", "trustno1"} <= COMMON_PASSWORDS
    assert PASSWORD not in COMMON_PASSWORDS
