"""The list routes' one dependency: a repository scoped to the caller."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path, Request

from app.auth.deps import TokenSubject, require_path_owner
from app.db.deps import get_database
from app.lists.repository import ListRepository


async def get_list_repository(
    request: Request,
    user_id: Annotated[uuid.UUID, Path(description="Must be the authenticated user's id")],
    subject: TokenSubject,
) -> ListRepository:
    database = await get_database(request)
    await require_path_owner(database, user_id, subject)
    return ListRepository(database, user_id)


ListRepoDep = Annotated[ListRepository, Depends(get_list_repository)]
