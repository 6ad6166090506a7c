"""One account per address however it is spelled: emails are normalised (NFKC, the local part
case-folded, the domain IDNA-mapped) before they are stored and before they are looked up.

Decision: case folding maps "ß" to "ss", so "straße@example.com" and "strasse@example.com" are
one account, as "Ada" and "ada" are. Mail systems that tell them apart are vanishingly rare,
while someone registering the other spelling to pass as its owner is the attack this stops. In
the domain, "ß" is kept (IDNA 2008): "straße.de" and "strasse.de" are different domains.
"""

from __future__ import annotations

import unicodedata

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.schemas import canonical_email
from tests.fixtures.accounts import LOGIN_URL, PASSWORD, SIGNUP_URL, count_rows

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

FULL_WIDTH_ADA = "\uff41\uff44\uff41@example.com"


async def stored_emails(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list(await connection.scalars(text("SELECT email FROM users ORDER BY email")))


@pytest.mark.parametrize(
    ("first", "second", "stored"),
    [
        (FULL_WIDTH_ADA, "ada@example.com", "ada@example.com"),
        ("ada@example.com", FULL_WIDTH_ADA, "ada@example.com"),
        (
            "ada\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
            "ADA@example.com",
            "ada@example.com",
        ),
        ("stra\u00dfe@example.com", "strasse@example.com", "strasse@example.com"),
        ("STRASSE@example.com", "stra\u00dfe@example.com", "strasse@example.com"),
        ("\ufb01ne@example.com", "fine@example.com", "fine@example.com"),  # the ligature "fi"
        ("a@M\u00dcNCHEN.de", "a@xn--mnchen-3ya.de", "a@m\u00fcnchen.de"),
        ("\u13a0@example.com", "\uab70@example.com", "\uab70@example.com"),  # Cherokee cases
    ],
)
async def test_look_alike_emails_are_one_account_and_either_spelling_logs_in(
    client: httpx.AsyncClient, engine: AsyncEngine, first: str, second: str, stored: str
) -> None:
    created = await client.post(SIGNUP_URL, json={"email": first, "password": PASSWORD})
    assert created.status_code == 201, created.text

    duplicate = await client.post(SIGNUP_URL, json={"email": second, "password": PASSWORD})
    logins = [
        await client.post(LOGIN_URL, json={"email": email, "password": PASSWORD})
        for email in (first, second)
    ]

    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["code"] == "email_taken"
    assert created.json()["email"] == stored
    assert await stored_emails(engine) == [stored]
    for login in logins:
        assert login.status_code == 200, login.text
        assert login.json()["user"]["id"] == created.json()["id"]


async def test_the_token_form_looks_the_email_up_normalised(client: httpx.AsyncClient) -> None:
    created = await client.post(SIGNUP_URL, json={"email": "ada@example.com", "password": PASSWORD})
    assert created.status_code == 201, created.text

    response = await client.post(
        "/api/auth/token", data={"username": FULL_WIDTH_ADA, "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == created.json()["id"]


async def test_a_sharp_s_in_the_domain_names_another_domain(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    for email in ("a@stra\u00dfe.de", "a@strasse.de"):
        response = await client.post(SIGNUP_URL, json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text

    assert await count_rows(engine, "users") == 2


LOCAL_PARTS = st.text(
    st.characters(
        categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Nd", "Nl", "No"),
        exclude_characters="@",
    ),
    min_size=1,
    max_size=20,
)
DOMAINS = st.sampled_from(
    ["example.com", "EXAMPLE.com", "\uff45xample.com", "m\u00fcnchen.de", "xn--mnchen-3ya.de"]
)


@settings(max_examples=400, deadline=None)
@given(LOCAL_PARTS, DOMAINS)
def test_the_normal_form_is_stable(local_part: str, domain: str) -> None:
    """Normalising again changes nothing (the token form validates the login body twice), and
    the result is lower case and NFKC, as the email_lowercase check and the lookups need."""
    try:
        email = canonical_email(f"{local_part}@{domain}")
    except ValueError:
        return  # not an address (the validator says why); nothing is stored or looked up

    assert canonical_email(email) == email
    assert email == email.lower()
    assert unicodedata.normalize("NFKC", email) == email


async def test_postgresql_lower_leaves_every_cased_letters_normal_form_alone(
    engine: AsyncEngine,
) -> None:
    """The email_lowercase check compares with PostgreSQL's lower(), whose tables are not
    Python's: case folding alone would store Cherokee as capitals, which lower() changes."""
    emails = set()
    for code_point in range(0x30000):
        character = chr(code_point)
        if unicodedata.category(character) in {"Lu", "Ll", "Lt"}:
            try:
                emails.add(canonical_email(f"{character}x@example.com"))
            except ValueError:
                continue

    async with engine.connect() as connection:
        changed = list(
            await connection.scalars(
                text(
                    "SELECT email FROM unnest(CAST(:emails AS text[])) AS email "
                    "WHERE email <> lower(email)"
                ),
                {"emails": sorted(emails)},
            )
        )

    assert len(emails) > 1000  # upper and lower case are one
    assert changed == []


async def test_an_address_valid_only_before_normalising_is_refused(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # "﹒" is a small full stop: two of them are ".." once normalised, which no address holds.
    response = await client.post(
        SIGNUP_URL, json={"email": "a\ufe52\ufe52b@example.com", "password": PASSWORD}
    )

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["errors"]] == [["body", "email"]]
    assert await count_rows(engine, "users") == 0
