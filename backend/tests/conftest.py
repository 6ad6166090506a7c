"""The suite's fixtures are plugins in tests/fixtures/, loaded here once for every test; tests
import helpers from those modules, never from a conftest.py."""

pytest_plugins = [
    "tests.fixtures.app",
    "tests.fixtures.database",
    "tests.fixtures.accounts",
    "tests.fixtures.tasks",
    "tests.fixtures.logs",
    "tests.fixtures.cluster",
]
