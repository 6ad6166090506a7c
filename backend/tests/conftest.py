"""The suite's fixtures are plugins in tests/fixtures/, loaded here once for every test; tests
import helpers from those modules, never from a conftest.py."""

import pytest

pytest_plugins = [
    "tests.fixtures.app",
    "tests.fixtures.database",
    "tests.fixtures.accounts",
    "tests.fixtures.sessions",
    "tests.fixtures.tasks",
    "tests.fixtures.logs",
    "tests.fixtures.cluster",
    "tests.fixtures.redis",
    "tests.fixtures.browser",
    "tests.fixtures.generated_client",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked slow run first, so the last modules xdist hands out are short ones and the
    two workers finish together (a stable sort keeps each module's tests together, in order)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
