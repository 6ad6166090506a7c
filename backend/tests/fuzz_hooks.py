"""Schemathesis hooks for test_api_fuzz.py, loaded by file path from its config."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import RejectedPositiveData

# The sign-up password policy refuses what no pattern can say (a blocklist, the email, simple
# patterns, too short once NFKC-normalised); the schema's description names it. A schema-valid
# password it refuses is the documented policy, not a contract failure.
POLICY_ERROR_TYPES = {"password_common", "password_email", "password_pattern", "string_too_short"}
# Where the policy applies: the path, and the field it refuses.
POLICY_FIELDS = {"/api/auth/signup": "password", "/api/auth/password": "new_password"}


# A due's wall-clock time: its pattern says the shape, not the calendar (no 30 February) nor
# the instant's range, and its zone must be one of the tz database's names, which the schema
# does not list (its description says so).
DUE_PATHS = {"/api/{user_id}/tasks", "/api/{user_id}/tasks/{task_id}"}


def _due_refused(case: Any, response: Any) -> bool:
    if case.operation.path not in DUE_PATHS or response.status_code != 422:
        return False
    errors = response.json().get("errors") or [{}]
    return all(
        error.get("loc", [])[:3] == ["body", "due", "datetime"]
        and any(
            reason in error.get("msg", "")
            for reason in ("calendar", "out of range", "unknown time zone")
        )
        for error in errors
    )


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a new password refused for the password policy alone, and a
    due's time that is not one of the calendar's."""
    if isinstance(failure, RejectedPositiveData) and _due_refused(case, response):
        return False
    field = POLICY_FIELDS.get(case.operation.path)
    if not (
        isinstance(failure, RejectedPositiveData)
        and field is not None
        and response.status_code == 422
    ):
        return True
    errors = response.json().get("errors") or [{}]
    return not all(
        error.get("loc") == ["body", field] and error.get("type") in POLICY_ERROR_TYPES
        for error in errors
    )
