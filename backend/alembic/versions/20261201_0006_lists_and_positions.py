"""lists, and the positions of tasks and lists

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The key of an item appended by the change numbered `seq`: base 62 after a head letter for the
# number of digits, an integer key of fractional indexing (app/positions/keys.py append_key,
# which a test keeps equal to this).
POSITION_KEY = """
CREATE FUNCTION position_key(seq bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    digits constant text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    key text := '';
BEGIN
    LOOP
        key := substr(digits, (seq % 62)::int + 1, 1) || key;
        seq := seq / 62;
        EXIT WHEN seq = 0;
    END LOOP;
    RETURN chr(ascii('a') + length(key) - 1) || key COLLATE "C";
END
$$
"""
# As 0005's, and: a task created without a list goes to the owner's default list; a trashed
# task gives up its position, and a live task without one (created, restored, or moved to the
# end) is appended to its list.
RECORD_TASK_CHANGE = """
CREATE OR REPLACE FUNCTION record_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF ROW(NEW.*) IS NOT DISTINCT FROM ROW(OLD.*) THEN
            RETURN NEW;
        END IF;
        NEW.version := OLD.version + 1;
    ELSIF NEW.list_id IS NULL THEN
        NEW.list_id := (SELECT id FROM lists WHERE user_id = NEW.user_id AND is_default);
    END IF;
    NEW.change_seq := next_change_seq(NEW.user_id);
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.position := NULL;
    ELSIF NEW.position IS NULL THEN
        NEW.position := position_key(NEW.change_seq);
    END IF;
    RETURN NEW;
END
$$
"""
RECORD_TASK_CHANGE_0005 = """
CREATE OR REPLACE FUNCTION record_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF ROW(NEW.*) IS NOT DISTINCT FROM ROW(OLD.*) THEN
            RETURN NEW;
        END IF;
        NEW.version := OLD.version + 1;
    END IF;
    NEW.change_seq := next_change_seq(NEW.user_id);
    RETURN NEW;
END
$$
"""
# Lists are numbered by the owner's change lock like tasks (one feed), and appended alike.
RECORD_LIST_CHANGE = """
CREATE FUNCTION record_list_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF ROW(NEW.*) IS NOT DISTINCT FROM ROW(OLD.*) THEN
            RETURN NEW;
        END IF;
        NEW.version := OLD.version + 1;
    END IF;
    NEW.change_seq := next_change_seq(NEW.user_id);
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.position := NULL;
    ELSIF NEW.position IS NULL THEN
        NEW.position := position_key(NEW.change_seq);
    END IF;
    RETURN NEW;
END
$$
"""
# Every account has its default list from the start, whichever statement made the account.
CREATE_DEFAULT_LIST = """
CREATE FUNCTION create_default_list() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lists (user_id, name, is_default) VALUES (NEW.id, 'Inbox', true);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(POSITION_KEY)
    op.create_table(
        "lists",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.String(length=32, collation="C"), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("length(btrim(name)) > 0", name=op.f("ck_lists_name_not_blank")),
        sa.CheckConstraint("char_length(name) <= 100", name=op.f("ck_lists_name_max_length")),
        sa.CheckConstraint(
            "(deleted_at IS NULL) = (position IS NOT NULL)", name=op.f("ck_lists_live_positioned")
        ),
        sa.CheckConstraint(
            "NOT (is_default AND deleted_at IS NOT NULL)", name=op.f("ck_lists_default_kept")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_lists_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("user_id", "id", name=op.f("uq_lists_user_id_id")),
        sa.UniqueConstraint(
            "user_id",
            "position",
            name=op.f("uq_lists_user_id_position"),
            deferrable=True,
            initially="IMMEDIATE",
        ),
    )
    op.create_index(
        "uq_lists_user_id_default",
        "lists",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_index("uq_lists_user_id_change_seq", "lists", ["user_id", "change_seq"], unique=True)
    op.execute(RECORD_LIST_CHANGE)
    op.execute(
        "CREATE TRIGGER lists_record_change BEFORE INSERT OR UPDATE ON lists "
        "FOR EACH ROW EXECUTE FUNCTION record_list_change()"
    )
    op.execute(
        "CREATE TRIGGER lists_set_updated_at BEFORE UPDATE ON lists "
        "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
    )
    op.execute(CREATE_DEFAULT_LIST)
    op.execute(
        "CREATE TRIGGER users_create_default_list AFTER INSERT ON users "
        "FOR EACH ROW EXECUTE FUNCTION create_default_list()"
    )
    # Every existing account gets its default list (a change in its feed, like any new list).
    op.execute("INSERT INTO lists (user_id, name, is_default) SELECT id, 'Inbox', true FROM users")

    op.add_column("tasks", sa.Column("list_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column(
        "tasks", sa.Column("position", sa.String(length=32, collation="C"), nullable=True)
    )
    # Existing tasks go to their owner's default list in the order they were created; the
    # backfill itself is no change (no version, number or updated_at moves). Their keys number
    # them from 1, below every future append (whose change number is at least the owner's count
    # of tasks: 0005 numbered each owner's tasks from 1).
    op.execute("ALTER TABLE tasks DISABLE TRIGGER tasks_record_change")
    op.execute("ALTER TABLE tasks DISABLE TRIGGER tasks_set_updated_at")
    op.execute(
        "UPDATE tasks SET list_id = lists.id FROM lists "
        "WHERE lists.user_id = tasks.user_id AND lists.is_default"
    )
    op.execute(
        "UPDATE tasks SET position = position_key(numbered.number) FROM ("
        "SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY created_at, id) AS number "
        "FROM tasks WHERE deleted_at IS NULL) AS numbered WHERE tasks.id = numbered.id"
    )
    op.execute("ALTER TABLE tasks ENABLE TRIGGER tasks_set_updated_at")
    op.execute("ALTER TABLE tasks ENABLE TRIGGER tasks_record_change")
    op.alter_column("tasks", "list_id", nullable=False)
    op.create_check_constraint(
        op.f("ck_tasks_live_positioned"), "tasks", "(deleted_at IS NULL) = (position IS NOT NULL)"
    )
    op.drop_constraint("fk_tasks_user_id_users", "tasks", type_="foreignkey")
    op.create_foreign_key(
        "fk_tasks_list_id_lists",
        "tasks",
        "lists",
        ["user_id", "list_id"],
        ["user_id", "id"],
        ondelete="CASCADE",
    )
    # Written out: alembic's constraint operation builds a table of the key's columns only, which
    # has no `completed` to include.
    op.execute(
        "ALTER TABLE tasks ADD CONSTRAINT uq_tasks_list_id_position UNIQUE (list_id, position) "
        "INCLUDE (completed) DEFERRABLE INITIALLY IMMEDIATE"
    )
    op.execute(RECORD_TASK_CHANGE)


def downgrade() -> None:
    op.execute(RECORD_TASK_CHANGE_0005)
    op.drop_constraint("uq_tasks_list_id_position", "tasks", type_="unique")
    op.drop_constraint("fk_tasks_list_id_lists", "tasks", type_="foreignkey")
    op.create_foreign_key(
        "fk_tasks_user_id_users", "tasks", "users", ["user_id"], ["id"], ondelete="CASCADE"
    )
    op.drop_constraint(op.f("ck_tasks_live_positioned"), "tasks", type_="check")
    # Before lists, every task was in the one list of its owner: the lists go, the tasks stay.
    op.drop_column("tasks", "position")
    op.drop_column("tasks", "list_id")
    op.execute("DROP TRIGGER users_create_default_list ON users")
    op.execute("DROP FUNCTION create_default_list()")
    op.drop_table("lists")
    op.execute("DROP FUNCTION record_list_change()")
    op.execute("DROP FUNCTION position_key(bigint)")
