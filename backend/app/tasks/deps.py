"""The task routes' one dependency: a repository scoped to the caller."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path, Request

from app.auth.deps import TokenSubject, require_path_owner
from app.db.deps import get_database
from app.tasks.repository import TaskRepository


async def get_task_repository(
    request: Request,
    user_id: Annotated[uuid.UUID, Path(description="Must be the authenticated user's id")],
    subject: TokenSubject,
) -> TaskRepository:
    """The only way routes get a repository: scoped to the path's owner, who must be the
    caller."""
    # get_database called, not declared: on the hot path each dependency FastAPI solves costs
    # a measurable share of the request (bench/RESULTS.md); it stays the one reader.
    database = await get_database(request)
    await require_path_owner(database, user_id, subject)
    return TaskRepository(database, user_id)


TaskRepoDep = Annotated[TaskRepository, Depends(get_task_repository)]
