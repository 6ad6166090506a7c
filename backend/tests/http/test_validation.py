"""422 bodies: ``detail`` is a sentence a person can read, ``errors[]`` the items a program
reads, and neither echoes the input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.http.validation import MAX_SENTENCES, describe, error_items, readable_locations
from app.tasks.schemas import TaskCreate, TaskPatch
from tests.fixtures.accounts import Account

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


def body_errors(model: type[BaseModel], body: str) -> list[dict[str, Any]]:
    """pydantic's errors for a request body, located as FastAPI locates them."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(body)
    return [{**error, "loc": ("body", *error["loc"])} for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("model", "body", "detail"),
    [
        (TaskCreate, "{}", "Title is required."),
        (TaskCreate, '{"title": "   "}', "Title must not be empty."),
        (
            TaskCreate,
            json.dumps({"title": "x" * 256}),
            "Title must be at most 255 characters long.",
        ),
        (TaskCreate, '{"title": 5}', "Title must be a string."),
        (TaskCreate, '{"title": "a\\u0000"}', "Title must not contain NUL characters."),
        (TaskCreate, "[1]", "The request body must be a JSON object."),
        (TaskCreate, "{not json", "The request body is not valid JSON."),
        (TaskPatch, '{"title": null}', "Title cannot be null."),
        (TaskPatch, '{"completed": "yes"}', "Completed must be true or false."),
    ],
)
def test_each_problem_reads_as_a_sentence(model: type[BaseModel], body: str, detail: str) -> None:
    assert describe(body_errors(model, body)) == detail


def test_the_sentence_names_query_and_path_parameters() -> None:
    errors = [
        {"loc": ("query", "limit"), "type": "less_than_equal", "ctx": {"le": 500}},
        {"loc": ("path", "task_id"), "type": "uuid_parsing", "msg": "Input should be a UUID"},
    ]

    assert describe(errors) == (
        "The limit query parameter must be at most 500. The task_id path parameter must be a UUID."
    )


def test_an_unknown_error_type_keeps_pydantics_message_as_a_sentence() -> None:
    errors = [{"loc": ("body", "due", "at"), "type": "datetime_parsing", "msg": "Input is bad"}]

    assert describe(errors) == "'due.at': Input is bad."


def test_many_problems_are_summed_up_after_the_first_few() -> None:
    errors = [{"loc": ("body", f"field_{n}"), "type": "missing", "msg": ""} for n in range(5)]

    assert describe(errors) == (
        "Field 0 is required. Field 1 is required. Field 2 is required. (2 more in errors.)"
    )
    assert MAX_SENTENCES == 3


def test_items_keep_location_message_and_type_without_value_error_prefix() -> None:
    items = error_items(body_errors(TaskCreate, '{"title": "a\\u0000"}'))

    assert items == [
        {"loc": ["body", "title"], "msg": "must not contain NUL characters", "type": "value_error"}
    ]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=300),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
        max_leaves=10,
    )
)
def test_any_invalid_body_gets_sentences_that_never_echo_it(value: object) -> None:
    body = json.dumps({"title": value, "description": value})
    try:
        TaskCreate.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        detail = describe(errors)
        assert detail.endswith(".")
        assert detail[0].isupper() or detail[0] == "'"
        if isinstance(value, str) and len(value) >= 4:
            assert value not in detail
            assert all(value not in item["msg"] for item in error_items(errors))


async def test_a_route_answers_422_with_the_sentence_and_the_items(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await client.post(
        new_account.tasks_url, json={"description": 5}, headers=new_account.headers
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": "Title is required. Description must be a string.",
        "code": "validation_error",
        "errors": [
            {"loc": ["body", "title"], "msg": "Field required", "type": "missing"},
            {
                "loc": ["body", "description"],
                "msg": "Input should be a valid string",
                "type": "string_type",
            },
        ],
    }


async def test_a_bad_query_and_path_parameter_read_as_sentences(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    listed = await client.get(
        new_account.tasks_url, params={"limit": 0}, headers=new_account.headers
    )
    fetched = await client.get(f"{new_account.tasks_url}/nope", headers=new_account.headers)

    assert listed.json()["detail"] == "The limit query parameter must be at least 1."
    assert fetched.json()["detail"] == "The task_id path parameter must be a UUID."


@pytest.mark.parametrize(
    ("params", "name", "detail"),
    [
        (
            {"sort": "newest"},
            "sort",
            "The sort query parameter must be 'position', '-position', 'due', '-due', "
            "'priority', '-priority', 'created', '-created', 'updated', '-updated', 'relevance' "
            "or '-relevance'.",
        ),
        ({"priority": "7"}, "priority", "The priority query parameter must be at most 3."),
        ({"list_id": "x"}, "list_id", "The list_id query parameter must be a UUID."),
        ({"cursor": "!"}, "cursor", "The cursor query parameter is not in the expected format."),
    ],
)
async def test_an_optional_query_parameter_is_located_at_itself_not_at_its_unions_branches(
    client: httpx.AsyncClient, new_account: Account, params: dict[str, str], name: str, detail: str
) -> None:
    # pydantic reports T | None as two branches ("constrained-str", "none": "Input should be
    # None"); a client that sent a value is told about the value only.
    response = await client.get(new_account.tasks_url, params=params, headers=new_account.headers)
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == detail
    assert [error["loc"] for error in body["errors"]] == [["query", name]]


def test_readable_locations_drops_only_the_none_branch_and_branch_names() -> None:
    errors = [
        {"loc": ("query", "sort", "literal['a']"), "msg": "m", "type": "literal_error"},
        {"loc": ("query", "sort", "none"), "msg": "Input should be None", "type": "none_required"},
        {"loc": ("body", "due", "all-day", "date"), "msg": "m", "type": "value_error"},
        {"loc": ("body", "items", 0, "name"), "msg": "m", "type": "missing"},
        {"loc": ("header", "Last-Event-ID"), "msg": "m", "type": "string_pattern_mismatch"},
        # A field that must be null (not a union's branch) keeps its error.
        {"loc": ("body", "none"), "msg": "Input should be None", "type": "none_required"},
    ]
    assert [error["loc"] for error in readable_locations(errors)] == [
        ("query", "sort"),
        ("body", "due", "date"),
        ("body", "items", 0, "name"),
        ("header", "Last-Event-ID"),
        ("body", "none"),
    ]
