"""``histoloop db upgrade|status|migrate-from-sqlite``: the registry's and the event store's databases.

``upgrade`` runs the versioned migrations (``training/migrations/registry``, ``workers/migrations/events``)
on the configured databases (``HISTOLOOP_DATABASE_URL``, else the SQLite files in the model store).
``migrate-from-sqlite`` copies a lab's embedded SQLite registry and event store into PostgreSQL, ids and
sequence numbers kept, in one transaction per store; it refuses a target that already holds data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kernel.settings import Settings

if TYPE_CHECKING:
    from kernel.database import Database

SEEDED = {"registry": ("meta",)}
"""Tables whose rows a migration inserts (the registry's revision counter): replaced by the copy."""


def _stores(settings: Settings, *, upgrade: bool = True) -> list[tuple[str, Database]]:
    """Both stores' databases; ``upgrade=False`` opens them as they are (nothing created or migrated)."""
    from kernel.database import Database
    from training.migrations import REGISTRY
    from workers.migrations import EVENTS

    registry = (
        settings.database_url.get() or settings.registry_path or settings.model_store / "registry.sqlite"
    )
    return [
        ("registry", Database(registry, "registry", migrations=REGISTRY, upgrade=upgrade)),
        ("events", Database(settings.events_target, "events", migrations=EVENTS, upgrade=upgrade)),
    ]


def _status(database: Database) -> str:
    """Where a database is, read without creating or migrating it."""
    current, pending = database.current(), database.pending()
    if current is None:
        return f"not created yet (head {database.head()}; histoloop db upgrade creates it)"
    line = f"{current} (head {database.head()})"
    return f"{line}: not migrated: {len(pending)} pending (histoloop db upgrade)" if pending else line


def _echo_each_store(settings: Settings, line: Callable[[Database], str], *, upgrade: bool = True) -> None:
    """``<store>: <database> at migration <line(database)>`` for each store; a database error is a message."""
    from kernel.database import DatabaseError

    try:
        for name, database in _stores(settings, upgrade=upgrade):
            text = line(database)
            where = "" if text.startswith("not created") else "at migration "
            click.echo(f"{name}: {database!r} {where}{text}")
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("db")
def db() -> None:
    """The databases of the registry and the event store (SQLite by default, PostgreSQL by URL)."""


@db.command("upgrade")
@click.pass_obj
def upgrade_cmd(settings: Settings) -> None:
    """Create or migrate both schemas to this histoloop's version (safe to run from several hosts at once)."""
    _echo_each_store(settings, lambda database: str(database.upgrade()))


@db.command("status")
@click.pass_obj
def status_cmd(settings: Settings) -> None:
    """Where each store is and which migration it is at (read only: creates and migrates nothing)."""
    _echo_each_store(settings, _status, upgrade=False)


@db.command("migrate-from-sqlite")
@click.option(
    "--registry",
    "registry_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The SQLite registry [<model store>/registry.sqlite].",
)
@click.option(
    "--events",
    "events_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The SQLite event store [<model store>/events.sqlite].",
)
@click.pass_obj
def migrate_from_sqlite(settings: Settings, registry_file: Path | None, events_file: Path | None) -> None:
    """Copy the SQLite registry and event store into the database at HISTOLOOP_DATABASE_URL.

    Stop the backend and the workers first; after the copy, start them with HISTOLOOP_DATABASE_URL set.
    The SQLite files are not changed (keep them as a backup).
    """
    from kernel.database import Database, DatabaseError, copy_tables
    from training.migrations import REGISTRY
    from training.registry import TABLES as REGISTRY_TABLES
    from workers.events import TABLES as EVENT_TABLES
    from workers.migrations import EVENTS

    if not settings.database_url:
        raise click.UsageError("set HISTOLOOP_DATABASE_URL (postgresql://...) to the database to copy into")
    registry_file = registry_file or settings.registry_path
    events_file = events_file or settings.events_path
    plan = [
        ("registry", registry_file, REGISTRY, REGISTRY_TABLES),
        ("events", events_file, EVENTS, EVENT_TABLES),
    ]
    try:
        for store, source_file, migrations, tables in plan:
            if source_file is None or not Path(source_file).is_file():
                click.echo(f"{store}: no SQLite file at {source_file}; nothing to copy")
                continue
            source = Database(source_file, store, migrations=migrations)
            target = Database(settings.database_url.get(), store, migrations=migrations)
            counts = copy_tables(source, target, tables, seeded=SEEDED.get(store, ()))
            summary = ", ".join(f"{n} {t}" for t, n in counts.items())
            click.echo(f"{store}: copied {summary} from {source_file} to {target!r}")
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from exc
