"""The text rules every free-text field shares (app/http/schemas.py): which characters each
kind of text refuses, in a sentence a person reads, and a published ``pattern`` that accepts
exactly what the service accepts."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.schemas import LoginRequest, SignupRequest
from app.http.schemas import WHITE_SPACE
from app.http.validation import describe
from app.tasks.schemas import Description, TaskCreate, TaskPatch, TaskUpdate, Title
from tests.fixtures.accounts import LOGIN_URL, PASSWORD, SIGNUP_URL, Account, count_rows

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

SURROGATE = "must be valid Unicode text, without unpaired surrogates."
LINE_CONTROL = "must be a single line, without tabs or other control characters."
CONTROL = "must not contain control characters other than tabs and line breaks."
INVISIBLE = (
    "must not contain invisible formatting characters such as zero-width spaces or "
    "direction overrides."
)

# Each body schema's text fields, with a body that is valid but for the field under test.
FIELDS: list[tuple[type[BaseModel], str, dict[str, Any]]] = [
    (TaskCreate, "title", {}),
    (TaskCreate, "description", {"title": "t"}),
    (TaskUpdate, "title", {}),
    (TaskUpdate, "description", {"title": "t"}),
    (TaskPatch, "title", {}),
    (TaskPatch, "description", {}),
    (SignupRequest, "name", {"email": "a@example.com", "password": PASSWORD}),
    (LoginRequest, "password", {"email": "a@example.com"}),
]
# The characters each rule is about, drawn often next to anything else.
EDGES = [
    *(chr(code_point) for low, high in WHITE_SPACE for code_point in range(low, high + 1)),
    *"\x00\x01\x07\x1b\x7f\x80\x85\x9f\u00ad\u200b\u200c\u200d\u200e\u202e\u2060\u2066\ufeff",
    *"a\u00e9\U0001f600",
]
CHARACTERS = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(EDGES))
SURROGATES = st.characters(categories=["Cs"])


def field_schema(openapi: dict[str, Any], model: type[BaseModel], field: str) -> dict[str, Any]:
    """The field's schema in the published document (the string branch of an optional one)."""
    schema: dict[str, Any] = openapi["components"]["schemas"][model.__name__]["properties"][field]
    [string] = [branch for branch in schema.get("anyOf", [schema]) if branch["type"] == "string"]
    return string


def accepts(model: type[BaseModel], field: str, body: dict[str, Any], value: str) -> bool:
    """Whether the model takes ``value`` for ``field``, validated as FastAPI validates a body
    (from Python objects: json.loads keeps an escaped unpaired surrogate)."""
    try:
        model.model_validate({**body, field: value})
    except ValidationError as exc:
        return all(error["loc"][:1] != (field,) for error in exc.errors())
    return True


def problem(model: type[BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return describe([{**error, "loc": ("body", *error["loc"])} for error in caught.value.errors()])


@pytest.mark.parametrize(
    ("model", "field", "body"), FIELDS, ids=[f"{m.__name__}.{f}" for m, f, _ in FIELDS]
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(CHARACTERS, max_size=12))
def test_the_published_pattern_accepts_exactly_what_the_model_accepts(
    openapi: dict[str, Any],
    model: type[BaseModel],
    field: str,
    body: dict[str, Any],
    value: str,
) -> None:
    schema = field_schema(openapi, model, field)
    assume(len(value) >= schema.get("minLength", 0))  # lengths are checked by their own keywords

    assert (re.fullmatch(schema["pattern"], value) is not None) == accepts(
        model, field, body, value
    )


@pytest.mark.parametrize(
    ("model", "field", "body"), FIELDS, ids=[f"{m.__name__}.{f}" for m, f, _ in FIELDS]
)
@settings(max_examples=100)
@given(before=st.text(CHARACTERS, max_size=5), surrogate=SURROGATES, after=st.text(max_size=5))
def test_an_unpaired_surrogate_is_refused_wherever_it_is(
    model: type[BaseModel],
    field: str,
    body: dict[str, Any],
    before: str,
    surrogate: str,
    after: str,
) -> None:
    # No pattern names them (they are no Unicode text, see http/schemas.py); every field
    # refuses them all the same.
    assert not accepts(model, field, body, before + surrogate + after)


def test_signup_publishes_the_login_passwords_character_rule(openapi: dict[str, Any]) -> None:
    # The sign-up policy (common, email, patterns) cannot be a pattern; the character rule is.
    signup = field_schema(openapi, SignupRequest, "password")
    login = field_schema(openapi, LoginRequest, "password")

    assert signup["pattern"] == login["pattern"] == "^[^\\u0000]*$"
    assert "common password" in signup["description"]


@pytest.mark.parametrize("value", ["\t", " \t ", "\n", "\u3000", "\x00", "a\tb", "\x1b[2J"])
def test_a_title_the_service_refuses_is_one_the_schema_refuses(
    openapi: dict[str, Any], value: str
) -> None:
    pattern = field_schema(openapi, TaskCreate, "title")["pattern"]

    assert not accepts(TaskCreate, "title", {}, value)
    assert re.fullmatch(pattern, value) is None


def test_the_white_space_stripped_is_the_white_space_pydantic_strips() -> None:
    # The rules strip the ends themselves (to check what pydantic will keep); the two must agree.
    strip = TypeAdapter(Annotated[str, StringConstraints(strip_whitespace=True)]).validate_python
    stripped = {
        code_point
        for code_point in range(0x10000)
        if not 0xD800 <= code_point <= 0xDFFF and strip(f"a{chr(code_point)}") == "a"
    }

    assert stripped == {code for low, high in WHITE_SPACE for code in range(low, high + 1)}


def test_published_patterns_use_only_syntax_ecmascript_and_python_read_alike(
    openapi: dict[str, Any],
) -> None:
    # Anchors, classes of \uXXXX escapes and ranges, *, ? and a non-capturing group; nothing
    # astral (Python spells it \U, ECMAScript \u{...}). test_patterns_in_chromium.py runs them.
    token = r"\^|\$|\[\^?|\]|\\u[0-9A-F]{4}|-|\*|\(\?:|\)\??"
    patterns = {field_schema(openapi, model, field)["pattern"] for model, field, _ in FIELDS} | {
        field_schema(openapi, SignupRequest, "password")["pattern"]
    }

    assert len(patterns) == 3
    for pattern in patterns:
        assert re.fullmatch(f"(?:{token})+", pattern), pattern
        assert pattern.startswith("^")
        assert pattern.endswith("$")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"title": "a\tb"}, f"Title {LINE_CONTROL}"),
        ({"title": "one\ntwo"}, f"Title {LINE_CONTROL}"),
        ({"title": "red \x1b[31malert"}, f"Title {LINE_CONTROL}"),
        ({"title": "next\x85line"}, f"Title {LINE_CONTROL}"),
        ({"title": "para\u2029graph"}, f"Title {LINE_CONTROL}"),
        ({"title": "txt.exe\u202egpj"}, f"Title {INVISIBLE}"),
        ({"title": "zero\u200bwidth"}, f"Title {INVISIBLE}"),
        ({"title": "\ufeffbom"}, f"Title {INVISIBLE}"),
        ({"title": "half \ud83d"}, f"Title {SURROGATE}"),
        ({"title": "a\x00"}, "Title must not contain NUL characters."),
        ({"title": "t", "description": "bell\x07"}, f"Description {CONTROL}"),
        ({"title": "t", "description": "form\x0cfeed"}, f"Description {CONTROL}"),
        ({"title": "t", "description": "c1\x9b"}, f"Description {CONTROL}"),
        ({"title": "t", "description": "\u2066isolate\u2069"}, f"Description {INVISIBLE}"),
        ({"title": "t", "description": "\udfff"}, f"Description {SURROGATE}"),
    ],
)
def test_each_refused_character_reads_as_a_sentence(body: dict[str, Any], detail: str) -> None:
    assert problem(TaskCreate, body) == detail


@pytest.mark.parametrize(
    ("text_type", "value"),
    [
        (Title, "\U0001f468\u200d\U0001f469\u200d\U0001f467 family"),  # joiners in an emoji
        (Title, "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),  # ZWNJ in Persian
        (Title, "\u05e9\u05dc\u05d5\u05dd\u200f (RLM)"),  # a direction mark
        (Title, "caf\u00e9 \u00a0 au lait"),  # interior white space of any kind
        (Title, "\U0001f600"),
        (Description, "line one\r\nline two\n\tindented\u2028"),
        (Description, ""),
    ],
)
def test_text_that_scripts_and_emoji_need_is_accepted(text_type: Any, value: str) -> None:
    assert TypeAdapter(text_type).validate_python(value) == value


def test_the_rules_see_the_value_as_sent_and_the_field_keeps_it_stripped() -> None:
    # Tabs and line breaks at the ends of a title are white space, stripped as before.
    assert TypeAdapter(Title).validate_python(" \t Buy milk \r\n") == "Buy milk"


# --- through the routes: the probe's unpaired surrogate and the controls ---------------------


def raw_json(**fields: str) -> bytes:
    """A JSON body with ``\\uXXXX`` escapes kept as sent (json.dumps escapes surrogates)."""
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"password": "correct\ud800horse"}, f"Password {SURROGATE}"),
        ({"name": "Ada \udc00"}, f"Name {SURROGATE}"),
        ({"email": "ada\ud800@example.com"}, f"Email {SURROGATE}"),
        ({"name": "Ada\u202e"}, f"Name {INVISIBLE}"),
        ({"name": "Ada\nLovelace"}, f"Name {LINE_CONTROL}"),
    ],
)
async def test_signup_refuses_an_unpaired_surrogate_or_a_control_with_a_sentence(
    client: httpx.AsyncClient, engine: AsyncEngine, fields: dict[str, str], detail: str
) -> None:
    body = {"email": "ada@example.com", "password": PASSWORD, **fields}
    response = await client.post(
        SIGNUP_URL, content=raw_json(**body), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail
    [field] = fields
    assert [error["loc"] for error in response.json()["errors"]] == [["body", field]]
    assert await count_rows(engine, "users") == 0


async def test_login_refuses_an_unpaired_surrogate_with_a_sentence(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        LOGIN_URL,
        content=raw_json(email="ada@example.com", password="\ud800" * 8),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"Password {SURROGATE}"


@pytest.mark.parametrize(
    ("method", "fields", "detail"),
    [
        ("post", {"title": "milk \ud800"}, f"Title {SURROGATE}"),
        ("post", {"title": "t", "description": "\udbff!"}, f"Description {SURROGATE}"),
        ("post", {"title": "beep\x07"}, f"Title {LINE_CONTROL}"),
        ("put", {"title": "\udfff"}, f"Title {SURROGATE}"),
        ("patch", {"description": "\x1b]0;title\x07"}, f"Description {CONTROL}"),
        ("patch", {"title": "\u2067rtl"}, f"Title {INVISIBLE}"),
    ],
)
async def test_task_routes_refuse_unpaired_surrogates_and_controls_and_change_nothing(
    client: httpx.AsyncClient,
    new_account: Account,
    method: str,
    fields: dict[str, str],
    detail: str,
) -> None:
    created = await client.post(
        new_account.tasks_url, json={"title": "kept"}, headers=new_account.headers
    )
    url = new_account.tasks_url
    if method != "post":
        url = f"{url}/{created.json()['id']}"

    response = await client.request(
        method,
        url,
        content=raw_json(**fields),
        headers={**new_account.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail
    listed = await client.get(new_account.tasks_url, headers=new_account.headers)
    assert [(task["title"], task["description"]) for task in listed.json()] == [("kept", None)]


async def test_a_description_keeps_its_line_breaks_and_tabs(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    description = "Shopping:\n\t- milk\r\n\t- bread"
    response = await client.post(
        new_account.tasks_url,
        json={"title": " \tShopping\n", "description": description},
        headers=new_account.headers,
    )

    assert response.status_code == 201, response.text
    assert (response.json()["title"], response.json()["description"]) == ("Shopping", description)
