"""FastAPI dependencies for the database: the lifespan's `Database`, read in one place."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.db.database import Database


async def get_database(request: Request) -> Database:
    database: Database = request.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]
