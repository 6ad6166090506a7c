"""The published schema: what FastAPI derives from the routes, plus the rules it leaves implicit.

- operationIds are the route functions' names (``list_tasks``), so generated clients get
  readable method names; they must be unique, and a test keeps them from changing by accident.
- An operation that requires no credentials says so (``security: []``), for generators and
  gateways that would otherwise apply a default.
- An optional request body is the body's schema with ``required: false``, not a union with
  null, which generators turn into an unnamed wrapper type.
- Error bodies are JSON even on a route whose success is another media type (the event
  stream), where FastAPI would publish them under that type.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

JSON = "application/json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def operation_id(route: APIRoute) -> str:
    """FastAPI's generate_unique_id_function: the function's name, which is also the route's."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi``: FastAPI builds the schema, this finishes it, once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _finish(FastAPI.openapi(app))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _finish(schema: dict[str, Any]) -> None:
    operations = [
        operation
        for path_item in schema.get("paths", {}).values()
        for method, operation in path_item.items()
        if method in HTTP_METHODS
    ]
    repeated = [
        name for name, count in Counter(op["operationId"] for op in operations).items() if count > 1
    ]
    if repeated:
        raise RuntimeError(f"operationIds must be unique; repeated: {', '.join(sorted(repeated))}")
    for operation in operations:
        operation.setdefault("security", [])
        _optional_body_without_null(operation)
        _errors_as_json(operation)


def _optional_body_without_null(operation: dict[str, Any]) -> None:
    body = operation.get("requestBody")
    if body is None or body.get("required"):
        return
    for media in body.get("content", {}).values():
        variants = media["schema"].get("anyOf", [])
        named = [variant for variant in variants if variant != {"type": "null"}]
        if len(variants) == 2 and len(named) == 1:
            media["schema"] = named[0]


def _errors_as_json(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        if status == "default" or status >= "400":
            content = response.get("content", {})
            for media_type in [media for media in content if media != JSON]:
                content.setdefault(JSON, content.pop(media_type))
