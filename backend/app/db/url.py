"""Turn the PostgreSQL URLs people paste into an asyncpg engine URL plus connect arguments.

libpq-style parameters such as ``sslmode`` are not asyncpg keywords: handed through as they are,
asyncpg fails with "unexpected keyword argument". They are translated here, once.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+asyncpg")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Query parameters asyncpg takes as connect() keywords unchanged.
PASSTHROUGH_PARAMS = ("host", "port", "target_session_attrs")
TRUTHY = ("1", "true", "yes", "on")
# SQLAlchemy's "user:password@" prefix (the same pattern as its own parser), so a host list is
# read after the '@' SQLAlchemy would split at, and a comma in a password is no host list.
USERINFO = re.compile(r"[^:/]*(?::[^@]*)?@")
DEFAULT_PORT = "5432"


class DatabaseUrlError(ValueError):
    """The URL cannot be used; the message never contains the URL itself."""


@dataclass(frozen=True)
class DatabaseTarget:
    """Where to connect and how: what the engine needs, derived from one URL."""

    url: URL
    ssl_mode: str | None = None
    ssl_root_cert: str | None = None
    application_name: str | None = None
    pgbouncer: bool = False
    connect_timeout: float | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def display(self) -> str:
        """Host and database for humans, password hidden."""
        return self.url.render_as_string(hide_password=True)

    @property
    def host_label(self) -> str:
        hosts, ports = self.url.query.get("host"), self.url.query.get("port")
        if isinstance(hosts, str) and isinstance(ports, str) and "," in hosts:
            # A host list (see _read_url): each host with its own port.
            pairs = zip(hosts.split(","), ports.split(","), strict=False)
            return "hosts " + ", ".join(
                f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in pairs
            )
        host = self.url.host or str(self.url.query.get("host", "local socket"))
        return f"host {host}" + (f":{self.url.port}" if self.url.port else "")

    @property
    def database(self) -> str:
        return self.url.database or "postgres"

    def ssl_argument(self) -> ssl.SSLContext | bool | str | None:
        """The value for asyncpg's ``ssl`` keyword that gives ``sslmode`` its libpq meaning."""
        mode = self.ssl_mode
        if mode is None:
            return None
        if mode == "disable":
            return False
        if mode in ("allow", "prefer"):
            return mode
        if mode == "require" and self.ssl_root_cert is None:
            # Encrypt, but like libpq do not verify the certificate.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        context = ssl.create_default_context(cafile=self.ssl_root_cert)
        # libpq: require with a root cert behaves like verify-ca.
        context.check_hostname = mode == "verify-full"
        context.verify_mode = ssl.CERT_REQUIRED
        return context


def parse_database_url(raw: str) -> DatabaseTarget:
    try:
        url = _read_url(raw.strip())
    except ArgumentError:
        raise DatabaseUrlError(
            "not a valid URL; expected postgresql://user:password@host:port/database"
        ) from None
    if url.drivername not in ACCEPTED_SCHEMES:
        raise DatabaseUrlError(
            f"unsupported scheme '{url.drivername}'; use postgresql:// (or postgres://, "
            "postgresql+asyncpg://)"
        )
    if url.host and "@" in url.host:
        # "u:p@ss@host" parses as password "p" and host "ss@host": refuse rather than print
        # part of the password as a host name.
        raise DatabaseUrlError("the host contains '@'; write an '@' in the password as %40")
    query: dict[str, Any] = dict(url.query)
    warnings: list[str] = []

    ssl_mode = _pop_single(query, "sslmode")
    if ssl_mode is not None and ssl_mode not in SSL_MODES:
        raise DatabaseUrlError(f"sslmode '{ssl_mode}' is not one of {', '.join(SSL_MODES)}")
    ssl_root_cert = _pop_single(query, "sslrootcert")
    if ssl_root_cert == "system":  # libpq 16 spelling for "the system CA store"
        ssl_root_cert = None
    if ssl_root_cert is not None and not Path(ssl_root_cert).is_file():
        raise DatabaseUrlError(f"sslrootcert file not found: {ssl_root_cert}")
    if _pop_single(query, "channel_binding") not in (None, "disable"):
        warnings.append(
            "channel_binding is not supported by the asyncpg driver and is ignored; "
            "TLS still applies per sslmode"
        )
    application_name = _pop_single(query, "application_name")
    pgbouncer = (_pop_single(query, "pgbouncer") or "").lower() in TRUTHY
    connect_timeout = _pop_single(query, "connect_timeout")
    try:
        timeout = float(connect_timeout) if connect_timeout is not None else None
    except ValueError:
        raise DatabaseUrlError("connect_timeout must be a number of seconds") from None

    unknown = sorted(set(query) - set(PASSTHROUGH_PARAMS))
    if unknown:
        raise DatabaseUrlError(f"unsupported query parameter(s): {', '.join(unknown)}")

    return DatabaseTarget(
        url=url.set(drivername="postgresql+asyncpg", query=query),
        ssl_mode=ssl_mode,
        ssl_root_cert=ssl_root_cert,
        application_name=application_name,
        pgbouncer=pgbouncer,
        connect_timeout=timeout,
        warnings=tuple(warnings),
    )


def _read_url(raw: str) -> URL:
    """``make_url`` that also reads libpq's host list (``postgresql://u@h1:p1,h2:p2/db``, for
    failover with ``target_session_attrs``): make_url alone fails on "p1,h2:p2" as a port, so
    the list moves to the ``?host=h1,h2&port=p1,p2`` form SQLAlchemy hands asyncpg as lists."""
    scheme, separator, rest = raw.partition("://")
    userinfo = USERINFO.match(rest) if separator else None
    start = userinfo.end() if userinfo else 0
    authority = re.split(r"[/?]", rest[start:], maxsplit=1)[0]
    if "," not in authority:
        return make_url(raw)
    url = make_url(f"{scheme}://{rest[:start]}{rest[start + len(authority) :]}")
    if "host" in url.query or "port" in url.query:
        raise DatabaseUrlError("a host list cannot be combined with ?host= or ?port=")
    hosts, ports = zip(*map(_host_and_port, authority.split(",")), strict=True)
    return url.update_query_dict({"host": ",".join(hosts), "port": ",".join(ports)})


def _host_and_port(entry: str) -> tuple[str, str]:
    """One entry of a host list: ``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port``."""
    if entry.startswith("["):
        host, _, port = entry[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = entry.partition(":")
    if not host:
        raise DatabaseUrlError("the host list has an empty host")
    if "@" in host:
        raise DatabaseUrlError("the host contains '@'; write an '@' in the password as %40")
    if port and not port.isdigit():
        raise DatabaseUrlError(f"the port of host {host} is not a number")
    return host, port or DEFAULT_PORT


def _pop_single(query: dict[str, Any], key: str) -> str | None:
    value: str | tuple[str, ...] | None = query.pop(key, None)
    if isinstance(value, tuple):
        if len(set(value)) > 1:
            raise DatabaseUrlError(f"query parameter '{key}' is given more than once")
        value = value[0]
    return value
