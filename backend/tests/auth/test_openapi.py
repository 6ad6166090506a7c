"""What /openapi.json tells a client (and Swagger UI) about authentication."""

from __future__ import annotations

from typing import Any

import pytest

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

PROTECTED_OPERATIONS = [
    ("get", "/api/auth/me"),
    ("get", "/api/{user_id}/tasks"),
    ("post", "/api/{user_id}/tasks"),
    ("get", "/api/{user_id}/tasks/{task_id}"),
    ("put", "/api/{user_id}/tasks/{task_id}"),
    ("patch", "/api/{user_id}/tasks/{task_id}"),
    ("delete", "/api/{user_id}/tasks/{task_id}"),
    ("patch", "/api/{user_id}/tasks/{task_id}/complete"),
]


def password_scheme_name(openapi: dict[str, Any]) -> str:
    [name] = [
        name
        for name, scheme in openapi["components"]["securitySchemes"].items()
        if scheme["type"] == "oauth2"
    ]
    return name


def test_the_oauth2_password_scheme_points_at_the_token_route(openapi: dict[str, Any]) -> None:
    scheme = openapi["components"]["securitySchemes"][password_scheme_name(openapi)]

    assert scheme["flows"] == {"password": {"scopes": {}, "tokenUrl": "/api/auth/token"}}


@pytest.mark.parametrize(("method", "path"), PROTECTED_OPERATIONS)
def test_protected_routes_require_the_scheme_and_document_401(
    openapi: dict[str, Any], method: str, path: str
) -> None:
    operation = openapi["paths"][path][method]

    assert operation["security"] == [{password_scheme_name(openapi): []}]
    assert "401" in operation["responses"]


@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/login", "/api/auth/token"])
def test_signup_and_login_declare_that_they_need_no_token(
    openapi: dict[str, Any], path: str
) -> None:
    assert openapi["paths"][path]["post"]["security"] == []


def test_task_routes_document_403_for_another_users_namespace(openapi: dict[str, Any]) -> None:
    task_operations = [op for op in PROTECTED_OPERATIONS if op[1].startswith("/api/{user_id}")]

    for method, path in task_operations:
        assert "403" in openapi["paths"][path][method]["responses"], (method, path)


def test_login_takes_one_json_body_and_the_token_route_the_form(openapi: dict[str, Any]) -> None:
    login = openapi["paths"]["/api/auth/login"]["post"]["requestBody"]["content"]
    token = openapi["paths"]["/api/auth/token"]["post"]["requestBody"]["content"]
    schemas = openapi["components"]["schemas"]

    assert login == {"application/json": {"schema": {"$ref": "#/components/schemas/LoginRequest"}}}
    assert token == {
        "application/x-www-form-urlencoded": {
            "schema": {"$ref": "#/components/schemas/TokenRequestForm"}
        }
    }
    assert set(schemas["LoginRequest"]["required"]) == {"email", "password"}
    form = schemas["TokenRequestForm"]
    assert set(form["required"]) == {"username", "password"}
    # The form documents the JSON body's constraints: username is the email.
    assert form["properties"]["username"] == schemas["LoginRequest"]["properties"]["email"] | {
        "title": "Username"
    }
    assert form["properties"]["password"]["format"] == "password"
    assert form["properties"]["password"]["maxLength"] == 128
    assert form["properties"]["grant_type"] == {
        "type": "string",
        "const": "password",
        "default": "password",
        "title": "Grant Type",
    }


def test_login_and_token_describe_their_401_as_bad_credentials(openapi: dict[str, Any]) -> None:
    for path in ("/api/auth/login", "/api/auth/token"):
        unauthorized = openapi["paths"][path]["post"]["responses"]["401"]
        assert unauthorized["description"] == "Incorrect email or password"


def test_signup_documents_201_409_and_422(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/api/auth/signup"]["post"]["responses"]

    assert {"201", "409", "422"} <= set(responses)
    assert set(responses["201"]["content"]["application/json"]["schema"].values()) == {
        "#/components/schemas/SignupResponse"
    }
    assert responses["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


def test_login_documents_200_401_and_422(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/api/auth/login"]["post"]["responses"]

    assert {"200", "401", "422"} <= set(responses)
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TokenResponse"
    }
    assert responses["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorBody"
    }


def test_user_and_token_schemas_expose_no_password(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]

    assert set(schemas["UserRead"]["properties"]) == {"id", "email", "name", "created_at"}
    token_fields = {"access_token", "token_type", "expires_in", "refresh_token", "user"}
    assert set(schemas["TokenResponse"]["properties"]) == token_fields
    # Always sent, so required: a generated client need not handle an absent token_type.
    assert set(schemas["TokenResponse"]["required"]) == token_fields
