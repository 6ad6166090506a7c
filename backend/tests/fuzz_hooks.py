"""Schemathesis hooks for test_api_fuzz.py, loaded by file path from its config."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import RejectedPositiveData

# The sign-up password policy refuses what no pattern can say (a blocklist, the email, simple
# patterns, too short once NFKC-normalised); the schema's description names it. A schema-valid
# password it refuses is the documented policy, not a contract failure.
POLICY_ERROR_TYPES = {"password_common", "password_email", "password_pattern", "string_too_short"}


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a sign-up refused for the password policy alone."""
    if not (
        isinstance(failure, RejectedPositiveData)
        and case.operation.path == "/api/auth/signup"
        and response.status_code == 422
    ):
        return True
    errors = response.json().get("errors") or [{}]
    return not all(
        error.get("loc") == ["body", "password"] and error.get("type") in POLICY_ERROR_TYPES
        for error in errors
    )
