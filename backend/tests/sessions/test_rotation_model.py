"""Rotation against a model, as a property: any sequence of refreshes (with the current token,
the one just replaced, an older one), grace windows running out, and logouts answers exactly as
the rules say, and the session row agrees (README "Authentication and sessions")."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import StoredUser
from tests.fixtures.sessions import LOGOUT_URL, age_sessions, log_in, refresh_with, session_rows

pytestmark = pytest.mark.usefixtures("clean_database")

ACTIONS = ("current", "previous", "older", "grace_runs_out", "logout")


@dataclass
class Model:
    """What the rules say: the generation reached, whether the token it replaced is still in
    its grace window, whether the session has ended."""

    tokens: list[str] = field(default_factory=list)  # by generation
    in_grace: bool = False
    ended: bool = False

    @property
    def generation(self) -> int:
        return len(self.tokens) - 1


async def refresh_and_check(
    client: httpx.AsyncClient, model: Model, generation: int, expected_code: str | None
) -> None:
    response = await refresh_with(client, model.tokens[generation])
    if expected_code is not None:
        assert response.status_code == 401, response.text
        assert response.json()["code"] == expected_code
        return
    assert response.status_code == 200, response.text
    renewed = response.json()["refresh_token"]
    if generation == model.generation:  # rotated: a new token, the old one in its grace
        assert renewed not in model.tokens
        model.tokens.append(renewed)
        model.in_grace = True
    else:  # the one just replaced, in its grace: the same successor again
        assert renewed == model.tokens[-1]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(actions=st.lists(st.sampled_from(ACTIONS), max_size=10))
async def test_any_sequence_of_refreshes_answers_as_the_rules_say(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine, actions: list[str]
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    model = Model(tokens=[signed_in.refresh_token])
    session_id = None
    for action in actions:
        # A spent token presented again ends the session; once ended, nothing refreshes.
        reused = "invalid_refresh_token" if model.ended else "refresh_token_reused"
        if action == "current":
            expected = "invalid_refresh_token" if model.ended else None
            await refresh_and_check(client, model, model.generation, expected)
        elif action == "previous" and model.generation >= 1:
            expected = None if model.in_grace and not model.ended else reused
            await refresh_and_check(client, model, model.generation - 1, expected)
            model.ended = model.ended or expected is not None
        elif action == "older" and model.generation >= 2:
            await refresh_and_check(client, model, model.generation - 2, reused)
            model.ended = True
        elif action == "grace_runs_out":
            await age_sessions(
                engine, stored_user.id, "rotated_at = rotated_at - interval '31 seconds'"
            )
            model.in_grace = False
        elif action == "logout":
            response = await client.post(LOGOUT_URL, json={"refresh_token": model.tokens[-1]})
            assert response.status_code == 204, response.text
            model.ended = True
        else:
            continue
        rows = {row["id"]: row for row in await session_rows(engine, stored_user.id)}
        session_id = session_id or max(rows, key=lambda key: rows[key]["created_at"])
        row = rows[session_id]
        assert (row["ended_at"] is not None) == model.ended, (actions, action)
        assert row["refresh_generation"] == model.generation, (actions, action)
