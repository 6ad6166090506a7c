"""Conditional requests (RFC 9110 section 13): entity tags, If-Match and If-None-Match.

A resource's ETag is its version, quoted: ``"7"``. If-Match compares strongly (a weak tag never
matches), If-None-Match weakly, as the RFC says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.http.errors import ValidationFailedError

# Versions are PostgreSQL integers: a tag beyond them names no version this service made.
_MAX_VERSION = 2**31 - 1
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
# RFC 9110 5.6.1.2: empty list elements ("1",,"2" or a trailing comma) are accepted and ignored.
_TAG_LIST = re.compile(rf"[ \t,]*{_ENTITY_TAG}(?:[ \t]*,[ \t,]*{_ENTITY_TAG})*[ \t,]*")
_TAGS = re.compile(_ENTITY_TAG)
# The longest header worth parsing: a list of a few hundred tags, far more than any client sends.
_MAX_HEADER_LENGTH = 4096


class InvalidIfMatchError(ValidationFailedError):
    location = ("header", "If-Match")
    message = 'The If-Match header must be * or a list of entity tags such as "3".'


class InvalidIfNoneMatchError(ValidationFailedError):
    location = ("header", "If-None-Match")
    message = 'The If-None-Match header must be * or a list of entity tags such as "3".'


def version_etag(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class Precondition:
    """A parsed If-Match: the versions it accepts, or None for ``*`` (any existing version)."""

    versions: tuple[int, ...] | None

    @classmethod
    def parse(cls, header: str) -> Precondition:
        if header.strip(" \t") == "*":
            return cls(versions=None)
        if len(header) > _MAX_HEADER_LENGTH or not _TAG_LIST.fullmatch(header):
            raise InvalidIfMatchError()
        versions: list[int] = []
        for tag in _TAGS.findall(header):
            if tag.startswith("W/"):
                continue  # strong comparison: a weak tag matches nothing
            opaque = tag[1:-1]
            # Strong comparison is character by character: "01" is not the tag of version 1.
            canonical = opaque.isascii() and opaque.isdigit() and opaque == str(int(opaque))
            if canonical and int(opaque) <= _MAX_VERSION:
                versions.append(int(opaque))
        return cls(versions=tuple(versions))

    def matches(self, version: int) -> bool:
        """Whether a resource at ``version`` (that exists) meets this If-Match."""
        return self.versions is None or version in self.versions


def none_match(header: str, etag: str) -> bool:
    """Whether If-None-Match ``header`` matches the current ``etag`` (weak comparison): a GET
    then answers 304."""
    if header.strip(" \t") == "*":
        return True
    if len(header) > _MAX_HEADER_LENGTH or not _TAG_LIST.fullmatch(header):
        raise InvalidIfNoneMatchError()
    opaque = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == opaque for tag in _TAGS.findall(header))
