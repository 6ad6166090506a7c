"""TokenCodec (app.auth.tokens): what a token the app issues contains, and what it trusts."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest

from app.auth.tokens import TokenCodec, TokenError
from tests.fixtures.accounts import claims_for, craft_token
from tests.fixtures.app import TEST_JWT_SECRET, make_settings


def codec(**changes: object) -> TokenCodec:
    values: dict[str, object] = {
        "secret": TEST_JWT_SECRET,
        "algorithm": "HS256",
        "lifetime": timedelta(minutes=60),
        **changes,
    }
    return TokenCodec(**values)  # type: ignore[arg-type]


def test_an_issued_token_carries_sub_sid_iat_and_exp_one_lifetime_apart() -> None:
    subject, session_id = uuid.uuid4(), uuid.uuid4()

    issued = codec(lifetime=timedelta(minutes=5)).issue(subject, session_id)

    assert issued.expires_in == 300
    claims = jwt.decode(issued.value, TEST_JWT_SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "sid", "iat", "exp"}
    assert (claims["sub"], claims["sid"]) == (str(subject), str(session_id))
    assert claims["exp"] - claims["iat"] == 300


def test_an_issued_token_is_signed_with_the_configured_algorithm() -> None:
    issued = codec(algorithm="HS384").issue(uuid.uuid4(), uuid.uuid4())

    assert jwt.get_unverified_header(issued.value)["alg"] == "HS384"
    assert codec(algorithm="HS384").subject_of(issued.value)
    with pytest.raises(TokenError):
        codec(algorithm="HS256").subject_of(issued.value)


def test_an_issued_token_carries_issuer_and_audience_when_configured() -> None:
    issued = codec(issuer="me", audience="spa").issue(uuid.uuid4(), uuid.uuid4())

    claims = jwt.decode(issued.value, TEST_JWT_SECRET, algorithms=["HS256"], audience="spa")
    assert (claims["iss"], claims["aud"]) == ("me", "spa")


def test_subject_of_returns_the_uuid_of_a_token_it_issued() -> None:
    subject = uuid.uuid4()
    tokens = codec()

    assert tokens.subject_of(tokens.issue(subject, uuid.uuid4()).value) == subject


def test_subject_of_rejects_a_token_signed_with_another_secret() -> None:
    issued = codec(secret="another-secret-" + "z" * 40).issue(uuid.uuid4(), uuid.uuid4())

    with pytest.raises(TokenError, match="InvalidSignatureError"):
        codec().subject_of(issued.value)


def test_subject_of_says_why_without_repeating_the_token() -> None:
    token = craft_token(claims_for(uuid.uuid4(), sub="not-a-uuid"))

    with pytest.raises(TokenError) as caught:
        codec().subject_of(token)

    assert str(caught.value) == "sub or sid is not a UUID"
    assert token not in str(caught.value)


def test_the_codec_takes_secret_algorithm_lifetime_issuer_and_audience_from_settings() -> None:
    settings = make_settings(
        "postgresql://u@localhost/db",
        jwt_algorithm="HS512",
        jwt_expire_minutes=15,
        jwt_issuer="iss",
        jwt_audience="aud",
    )

    tokens = TokenCodec.from_settings(settings)

    assert tokens == TokenCodec(
        secret=TEST_JWT_SECRET,
        algorithm="HS512",
        lifetime=timedelta(minutes=15),
        issuer="iss",
        audience="aud",
    )


def test_the_codec_never_shows_its_secret_in_a_repr() -> None:
    assert TEST_JWT_SECRET not in repr(codec())


# --- the cache of verified tokens -------------------------------------------------------------


def test_a_cached_token_is_refused_once_it_expires() -> None:
    tokens = codec()
    subject = uuid.uuid4()
    expires_at = int(time.time()) + 2
    token = craft_token(claims_for(subject, exp=expires_at))
    assert tokens.subject_of(token) == subject  # verified, and now cached

    time.sleep(max(0.0, expires_at - time.time()) + 0.05)

    with pytest.raises(TokenError, match="ExpiredSignatureError"):
        tokens.subject_of(token)


def test_only_the_identical_token_hits_the_cache() -> None:
    tokens = codec()
    subject = uuid.uuid4()
    token = craft_token(claims_for(subject))
    assert tokens.subject_of(token) == subject
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]

    with pytest.raises(TokenError):
        tokens.subject_of(f"{header}.{payload}.{flipped}")
    with pytest.raises(TokenError):
        codec(secret="another-secret-" + "z" * 40).subject_of(token)


def test_the_cache_keeps_at_most_its_size_dropping_the_oldest() -> None:
    tokens = codec(verified_cache_size=2)
    issued = [craft_token(claims_for(uuid.uuid4())) for _ in range(3)]

    for token in issued:
        tokens.subject_of(token)

    assert list(tokens._verified) == issued[1:]
