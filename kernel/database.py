"""The database helper under the registry and the event store: SQLite on one machine, PostgreSQL beyond it.

A :class:`Database` is one store (``"registry"``, ``"events"``) at one URL:

- ``sqlite:///<file>`` (or a plain path): the embedded default. WAL mode, one file per store in the model
  store; every process must be on one host (SQLite's WAL index is shared memory: never on NFS).
- ``postgresql://user@host/db``: several hosts. Each store lives in a PostgreSQL schema of its own
  (``histoloop_registry``, ``histoloop_events``), so one database holds both.

The same two transaction shapes on both (SQLAlchemy 2 Core connections, psycopg 3 for PostgreSQL):

- :meth:`Database.read`: a short read transaction (a consistent snapshot on SQLite; read committed on
  PostgreSQL, so run related reads in one statement or inside :meth:`write`).
- :meth:`Database.write`: one write transaction, committed or rolled back, **serialised with every other
  writer of the store** in any process on any host: ``BEGIN IMMEDIATE`` on SQLite (after a lock of this
  process and an exclusive ``flock`` of ``<file>-writer.lock`` shared by the processes, so writers queue
  instead of sleeping in SQLite's busy handler, which sleeps up to 100 ms at a time and made the tail
  latency of concurrent webhooks), a transaction-level advisory
  lock (``pg_advisory_xact_lock``) on PostgreSQL, taken first and released at commit. Serialised writers
  are what the stores' guarantees rest on: a promotion reads the current production and replaces it
  without a lost update, and the event store's sequence numbers commit in order (a snapshot taken at
  sequence *n* has seen every event up to *n*, so no trigger is lost).

The schema is created and changed only by versioned migrations (alembic scripts in the store's own
package, ``training/migrations/registry``, ``workers/migrations/events``): :meth:`Database.upgrade` runs the
missing ones under the same write lock, so many processes starting at once migrate once. Opening a store
upgrades it (``histoloop db upgrade`` does it explicitly), except with ``upgrade=False``, which the
read-only commands use (:meth:`Database.pending` says what is missing, creating nothing); a database
migrated by a newer histoloop is refused with a clear error rather than written with an old schema.

>>> import tempfile
>>> from pathlib import Path
>>> db = Database(Path(tempfile.mkdtemp()) / "x.sqlite", "example")
>>> with db.write() as c:
...     _ = c.exec_driver_sql("CREATE TABLE t (v INTEGER)")
...     _ = c.exec_driver_sql("INSERT INTO t VALUES (1)")
>>> with db.read() as c:
...     c.exec_driver_sql("SELECT v FROM t").scalar()
1
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, Integer, Table, create_engine, event, func, select, text
from sqlalchemy.engine import make_url

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
SQLITE_FULL = 13
POSTGRES_DISK_FULL = "53100"


def disk_full_reason(exc: BaseException | None) -> str | None:
    """Why a write failed when ``exc`` (or an exception under it) is a full disk, else None: an
    ``OSError`` ENOSPC/EDQUOT/EFBIG, SQLite's ``SQLITE_FULL``, PostgreSQL's ``disk_full`` (53100).

    >>> disk_full_reason(OSError(errno.ENOSPC, "No space left on device"))
    'No space left on device'
    >>> import sqlite3
    >>> full = sqlite3.connect(":memory:")
    >>> _ = full.execute("PRAGMA max_page_count = 1")
    >>> try:
    ...     full.execute("CREATE TABLE a (x)")
    ... except sqlite3.Error as exc:
    ...     disk_full_reason(RuntimeError("while recording")) or disk_full_reason(exc)
    'database or disk is full'
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return exc.strerror or os.strerror(exc.errno or errno.ENOSPC)
        if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
            return "database or disk is full"
        if getattr(exc, "sqlstate", None) == POSTGRES_DISK_FULL:
            return "the database's disk is full"
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None


class DatabaseError(RuntimeError):
    """A database that cannot be used: unreachable, or migrated by a newer histoloop."""


def sqlalchemy_url(target: str | Path) -> str:
    """A SQLAlchemy URL for a path or a ``sqlite:``/``postgresql:`` URL (psycopg 3 as the driver).

    >>> sqlalchemy_url("/srv/store/registry.sqlite")
    'sqlite:////srv/store/registry.sqlite'
    >>> sqlalchemy_url("postgresql://histoloop@db:5432/histoloop")
    'postgresql+psycopg://histoloop@db:5432/histoloop'
    """
    text_ = str(target)
    if "://" not in text_:
        return f"sqlite:///{Path(text_).expanduser()}"
    scheme, rest = text_.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("sqlite", "postgresql+psycopg"):
        return text_
    raise DatabaseError(f"unsupported database URL scheme {scheme!r}: use postgresql://... or a SQLite path")


def safe_url(url: str) -> str:
    """The URL with its password masked (for logs and messages).

    >>> safe_url("postgresql://histoloop:s3cret@db/histoloop")
    'postgresql://histoloop:***@db/histoloop'
    """
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def upsert(conn: Connection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT`` for the connection's dialect (SQLite and PostgreSQL spell it alike):
    ``upsert(conn, t).values(...).on_conflict_do_update(index_elements=[...], set_={...})``."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def copy_tables(
    source: Database,
    target: Database,
    tables: Sequence[Table],
    *,
    seeded: Sequence[str] = (),
    chunk: int = 1000,
) -> dict[str, int]:
    """Copy every row of ``tables`` (in that order: parents first) from ``source`` into an empty ``target``,
    keys kept, in one write transaction of ``target``; PostgreSQL's id sequences then continue after the
    copied ids. Refuses (:class:`DatabaseError`) when a target table already has rows, except the ``seeded``
    ones (rows a migration inserts, such as a counter), which are replaced."""
    counts: dict[str, int] = {}
    with source.read() as src, target.write() as dst:
        for table in tables:
            if table.name not in seeded and dst.execute(select(func.count()).select_from(table)).scalar_one():
                raise DatabaseError(
                    f"{target!r}: table {table.name!r} already has rows; copy only into an empty database"
                )
        for table in tables:
            if table.name in seeded:
                dst.execute(table.delete())
            counts[table.name] = 0
            result = src.execute(select(table))
            while rows := result.fetchmany(chunk):
                dst.execute(table.insert(), [dict(r._mapping) for r in rows])
                counts[table.name] += len(rows)
            key = list(table.primary_key.columns)
            serial = len(key) == 1 and isinstance(key[0].type, Integer)
            if target.dialect == "postgresql" and serial and counts[table.name]:
                column = key[0].name
                dst.execute(
                    text(
                        # the names are the schema's own tables and columns, never input
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'),"  # noqa: S608
                        f" (SELECT MAX({column}) FROM {table.name}))"
                    )
                )
    return counts


log = logging.getLogger(__name__)
for _name in ("alembic.runtime.plugins", "alembic.runtime.migration"):  # a few INFO lines per process start
    logging.getLogger(_name).setLevel(logging.WARNING)

_engines: dict[tuple[str, str], tuple[Engine, int]] = {}
_upgraded: set[tuple[str, str, str]] = set()
_guard = threading.Lock()
_process_locks: dict[tuple[int, str], threading.Lock] = {}


_lock_fds: dict[tuple[int, str], int | None] = {}
_poll_connections: dict[tuple[int, str], tuple[Any, threading.Lock]] = {}


def _lock_fd(path: Path) -> int | None:
    """This process's descriptor of ``<path>-writer.lock``, opened once (an ``open`` per write cost ms
    on a busy disk); None when it cannot be created (a read-only folder)."""
    key = (os.getpid(), str(path))
    with _guard:
        if key not in _lock_fds:
            try:
                _lock_fds[key] = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:  # SQLite's own locking still serialises the writers
                _lock_fds[key] = None
        return _lock_fds[key]


@contextmanager
def _host_write_lock(path: Path | None, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` of ``<path>-writer.lock``, tried every 0.5 ms for up to ``timeout`` s (then
    SQLite's own locking decides, as without it). Callers hold the process lock, so one descriptor per
    process suffices. None (an in-memory database): no lock."""
    fd = _lock_fd(path) if path is not None else None
    if fd is None:
        yield
        return
    locked = False
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.0005)
    try:
        yield
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _sqlite_engine(url: str, timeout: float) -> Engine:
    engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # SQLAlchemy's "begin" below emits BEGIN itself
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            dbapi.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("histoloop_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: str, schema: str, timeout: float) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=16,
        connect_args={"options": f"-c search_path={schema}", "connect_timeout": max(1, int(timeout))},
    )


class Database:
    """One store's database (see the module docstring); cheap to create, engines are shared per process."""

    def __init__(
        self,
        target: str | Path,
        store: str,
        *,
        migrations: Path | None = None,
        timeout: float = 30.0,
        upgrade: bool = True,
    ) -> None:
        self.url = sqlalchemy_url(target)
        self.store = store
        self.migrations = migrations
        self.timeout = timeout
        self.dialect = make_url(self.url).get_backend_name()
        self.schema = f"histoloop_{store}"
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            self.path: Path | None = Path(database) if database else None
            if self.path is not None and upgrade:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self.path = None
        self._lock_key = zlib.crc32(f"histoloop:{self.schema}".encode())
        if migrations is not None and upgrade:
            self.upgrade()

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)!r}, {self.store!r})"

    @property
    def engine(self) -> Engine:
        """This process's engine (a fork gets its own pool, without closing the parent's connections)."""
        key = (self.url, self.schema)
        with _guard:
            found = _engines.get(key)
            if found is None:
                engine = (
                    _sqlite_engine(self.url, self.timeout)
                    if self.dialect == "sqlite"
                    else _postgres_engine(self.url, self.schema, self.timeout)
                )
                found = _engines[key] = (engine, os.getpid())
            elif found[1] != os.getpid():
                found[0].dispose(close=False)
                found = _engines[key] = (found[0], os.getpid())
            return found[0]

    def _process_lock(self) -> threading.Lock:
        key = (os.getpid(), self.url)
        with _guard:
            return _process_locks.setdefault(key, threading.Lock())

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A short read transaction."""
        with self.engine.connect() as conn:
            yield conn

    def poll(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of one read-only ``sql`` (``?`` placeholders), or None.

        For a value polled on every request (the registry's revision): on SQLite it runs on a connection of
        this process kept open for it, in autocommit (each statement sees every commit before it), without
        SQLAlchemy's pool checkout and reset, which cost ~20x the query; on PostgreSQL it is a :meth:`read`.
        """
        if self.dialect != "sqlite" or self.path is None:
            with self.read() as db:
                first = db.exec_driver_sql(sql.replace("?", "%s"), tuple(params)).first()
            return None if first is None else first[0]
        key = (os.getpid(), str(self.path))
        with _guard:
            found = _poll_connections.get(key)
            if found is None:
                import sqlite3

                raw = sqlite3.connect(
                    self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
                raw.execute("PRAGMA query_only=ON")
                found = _poll_connections[key] = (raw, threading.Lock())
        raw, lock = found
        with lock:
            row = raw.execute(sql, tuple(params)).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction, serialised with every writer of this store; rolled back on error."""
        if self.dialect == "sqlite":
            with (
                self._process_lock(),
                _host_write_lock(self.path, self.timeout),
                self.engine.connect() as plain,
            ):
                conn = plain.execution_options(histoloop_write=True)
                with conn.begin():
                    yield conn
        else:
            with self.engine.connect() as conn, conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})
                yield conn

    # -- migrations ----------------------------------------------------------------------------
    def head(self) -> str | None:
        """The newest migration of this store's scripts."""
        from alembic.script import ScriptDirectory

        if self.migrations is None:
            return None
        return ScriptDirectory(str(self.migrations)).get_current_head()

    def current(self) -> str | None:
        """The migration this database is at (None: not created yet); creates nothing."""
        from alembic.runtime.migration import MigrationContext

        if self.dialect == "sqlite" and self.path is not None and not self.path.is_file():
            return None  # connecting would create the file
        try:
            with self.read() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except Exception as exc:
            self._raise_cannot_open(exc)
            raise

    def _raise_cannot_open(self, exc: Exception) -> None:
        """A DatabaseError naming this database when ``exc`` is SQLAlchemy's failure to open it."""
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            raise DatabaseError(
                f"cannot open the {self.store} database {safe_url(self.url)}: {exc.orig}"
            ) from exc

    def pending(self) -> list[str]:
        """The migrations this database lacks, oldest first (every one when it is not created yet); reads
        only. A database at a migration this histoloop does not know is a :class:`DatabaseError`."""
        from alembic.script import ScriptDirectory

        if self.migrations is None:
            return []
        script = ScriptDirectory(str(self.migrations))
        current = self.current()
        if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
            raise DatabaseError(
                f"the {self.store} database {safe_url(self.url)} is at migration {current!r}, which this "
                f"histoloop does not know (newer than {script.get_current_head()!r}): upgrade histoloop"
            )
        steps = [rev.revision for rev in script.iterate_revisions(script.get_current_head(), current)]
        return steps[::-1]

    def upgrade(self) -> str | None:
        """Run the missing migrations (under the write lock, so concurrent openers migrate once)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        if self.migrations is None:
            raise DatabaseError(f"{self.store}: no migrations to run")
        key = (self.url, self.schema, str(self.migrations))
        if key in _upgraded:
            return self.head()
        script = ScriptDirectory(str(self.migrations))
        head = script.get_current_head()
        known = {rev.revision for rev in script.walk_revisions()}
        try:
            if self.dialect != "sqlite":
                with self.engine.connect() as conn, conn.begin():
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})
                    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            with self.write() as conn:
                context = MigrationContext.configure(conn)
                current = context.get_current_revision()
                if current is not None and current not in known:
                    raise DatabaseError(
                        f"the {self.store} database {safe_url(self.url)} is at migration {current!r}, which this "
                        f"histoloop does not know (newer than {head!r}): upgrade histoloop"
                    )
                if current != head:
                    from alembic.operations import Operations

                    steps = list(script.iterate_revisions(head, current))
                    steps.reverse()
                    with Operations.context(context):
                        for step in steps:
                            step.module.upgrade()
                            context.stamp(script, step.revision)
                    log.info("%r: migrated from %s to %s", self, current or "nothing", head)
        except DatabaseError:
            raise
        except Exception as exc:
            self._raise_cannot_open(exc)
            raise
        _upgraded.add(key)
        return head
