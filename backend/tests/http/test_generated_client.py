"""The published schema as a code generator reads it: openapi-python-client turns the running
server's /openapi.json into a package that imports cleanly and runs the whole journey against
that server, each call made by the generated function of its operationId and every answer read
through the generated models."""

from __future__ import annotations

import re
import secrets
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.generated_client import (
    GeneratedClient,
    GeneratedPackage,
    import_in_fresh_interpreter,
)

# A server process and a run of the generator: scheduled first (see conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_database")]

LINK_NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')
MAX_PAGES = 10


def _model_module(schema_name: str) -> str:
    """The generator's file name for a schema: ``TokenRequestForm`` -> ``token_request_form``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", schema_name).lower()


def _sign_up(generated: GeneratedClient, email: str) -> Any:
    """A new user made through the generated ``signup``; returns the parsed
    ``SignupResponse``."""
    with generated.client() as anonymous:
        response = generated.operation("signup").sync_detailed(
            client=anonymous,
            body=generated.model("SignupRequest")(email=email, password=PASSWORD, name="Ada"),
        )
    assert response.status_code == HTTPStatus.CREATED, response.content
    return response.parsed


def _log_in(generated: GeneratedClient, email: str) -> Any:
    """The parsed ``TokenResponse`` of the generated ``login`` (a JSON ``LoginRequest``)."""
    with generated.client() as anonymous:
        response = generated.operation("login").sync_detailed(
            client=anonymous,
            body=generated.model("LoginRequest")(email=email, password=PASSWORD),
        )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.parsed


def _account(generated: GeneratedClient) -> tuple[Any, str]:
    """A signed-up user and a bearer token from the generated login."""
    email = f"pyclient-{secrets.token_hex(6)}@example.com"
    user = _sign_up(generated, email)
    return user, _log_in(generated, email).access_token


def _create(generated: GeneratedClient, api: Any, user: Any, title: str, **fields: Any) -> Any:
    response = generated.operation("create_task").sync_detailed(
        user.id, client=api, body=generated.model("TaskCreate")(title=title, **fields)
    )
    assert response.status_code == HTTPStatus.CREATED, response.content
    task = response.parsed
    assert isinstance(task, generated.model("TaskRead"))
    assert response.headers["location"].endswith(f"/api/{user.id}/tasks/{task.id}")
    return task


def test_the_schema_generates_without_a_warning(generated_package: GeneratedPackage) -> None:
    # With the post hooks off, a clean schema makes the generator print only "Generating <path>";
    # anything else is a warning about the schema (a skipped endpoint, an unknown type...).
    other_lines = [
        line
        for line in generated_package.output.splitlines()
        if line.strip() and not line.startswith("Generating ")
    ]
    assert other_lines == [], generated_package.output


def test_every_generated_module_imports_in_a_fresh_interpreter(
    generated_package: GeneratedPackage,
) -> None:
    finished = import_in_fresh_interpreter(generated_package)

    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""
    modules = set(finished.stdout.split())
    name = generated_package.name
    operations = {
        module.rsplit(".", 1)[1]
        for module in modules
        if module.startswith(f"{name}.api.") and module.count(".") == 3
    }
    assert operations == generated_package.operation_ids()
    # TaskList, TrashList, SessionList and ListCollection are JSON arrays, which the generator
    # writes inline as lists.
    expected_models = {
        f"{name}.models.{_model_module(schema)}"
        for schema in generated_package.schema["components"]["schemas"]
        if schema not in ("TaskList", "TrashList", "SessionList", "ListCollection")
    }
    assert expected_models <= modules


def test_signup_login_and_me_give_back_the_same_user(generated_client: GeneratedClient) -> None:
    email = f"pyclient-{secrets.token_hex(6)}@example.com"

    user = _sign_up(generated_client, email)
    token = _log_in(generated_client, email)
    with generated_client.authenticated(token.access_token) as api:
        me = generated_client.operation("me").sync_detailed(client=api)

    assert isinstance(user, generated_client.model("SignupResponse"))
    assert isinstance(user.id, uuid.UUID)
    assert (user.email, user.name) == (email, "Ada")
    assert isinstance(token, generated_client.model("TokenResponse"))
    assert token.token_type == "bearer"
    assert token.expires_in > 0
    assert token.user.to_dict() == {name: user.to_dict()[name] for name in token.user.to_dict()}
    assert me.status_code == HTTPStatus.OK, me.content
    assert me.parsed == token.user


def test_the_token_form_route_gives_a_token_that_works(generated_client: GeneratedClient) -> None:
    email = f"pyclient-{secrets.token_hex(6)}@example.com"
    user = _sign_up(generated_client, email)

    with generated_client.client() as anonymous:
        response = generated_client.operation("token").sync_detailed(
            client=anonymous,
            body=generated_client.model("TokenRequestForm")(username=email, password=PASSWORD),
        )
    assert response.status_code == HTTPStatus.OK, response.content
    token = response.parsed
    with generated_client.authenticated(token.access_token) as api:
        me = generated_client.operation("me").sync_detailed(client=api)

    assert isinstance(token, generated_client.model("TokenResponse"))
    assert token.token_type == "bearer"
    assert token.user.id == user.id
    assert me.status_code == HTTPStatus.OK, me.content
    assert me.parsed.id == user.id


def test_pages_of_two_follow_the_link_header_to_each_task_once_newest_first(
    generated_client: GeneratedClient,
) -> None:
    user, token = _account(generated_client)
    list_tasks = generated_client.operation("list_tasks")

    with generated_client.authenticated(token) as api:
        created = [_create(generated_client, api, user, f"Task {n}") for n in range(3)]
        pages: list[list[uuid.UUID]] = []
        cursor = generated_client.unset
        for _ in range(MAX_PAGES):
            response = list_tasks.sync_detailed(user.id, client=api, limit=2, cursor=cursor)
            assert response.status_code == HTTPStatus.OK, response.content
            pages.append([task.id for task in response.parsed])
            link = response.headers.get("link")
            if link is None:
                break
            match = LINK_NEXT.match(link)
            assert match, link
            url = urlsplit(match["url"])
            assert f"{url.scheme}://{url.netloc}{url.path}" == (
                f"{generated_client.base_url}/api/{user.id}/tasks"
            )
            query = parse_qs(url.query)
            assert query["limit"] == ["2"]
            (cursor,) = query["cursor"]
        else:
            pytest.fail(f"still a next page after {MAX_PAGES} pages")

    newest_first = [task.id for task in reversed(created)]
    assert pages == [newest_first[:2], newest_first[2:]]


def test_patch_toggle_replace_and_delete_take_effect(generated_client: GeneratedClient) -> None:
    user, token = _account(generated_client)
    operation = generated_client.operation
    model = generated_client.model

    with generated_client.authenticated(token) as api:
        task = _create(generated_client, api, user, "Write the report", description="First draft")
        # An unset field is left out of the body, so PATCH keeps the description.
        patched = operation("patch_task").sync_detailed(
            user.id, task.id, client=api, body=model("TaskPatch")(title="Write the final report")
        )
        toggled = operation("toggle_task").sync_detailed(user.id, task.id, client=api)
        # None is sent as null, which PUT reads as "clear the description".
        replaced = operation("replace_task").sync_detailed(
            user.id,
            task.id,
            client=api,
            body=model("TaskUpdate")(title="Send the report", description=None),
        )
        fetched = operation("get_task").sync_detailed(user.id, task.id, client=api)
        deleted = operation("delete_task").sync_detailed(user.id, task.id, client=api)
        gone = operation("get_task").sync_detailed(user.id, task.id, client=api)
        remaining = operation("list_tasks").sync_detailed(user.id, client=api)

    assert (task.user_id, task.title, task.description) == (
        user.id,
        "Write the report",
        "First draft",
    )
    assert (task.completed, task.completed_at) == (False, None)
    assert patched.status_code == HTTPStatus.OK, patched.content
    assert patched.parsed.id == task.id
    assert (patched.parsed.title, patched.parsed.description) == (
        "Write the final report",
        "First draft",
    )
    assert patched.parsed.completed is False
    assert toggled.status_code == HTTPStatus.OK, toggled.content
    assert (toggled.parsed.id, toggled.parsed.title) == (task.id, "Write the final report")
    assert toggled.parsed.completed is True
    assert toggled.parsed.completed_at is not None
    assert replaced.status_code == HTTPStatus.OK, replaced.content
    assert (replaced.parsed.id, replaced.parsed.title) == (task.id, "Send the report")
    assert replaced.parsed.description is None
    assert replaced.parsed.completed is True  # PUT replaces the text, not the state
    assert fetched.status_code == HTTPStatus.OK, fetched.content
    assert fetched.parsed == replaced.parsed
    assert deleted.status_code == HTTPStatus.NO_CONTENT, deleted.content
    assert deleted.content == b""
    assert gone.status_code == HTTPStatus.NOT_FOUND, gone.content
    assert isinstance(gone.parsed, model("ErrorBody"))
    assert gone.parsed.code is model("ErrorCode").TASK_NOT_FOUND
    assert gone.parsed.detail == "Task not found"
    assert remaining.status_code == HTTPStatus.OK, remaining.content
    assert remaining.parsed == []


def test_an_empty_title_is_a_parsed_validation_error(generated_client: GeneratedClient) -> None:
    user, token = _account(generated_client)

    with generated_client.authenticated(token) as api:
        response = generated_client.operation("create_task").sync_detailed(
            user.id, client=api, body=generated_client.model("TaskCreate")(title="")
        )
        remaining = generated_client.operation("list_tasks").sync_detailed(user.id, client=api)

    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, response.content
    body = response.parsed
    assert isinstance(body, generated_client.model("ValidationErrorBody"))
    assert body.code is generated_client.model("ErrorCode").VALIDATION_ERROR
    assert body.detail == "Title must not be empty."
    assert [(item.loc, item.type_) for item in body.errors] == [
        (["body", "title"], "string_too_short")
    ]
    assert body.errors[0].msg == "String should have at least 1 character"
    assert remaining.parsed == []
