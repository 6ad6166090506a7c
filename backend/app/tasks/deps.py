"""The task routes' one dependency: a repository scoped to the caller."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from app.auth.deps import TokenSubject, require_path_owner
from app.db.deps import DatabaseDep
from app.tasks.repository import TaskRepository


async def get_task_repository(
    user_id: Annotated[uuid.UUID, Path(description="Must be the authenticated user's id")],
    subject: TokenSubject,
    database: DatabaseDep,
) -> TaskRepository:
    """The only way routes get a repository: scoped to the path's owner, who must be the
    caller."""
    await require_path_owner(database, user_id, subject)
    return TaskRepository(database, user_id)


TaskRepoDep = Annotated[TaskRepository, Depends(get_task_repository)]
