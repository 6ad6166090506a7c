"""Which address the per-address limit counts, through the real server's proxy-header handling:
X-Forwarded-For is believed only from a peer in FORWARDED_ALLOW_IPS (README "Client addresses
behind a proxy")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import AppServer

# Real server processes: scheduled first (see conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_database")]

LIMIT = 3
# The server's only peer in these tests is the test itself, on 127.0.0.1.
UNTRUSTED_PEER_CONFIG = {"FORWARDED_ALLOW_IPS": "192.0.2.1"}
TRUSTED_PEER_CONFIG = {"FORWARDED_ALLOW_IPS": "127.0.0.1"}


def serve(database_url: str, root: Path, env: dict[str, str]) -> AppServer:
    return AppServer(
        database_url=database_url,
        root=root,
        env={"RATE_LIMIT_AUTH_PER_ADDRESS": f"{LIMIT}/minute", **env},
    )


@pytest.fixture
def untrusted_peer_server(database_url: str, tmp_path: Path) -> Iterator[AppServer]:
    with serve(database_url, tmp_path, UNTRUSTED_PEER_CONFIG).serving() as server:
        yield server


@pytest.fixture
def trusted_peer_server(database_url: str, tmp_path: Path) -> Iterator[AppServer]:
    with serve(database_url, tmp_path, TRUSTED_PEER_CONFIG).serving() as server:
        yield server


def login(server: AppServer, forwarded_for: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/auth/login",
        json={"email": "nobody@example.com", "password": "wrong-guess"},
        headers={"X-Forwarded-For": forwarded_for},
    )


def failed_login_addresses(server: AppServer) -> list[str]:
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    return [line["client_address"] for line in lines if line.get("event") == "login_failed"]


def test_a_rotating_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(
    untrusted_peer_server: AppServer,
) -> None:
    statuses = [
        login(untrusted_peer_server, f"203.0.113.{i}").status_code for i in range(LIMIT + 2)
    ]

    assert statuses == [401] * LIMIT + [429] * 2
    assert failed_login_addresses(untrusted_peer_server) == ["127.0.0.1"] * LIMIT


def test_a_trusted_peers_forwarded_for_is_the_address_that_is_limited(
    trusted_peer_server: AppServer,
) -> None:
    rotating = [login(trusted_peer_server, f"203.0.113.{i}").status_code for i in range(LIMIT + 2)]
    repeated = [login(trusted_peer_server, "198.51.100.7").status_code for _ in range(LIMIT + 1)]

    assert rotating == [401] * (LIMIT + 2)
    assert repeated == [401] * LIMIT + [429]
    assert failed_login_addresses(trusted_peer_server) == [
        *(f"203.0.113.{i}" for i in range(LIMIT + 2)),
        *["198.51.100.7"] * LIMIT,
    ]


def test_behind_an_appending_proxy_what_the_client_wrote_is_ignored(
    trusted_peer_server: AppServer,
) -> None:
    """A proxy that appends the address it saw (nginx's $proxy_add_x_forwarded_for) leaves the
    client's own X-Forwarded-For in front; the rightmost untrusted entry is the one used."""
    statuses = [
        login(trusted_peer_server, f"203.0.113.{i}, 198.51.100.9").status_code
        for i in range(LIMIT + 1)
    ]

    assert statuses == [401] * LIMIT + [429]
    assert failed_login_addresses(trusted_peer_server) == ["198.51.100.9"] * LIMIT
