"""Where the signing secret comes from: a generated one in development, a real one required in
production. (The code lives in app.cli and app.settings; the tests sit with the accounts
feature they protect.)"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.cli import JWT_SECRET_FILE, _development_jwt_secret
from app.settings import MIN_JWT_SECRET_BYTES, Settings, SettingsError, load_settings
from tests.fixtures.logs import LogCapture

PRODUCTION_URL = "postgresql://app:pw@db.example.test:5432/tasks"


def test_the_development_secret_is_generated_once_into_the_data_dir_and_reused(
    tmp_path: Path,
) -> None:
    first = _development_jwt_secret(tmp_path)
    second = _development_jwt_secret(tmp_path)

    assert first == second
    assert len(first.encode()) >= MIN_JWT_SECRET_BYTES
    secret_file = tmp_path / JWT_SECRET_FILE
    assert secret_file.read_text().strip() == first
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_each_data_dir_gets_its_own_development_secret(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    assert _development_jwt_secret(tmp_path / "a") != _development_jwt_secret(tmp_path / "b")


def test_the_development_secret_is_announced_with_a_warning_that_omits_it(
    tmp_path: Path, app_logs: LogCapture
) -> None:
    secret = _development_jwt_secret(tmp_path)

    [warning] = [r for r in app_logs.records() if r["event"] == "development_jwt_secret"]
    assert warning["level"] == "warning"
    assert str(tmp_path / JWT_SECRET_FILE) in warning["detail"]
    assert secret not in app_logs.text


def test_a_development_secret_works_as_the_settings_secret(tmp_path: Path) -> None:
    secret = _development_jwt_secret(tmp_path)

    settings = Settings(database_url=PRODUCTION_URL, jwt_secret=secret, _env_file=None)  # type: ignore[arg-type]

    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == secret


@pytest.mark.parametrize(
    "secret", [None, "", "s" * (MIN_JWT_SECRET_BYTES - 1)], ids=["missing", "empty", "31-bytes"]
)
def test_settings_with_a_database_url_refuse_a_missing_or_short_jwt_secret(
    secret: str | None,
) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be set to at least 32 bytes"):
        Settings(database_url=PRODUCTION_URL, jwt_secret=secret, _env_file=None)  # type: ignore[arg-type]


def test_the_refusal_is_one_line_naming_jwt_secret_without_echoing_it() -> None:
    short = "short-secret-value"

    with pytest.raises(SettingsError) as caught:
        load_settings(database_url=PRODUCTION_URL, jwt_secret=short, _env_file=None)

    message = str(caught.value)
    assert "\n" not in message
    assert "JWT_SECRET" in message
    assert short not in message
    assert "pw@" not in message


def test_a_32_byte_jwt_secret_is_accepted_with_a_database_url() -> None:
    settings = Settings(
        database_url=PRODUCTION_URL,
        jwt_secret="s" * MIN_JWT_SECRET_BYTES,
        _env_file=None,  # type: ignore[call-arg]
    )

    assert settings.jwt_secret is not None


def test_the_bound_counts_bytes_not_characters() -> None:
    # 16 two-byte characters are 32 bytes.
    settings = Settings(database_url=PRODUCTION_URL, jwt_secret="é" * 16, _env_file=None)  # type: ignore[arg-type]

    assert settings.jwt_secret is not None


def test_without_a_database_url_no_jwt_secret_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("JWT_SECRET", raising=False)

    settings = Settings(database_url=None, jwt_secret=None, _env_file=None)  # type: ignore[arg-type]

    assert settings.uses_embedded_database
    assert settings.jwt_secret is None
