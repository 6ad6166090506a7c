"""re-normalise stored emails: NFKC, local part case-folded, domain IDNA-mapped

Signup and login now look emails up in that one spelling (app/auth/schemas.py,
canonical_email), so an address stored in the old one (full-width letters, "straße@...") would
no longer be found. Only addresses with a non-ASCII character can differ: ASCII ones were
already stored lower case, and that is their normal form.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import unicodedata
from collections import Counter
from collections.abc import Sequence

import email_validator
import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NON_ASCII_USERS = sa.text(
    "SELECT id, email FROM users WHERE octet_length(email) <> char_length(email)"
)
TAKEN = sa.text("SELECT email FROM users WHERE email IN :emails").bindparams(
    sa.bindparam("emails", expanding=True)
)
RENAME = sa.text("UPDATE users SET email = :email WHERE id = :id")


def _normal_form(email: str) -> str | None:
    """canonical_email as of this revision, copied rather than imported: a migration must do
    the same thing whenever it runs. None for an address the new rules refuse (left alone)."""
    local_part, _, domain = unicodedata.normalize("NFKC", email).rpartition("@")
    folded = unicodedata.normalize(
        "NFKC", unicodedata.normalize("NFKC", local_part).casefold()
    ).lower()
    try:
        validated = email_validator.validate_email(
            f"{folded}@{domain}",
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
        )
    except email_validator.EmailNotValidError:
        return None
    return validated.normalized


def upgrade() -> None:
    connection = op.get_bind()
    renames = {
        row.id: normal
        for row in connection.execute(NON_ASCII_USERS)
        if (normal := _normal_form(row.email)) not in (None, row.email)
    }
    if not renames:
        return
    wanted = Counter(renames.values())
    taken = set(connection.scalars(TAKEN, {"emails": list(wanted)}))
    clashes = sorted(
        str(user_id) for user_id, email in renames.items() if wanted[email] > 1 or email in taken
    )
    if clashes:
        # Which account keeps an address is an operator's decision, not a migration's: either
        # one may be the impostor the new rules keep out.
        raise RuntimeError(
            f"{len(clashes)} account(s) would share an email with another once emails are "
            f"normalised (user ids: {', '.join(clashes)}). Rename or remove all but one of each, "
            "then migrate again; nothing was changed."
        )
    connection.execute(
        RENAME, [{"id": user_id, "email": email} for user_id, email in renames.items()]
    )


def downgrade() -> None:
    """Nothing to undo: the normal forms are lower case, as revision 0001's check asks, and its
    code finds each account under it."""
