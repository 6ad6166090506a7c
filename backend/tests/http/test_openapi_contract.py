"""The published schema as generated clients read it: stable names, every error code, no
surprises a generator turns into a run-time failure."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

import app.main  # noqa: F401 (imports every domain, so every AppError subclass exists)
from app.http.errors import AppError, ErrorCode

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

# The names generated clients give their methods: part of the public contract. A change here
# breaks every client generated before it, so it is a decision, not a side effect of a refactor.
OPERATION_IDS = {
    ("post", "/api/{user_id}/tasks/{task_id}/move"): "move_task",
    ("get", "/api/{user_id}/lists"): "list_lists",
    ("post", "/api/{user_id}/lists"): "create_list",
    ("get", "/api/{user_id}/lists/{list_id}"): "get_list",
    ("patch", "/api/{user_id}/lists/{list_id}"): "patch_list",
    ("delete", "/api/{user_id}/lists/{list_id}"): "delete_list",
    ("post", "/api/{user_id}/lists/{list_id}/move"): "move_list",
    ("get", "/api/{user_id}/tasks"): "list_tasks",
    ("post", "/api/{user_id}/tasks"): "create_task",
    ("get", "/api/{user_id}/tasks/{task_id}"): "get_task",
    ("put", "/api/{user_id}/tasks/{task_id}"): "replace_task",
    ("patch", "/api/{user_id}/tasks/{task_id}"): "patch_task",
    ("delete", "/api/{user_id}/tasks/{task_id}"): "delete_task",
    ("patch", "/api/{user_id}/tasks/{task_id}/complete"): "toggle_task",
    ("get", "/api/{user_id}/trash"): "list_trash",
    ("post", "/api/{user_id}/trash/{task_id}/restore"): "restore_task",
    ("delete", "/api/{user_id}/trash/{task_id}"): "purge_task",
    ("delete", "/api/{user_id}/trash"): "empty_trash",
    ("get", "/api/{user_id}/changes"): "list_changes",
    ("get", "/api/{user_id}/events"): "stream_events",
    ("post", "/api/auth/signup"): "signup",
    ("post", "/api/auth/login"): "login",
    ("post", "/api/auth/token"): "token",
    ("get", "/api/auth/me"): "me",
    ("post", "/api/auth/refresh"): "refresh",
    ("post", "/api/auth/logout"): "logout",
    ("get", "/api/auth/sessions"): "list_sessions",
    ("delete", "/api/auth/sessions"): "end_other_sessions",
    ("delete", "/api/auth/sessions/{session_id}"): "end_session",
    ("delete", "/api/auth/me"): "delete_account",
    ("post", "/api/auth/password"): "change_password",
    ("get", "/api/auth/me/export"): "export_account",
    ("get", "/health"): "liveness",
    ("get", "/health/db"): "readiness",
}
# refresh and logout authenticate with the refresh token (cookie or body); logout also takes
# a bearer token, which its description says.
PUBLIC_OPERATIONS = {"signup", "login", "token", "refresh", "logout", "liveness", "readiness"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def operations(openapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for path_item in openapi["paths"].values()
        for method, operation in path_item.items()
        if method in HTTP_METHODS
    }


def subclasses(cls: type[AppError]) -> set[type[AppError]]:
    found = set(cls.__subclasses__())
    for subclass in list(found):
        found |= subclasses(subclass)
    return found


def test_the_schema_is_valid_openapi(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.1")
    validate(openapi)  # raises with the first problem found


def test_operation_ids_are_the_route_functions_names_and_do_not_change(
    openapi: dict[str, Any],
) -> None:
    published = {
        (method, path): operation["operationId"]
        for path, path_item in openapi["paths"].items()
        for method, operation in path_item.items()
        if method in HTTP_METHODS
    }

    assert published == OPERATION_IDS


def test_every_request_and_response_body_is_a_named_schema(openapi: dict[str, Any]) -> None:
    for name, operation in operations(openapi).items():
        bodies = [operation.get("requestBody", {}).get("content", {})]
        bodies += [response.get("content", {}) for response in operation["responses"].values()]
        for content in bodies:
            for media_type, media in content.items():
                if media_type == "text/event-stream":
                    continue  # no JSON body: its events' data are the named change schemas
                assert set(media["schema"]) == {"$ref"}, (name, media)
    # FastAPI's fallback names, which generators turn into "BodyLoginApiAuthLoginPost".
    for schema_name in openapi["components"]["schemas"]:
        assert not schema_name.startswith(("Body_", "Response")), schema_name


def test_no_parameter_offers_null(openapi: dict[str, Any]) -> None:
    """A generator that sees null in a query parameter's type sends ``?completed=null``."""
    for name, operation in operations(openapi).items():
        for parameter in operation.get("parameters", []):
            assert "anyOf" not in parameter["schema"], (name, parameter)
            assert parameter["schema"].get("type") != "null", (name, parameter)


# The optional headers each route reads: the task routes' read in code (http/request_headers.py),
# which the schema must still publish for generated clients to send them.
TASK_HEADERS = {
    "move_task": {"If-Match", "Idempotency-Key"},
    "list_lists": {"If-None-Match"},
    "get_list": set(),  # never 304: its counts change while its version stays
    "create_list": {"Idempotency-Key"},
    "patch_list": {"If-Match", "Idempotency-Key"},
    "delete_list": {"If-Match", "Idempotency-Key"},
    "move_list": {"If-Match", "Idempotency-Key"},
    "list_tasks": {"If-None-Match"},
    "get_task": {"If-None-Match"},
    "create_task": {"Idempotency-Key"},
    "replace_task": {"If-Match", "Idempotency-Key"},
    "patch_task": {"If-Match", "Idempotency-Key"},
    "delete_task": {"If-Match", "Idempotency-Key"},
    "toggle_task": {"If-Match", "Idempotency-Key"},
    "restore_task": {"If-Match", "Idempotency-Key"},
    "purge_task": {"If-Match", "Idempotency-Key"},
    "empty_trash": {"Idempotency-Key"},
    "stream_events": {"Last-Event-ID"},
}


def test_routes_publish_the_optional_headers_they_read(openapi: dict[str, Any]) -> None:
    for name, operation in operations(openapi).items():
        headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
        assert {header["name"] for header in headers} == TASK_HEADERS.get(name, set()), name
        for header in headers:
            assert header["required"] is False
            assert header["schema"]["type"] == "string"
            assert header["description"]


def test_error_code_is_an_enum_of_every_code_the_app_can_send(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    raised = {error.code for error in subclasses(AppError) | {AppError}}
    # ...plus the code the handlers give an HTTP status no AppError describes (handlers.py).
    sent = raised | {ErrorCode.HTTP_ERROR}

    assert set(schemas["ErrorCode"]["enum"]) == set(ErrorCode) == sent
    assert schemas["ErrorBody"]["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode"}
    assert set(schemas["ErrorBody"]["required"]) == {"detail", "code"}
    assert schemas["ValidationErrorBody"]["properties"]["code"] == {
        "$ref": "#/components/schemas/ErrorCode"
    }


def test_every_operation_documents_the_unexpected_error(openapi: dict[str, Any]) -> None:
    for name, operation in operations(openapi).items():
        default = operation["responses"]["default"]
        assert default["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }, name
        assert "500" in default["description"], name


def test_429_and_503_declare_retry_after_and_401_the_challenge(openapi: dict[str, Any]) -> None:
    checked = 0
    for name, operation in operations(openapi).items():
        for status, header in (("429", "Retry-After"), ("503", "Retry-After"), ("401", None)):
            response = operation["responses"].get(status)
            if response is None:
                continue
            checked += 1
            expected = header or "WWW-Authenticate"
            assert expected in response.get("headers", {}), (name, status)
    assert checked >= 15  # every task route has 401 and 503; signup and login 429


def test_public_operations_declare_no_security_and_the_rest_the_bearer_scheme(
    openapi: dict[str, Any],
) -> None:
    for name, operation in operations(openapi).items():
        if name in PUBLIC_OPERATIONS:
            assert operation["security"] == [], name
        else:
            assert operation["security"] == [{"OAuth2PasswordBearer": []}], name
            assert "401" in operation["responses"], name


def test_two_operations_with_one_name_are_refused_when_the_schema_is_built() -> None:
    from fastapi import APIRouter, FastAPI  # noqa: PLC0415

    from app.http.openapi import install_openapi, operation_id  # noqa: PLC0415

    application = FastAPI(generate_unique_id_function=operation_id)
    install_openapi(application)
    for prefix in ("/a", "/b"):
        router = APIRouter(prefix=prefix)

        @router.get("")
        async def read() -> None: ...

        application.include_router(router)

    # FastAPI only warns; the schema builder refuses.
    with (
        pytest.warns(UserWarning, match="Duplicate Operation ID"),
        pytest.raises(RuntimeError, match="repeated: read"),
    ):
        application.openapi()


def test_the_event_stream_publishes_its_media_type_and_json_errors(
    openapi: dict[str, Any],
) -> None:
    responses = operations(openapi)["stream_events"]["responses"]
    assert list(responses["200"]["content"]) == ["text/event-stream"]
    for status in ("401", "403", "410", "422", "429", "503", "default"):
        assert list(responses[status]["content"]) == ["application/json"], status
    assert "Retry-After" in responses["429"]["headers"]
    # What an event's data holds.
    assert {"TaskUpserted", "TaskDeleted"} <= set(openapi["components"]["schemas"])
