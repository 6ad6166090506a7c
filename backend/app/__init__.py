"""Task backend: an async FastAPI service storing each user's task list in PostgreSQL."""

__version__ = "0.1.0"
