"""Validation errors in two forms: a sentence a person can read (``detail``) and, for programs,
the items pydantic found (``errors[]``: ``loc``, ``msg``, ``type``; never the input, which may
be a password)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.http.schemas import SURROGATE_MESSAGE

# The sentences a body's detail joins, at most: the rest are in errors[] anyway.
MAX_SENTENCES = 3
_VALUE_ERROR_PREFIX = "Value error, "
_SOURCES = {"query": "query parameter", "path": "path parameter", "header": "header"}

Phrase = Callable[[Mapping[str, Any]], str]


def _at_least_characters(ctx: Mapping[str, Any]) -> str:
    minimum = ctx.get("min_length", 1)
    return "must not be empty" if minimum == 1 else f"must be at least {minimum} characters long"


# What each pydantic error type means, as the end of a sentence about the field (ctx -> text).
_PHRASES: dict[str, Phrase] = {
    "missing": lambda _: "is required",
    "null_refused": lambda _: "cannot be null",
    "string_too_short": _at_least_characters,
    "string_too_long": lambda ctx: f"must be at most {ctx.get('max_length')} characters long",
    "too_short": lambda ctx: f"must have at least {ctx.get('min_length')} items",
    "too_long": lambda ctx: f"must have at most {ctx.get('max_length')} items",
    "string_type": lambda _: "must be a string",
    # pydantic's own check, for the strings no text rule covers (an email, a form's scope).
    "string_unicode": lambda _: SURROGATE_MESSAGE,
    "bool_type": lambda _: "must be true or false",
    "bool_parsing": lambda _: "must be true or false",
    "int_type": lambda _: "must be a whole number",
    "int_parsing": lambda _: "must be a whole number",
    "int_from_float": lambda _: "must be a whole number",
    "greater_than_equal": lambda ctx: f"must be at least {ctx.get('ge')}",
    "greater_than": lambda ctx: f"must be greater than {ctx.get('gt')}",
    "less_than_equal": lambda ctx: f"must be at most {ctx.get('le')}",
    "less_than": lambda ctx: f"must be less than {ctx.get('lt')}",
    "uuid_type": lambda _: "must be a UUID",
    "uuid_parsing": lambda _: "must be a UUID",
    "string_pattern_mismatch": lambda _: "is not in the expected format",
    "literal_error": lambda ctx: f"must be {ctx.get('expected')}",
    "enum": lambda ctx: f"must be {ctx.get('expected')}",
    "model_attributes_type": lambda _: "must be a JSON object",
    "model_type": lambda _: "must be a JSON object",
    "dict_type": lambda _: "must be a JSON object",
    "list_type": lambda _: "must be a list",
}


def readable_locations(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each error at the field or parameter it is about, without the names of union branches.

    pydantic reports each branch of a union at a location of its own: an optional query
    parameter (``T | None``) fails as ``("query", "sort", "literal[...]")`` and as
    ``("query", "sort", "none")``, "Input should be None", and a due as ``("body", "due",
    "all-day", "date")``. The "none" branch says nothing to a client that sent a value, and a
    branch's name is not a field: both go. Branch names are the element after an optional
    value's location, and any other element that is not an identifier ("all-day"); so is a
    key a client made up that is no identifier ("time zone"), whose error is then reported at
    the object that holds it.
    """
    locations = [tuple(error.get("loc", ())) for error in errors]
    # A named field or parameter whose "none" branch failed beside another branch.
    optional = {
        loc[:-1]
        for loc, error in zip(locations, errors, strict=True)
        if error.get("type") == "none_required"
        and len(loc) >= 3
        and loc[-1] == "none"
        and any(
            other != loc and len(other) >= len(loc) and other[: len(loc) - 1] == loc[:-1]
            for other in locations
        )
    }
    readable: list[Mapping[str, Any]] = []
    for loc, error in zip(locations, errors, strict=True):
        if loc[:-1] in optional and error.get("type") == "none_required":
            continue
        depth = next((d for d in range(len(loc) - 1, 1, -1) if loc[:d] in optional), None)
        kept = loc if depth is None else loc[:depth] + loc[depth + 1 :]
        # The source and the field or parameter's own name (a header's has hyphens) stay.
        kept = kept[:2] + tuple(
            part for part in kept[2:] if isinstance(part, int) or part.isidentifier()
        )
        readable.append(error if kept == loc else {**error, "loc": kept})
    return readable


def error_items(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Location, message and type only: pydantic's ``input`` and ``ctx`` may echo a password."""
    return [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")).removeprefix(_VALUE_ERROR_PREFIX),
            "type": str(error.get("type")),
        }
        for error in errors
    ]


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """One sentence per problem, e.g. "Password must be at least 8 characters long." """
    sentences = list(dict.fromkeys(_sentence(error) for error in errors))
    if not sentences:
        return "The request is not valid."
    text = " ".join(sentences[:MAX_SENTENCES])
    if len(sentences) > MAX_SENTENCES:
        text += f" ({len(sentences) - MAX_SENTENCES} more in errors.)"
    return text


def _sentence(error: Mapping[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type"))
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    subject = _subject(loc)
    phrase = _PHRASES.get(kind)
    if phrase is not None:
        return f"{subject} {phrase(error.get('ctx') or {})}."
    message = str(error.get("msg", "")).removeprefix(_VALUE_ERROR_PREFIX).rstrip(".")
    if len(loc) <= 1:  # a rule about the whole body names its fields itself
        return f"{message[:1].upper()}{message[1:]}."
    if message[:1].isupper():  # already a sentence of its own (e.g. the email checker's)
        return f"{subject}: {message}."
    return f"{subject} {message}."


def _subject(loc: Sequence[str | int]) -> str:
    """What the sentence is about: 'Password', 'The limit query parameter', 'The request body'."""
    source, path = (loc[0], loc[1:]) if loc else ("body", ())
    name = ".".join(f"[{part}]" if isinstance(part, int) else part for part in path)
    name = name.replace(".[", "[")
    if source in _SOURCES:
        return f"The {name} {_SOURCES[str(source)]}"
    if not name:
        return "The request body"
    if len(path) == 1:
        return name.replace("_", " ").capitalize()
    return f"'{name}'"
