"""The cluster schema's migrations: SQL files shipped in the package, applied at start.

`migrations/NNNN_name.sql` are applied in order, each in its own transaction
with its row in `schema_migrations`, while this connection holds a session
advisory lock: members starting together wait for each other instead of
racing to create the same tables. Applying is idempotent (what is recorded is
skipped). A database whose schema is newer than this vpnhub knows is refused
with a clear error: an old member must not write into tables it does not
understand (upgrade every member, then let the newest migrate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATION_LOCK", "Migration", "SchemaError", "known_migrations", "migrate"]

# pg_advisory_lock key: "vpnh" in ASCII, one lock for the whole schema.
MIGRATION_LOCK = 0x76706E68
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaError(Exception):
    """The database's schema cannot be used by this vpnhub."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def known_migrations() -> list[Migration]:
    """The migrations shipped with this vpnhub, in order."""
    found = []
    for entry in resources.files("vpnhub.cluster").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda x: x.version)
    versions = [x.version for x in found]
    if versions != list(range(1, len(found) + 1)):  # a gap or a duplicate is a packaging bug
        raise SchemaError(f"cluster migrations are not numbered 1..n: {versions}")
    return found


def migrate(conn: psycopg.Connection) -> list[int]:
    """Bring the schema up to date (autocommit connection); the versions applied now."""
    known = known_migrations()
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     " version integer PRIMARY KEY, name text NOT NULL,"
                     " applied timestamptz NOT NULL DEFAULT now())")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        newest = known[-1].version if known else 0
        if current > newest:
            raise SchemaError(
                f"the cluster database's schema is version {current}, newer than this vpnhub"
                f" knows ({newest}): upgrade vpnhub on this member")
        applied = []
        for mig in known:
            if mig.version <= current:
                continue
            with conn.transaction():
                conn.execute(mig.sql.encode())  # no parameters: several statements at once
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (mig.version, mig.name))
            applied.append(mig.version)
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
