"""The model registry: the only writer of versions and the only judge of what "production" is.

One database (:mod:`kernel.database`) shared by the backend, the workers and the CLI, in as many processes
(and, on PostgreSQL, hosts) as there are: a SQLite file in the model store by default, PostgreSQL when
``HISTOLOOP_DATABASE_URL`` is set. Every write is one serialised transaction, so two promotions that race
are serialised (no lost update), and a partial unique index makes "more than one production version per
(project, kind)" impossible at the database level, on both. The schema is made by versioned migrations
(``training/migrations/registry``).

Artifacts are written by a trainer into ``<store>/staging/...`` and moved into place with a single rename
when the version is registered: a reader never sees a half-written version. The rename happens before the
row commits, on the store every host mounts, so a host sees a version row after its files; a host whose
filesystem view lags (an NFS attribute cache) may still see a row before its files: :meth:`Registry.artifacts`
waits for them a little, then raises :class:`ArtifactsNotVisible`; the backend then answers without that
model and tries again on its next request (it never records the version as broken). See docs/databases.md, "Artifacts on a shared filesystem".

>>> import tempfile
>>> from training.artifacts import ModelCard
>>> store = Path(tempfile.mkdtemp())
>>> reg = Registry(store / "registry.sqlite", store)
>>> staging = reg.staging_dir()
>>> ModelCard(kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"},
...           input_size=64).save(staging)
>>> v1 = reg.register("4", "classify", staging, metrics={"balanced_accuracy": 0.8})
>>> v1.label, v1.status
('classify-v1', 'candidate')
>>> reg.promote(v1.id, by="doctest").status
'production'
>>> reg.production("4", "classify").label
'classify-v1'
"""

from __future__ import annotations

import builtins
import json
import os
import re
import socket
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    Row,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)

from kernel.database import Database
from kernel.processes import pid_alive
from kernel.settings import Settings
from training.artifacts import CARD_FILE, KINDS, ArtifactError, publish_dir, record_checksum, remove_dir
from training.migrations import REGISTRY

STATUSES = ("candidate", "production", "archived", "failed")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_REF_RE = re.compile(r"^(?P<project>[^/]+)/(?P<kind>[^/]+)/v(?P<version>\d+)$")

# The tables as the queries see them; the migrations in training/migrations/registry make them.
_meta = MetaData()
versions = Table(
    "versions",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("project", Text),
    Column("kind", Text),
    Column("version", Integer),
    Column("status", Text),
    Column("metrics", Text),
    Column("config", Text),
    Column("lineage", Text),
    Column("parent_id", Integer),
    Column("artifact_dir", Text),
    Column("created_at", Float),
    Column("reason", Text),
)
history_events = Table(
    "events",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("project", Text),
    Column("kind", Text),
    Column("action", Text),
    Column("version_id", Integer),
    Column("previous_id", Integer),
    Column("by", Text),
    Column("reason", Text),
    Column("at", Float),
)
meta = Table("meta", _meta, Column("key", Text, primary_key=True), Column("value", Integer))
TABLES = (versions, history_events, meta)
"""In the order a copy must insert them (:mod:`histoloop.cli.db`)."""


class RegistryError(ValueError):
    """A request the registry refuses: unknown version, bad state transition, bad project key."""


class ArtifactsNotVisible(ArtifactError):
    """The registry has the version but this host does not see its files (yet): worth trying again later."""


@dataclass(frozen=True)
class ModelVersion:
    id: int
    project: str
    kind: str
    version: int
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    parent_id: int | None = None
    artifact_dir: Path | None = None
    created_at: float = 0.0
    reason: str | None = None

    @property
    def label(self) -> str:
        """The name Label Studio sees as ``model_version``, e.g. ``detect-v3``."""
        return f"{self.kind}-v{self.version}"

    @property
    def ref(self) -> str:
        """A reference that :meth:`Registry.get` accepts, e.g. ``4/detect/v3``."""
        return f"{self.project}/{self.kind}/v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "label": self.label,
            "project": self.project,
            "kind": self.kind,
            "version": self.version,
            "status": self.status,
            "metrics": self.metrics,
            "config": self.config,
            "lineage": self.lineage,
            "parent_id": self.parent_id,
            "artifact_dir": str(self.artifact_dir) if self.artifact_dir else None,
            "created_at": self.created_at,
            "reason": self.reason,
        }


def _row_to_version(row: Row[Any]) -> ModelVersion:
    r = row._mapping
    return ModelVersion(
        id=r["id"],
        project=r["project"],
        kind=r["kind"],
        version=r["version"],
        status=r["status"],
        metrics=json.loads(r["metrics"]),
        config=json.loads(r["config"]),
        lineage=json.loads(r["lineage"]),
        parent_id=r["parent_id"],
        artifact_dir=Path(r["artifact_dir"]) if r["artifact_dir"] else None,
        created_at=r["created_at"],
        reason=r["reason"],
    )


def _check_key(project: str, kind: str) -> tuple[str, str]:
    project = str(project)
    if not _PROJECT_RE.match(project):
        raise RegistryError(f"bad project key {project!r}: use letters, digits, '.', '_' or '-'")
    if kind not in KINDS:
        raise RegistryError(f"unknown model kind {kind!r} (expected one of {', '.join(KINDS)})")
    return project, kind


def _dumps(value: Any) -> str:
    return json.dumps(value or {}, sort_keys=True, default=str)


class Registry:
    """Model versions of every project, in one database, safe across threads, processes and hosts.

    ``target``: a SQLite file (the embedded default, ``<store>/registry.sqlite``) or a
    ``postgresql://`` URL; ``store``: the model store (artifacts), default the SQLite file's folder.
    """

    def __init__(
        self, target: str | Path, store: Path | None = None, timeout: float = 30.0, *, upgrade: bool = True
    ) -> None:
        self.db = Database(target, "registry", migrations=REGISTRY, timeout=timeout, upgrade=upgrade)
        self.path = self.db.path
        """The SQLite file (None on PostgreSQL)."""
        if store is None and self.path is None:
            raise ValueError("a registry on a database server needs the model store folder (store=...)")
        self.store = Path(store) if store is not None else Path(self.path or ".").parent
        self.artifact_wait_s = 10.0
        """How long :meth:`artifacts` waits for a version's files a host does not see yet."""

    @classmethod
    def from_settings(cls, settings: Settings, *, upgrade: bool = True) -> Registry:
        """The configured registry; ``upgrade=False`` opens it as it is, creating and migrating nothing
        (for readers: check ``db.pending()`` before reading)."""
        target = settings.database_url.get() if settings.database_url else settings.registry_path
        return cls(target, settings.model_store, upgrade=upgrade)  # type: ignore[arg-type]

    # -- connections ---------------------------------------------------------------------------
    def _write(self) -> AbstractContextManager[Connection]:
        """One serialised write transaction (:meth:`kernel.database.Database.write`)."""
        return self.db.write()

    @staticmethod
    def _bump(db: Connection) -> None:
        db.execute(update(meta).where(meta.c.key == "revision").values(value=meta.c.value + 1))

    # -- reading -------------------------------------------------------------------------------
    def revision(self) -> int:
        """A counter that changes on every register, promote and rollback (cheap to poll)."""
        return int(self.db.poll("SELECT value FROM meta WHERE key = ?", ("revision",)))

    def get(self, ref: int | str) -> ModelVersion:
        """A version by id (``12``) or by reference (``4/detect/v3``)."""
        with self.db.read() as db:
            return self._get_in(db, ref, check_files=False)

    def production(self, project: str, kind: str) -> ModelVersion | None:
        with self.db.read() as db:
            return self._production_in(db, str(project), kind)

    def list(
        self, project: str | None = None, kind: str | None = None, status: str | None = None
    ) -> builtins.list[ModelVersion]:
        query = select(versions)
        for column, value in (("project", project), ("kind", kind), ("status", status)):
            if value is not None:
                query = query.where(versions.c[column] == str(value))
        query = query.order_by(versions.c.project, versions.c.kind, versions.c.version)
        with self.db.read() as db:
            return [_row_to_version(r) for r in db.execute(query)]

    def status_counts(self) -> dict[tuple[str, str, str], int]:
        """How many versions each (project, kind) has in each status (only the statuses it has)."""
        c = versions.c
        query = select(c.project, c.kind, c.status, func.count()).group_by(c.project, c.kind, c.status)
        with self.db.read() as db:
            return {(r[0], r[1], r[2]): int(r[3]) for r in db.execute(query)}

    def history(self, project: str, kind: str) -> builtins.list[dict[str, Any]]:
        """Every promotion and rollback of (project, kind), oldest first: who, when, why."""
        e, v, p = history_events, versions.alias("v"), versions.alias("p")
        query = (
            select(e, v.c.version.label("version"), p.c.version.label("previous_version"))
            .join(v, v.c.id == e.c.version_id)
            .outerjoin(p, p.c.id == e.c.previous_id)
            .where(e.c.project == str(project), e.c.kind == kind)
            .order_by(e.c.id)
        )
        with self.db.read() as db:
            return [dict(r._mapping) for r in db.execute(query)]

    def artifacts(self, version: ModelVersion) -> Path:
        """The version's directory, once this host sees its files.

        The rename that publishes a version happens before its row commits, so on the host that
        registered it (and on any mount that is coherent with it) the files are always there. A host
        whose view of the shared store lags (NFS attribute caching) can see the row first: this waits up
        to ``artifact_wait_s`` for the model card, then raises :class:`ArtifactsNotVisible`.
        """
        if version.artifact_dir is None:
            raise ArtifactError(f"{version.ref} has no artifacts ({version.status}: {version.reason})")
        deadline = time.monotonic() + self.artifact_wait_s
        delay = 0.05
        while True:
            if (version.artifact_dir / CARD_FILE).is_file():
                return version.artifact_dir
            if time.monotonic() >= deadline:
                raise ArtifactsNotVisible(
                    f"{version.ref}: the registry has it but this host does not see {version.artifact_dir}"
                    f" after {self.artifact_wait_s:.0f} s (is the model store mounted here at the same path?)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # -- writing -------------------------------------------------------------------------------
    def staging_dir(self) -> Path:
        """A fresh directory for a trainer to write a version into (same filesystem as the store)."""
        path = self.store / "staging" / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        return path

    def register(
        self,
        project: str,
        kind: str,
        staging: Path,
        *,
        metrics: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        parent_id: int | None = None,
    ) -> ModelVersion:
        """Record a trained version as a candidate and move its staging directory into place."""
        return self._add(
            project,
            kind,
            "candidate",
            Path(staging),
            metrics=metrics,
            config=config,
            lineage=lineage,
            parent_id=parent_id,
        )

    def record_failed(
        self,
        project: str,
        kind: str,
        reason: str,
        *,
        config: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        parent_id: int | None = None,
    ) -> ModelVersion:
        """Record a training that failed, with the reason; production is not touched."""
        return self._add(
            project, kind, "failed", None, config=config, lineage=lineage, parent_id=parent_id, reason=reason
        )

    def _add(
        self,
        project: str,
        kind: str,
        status: str,
        staging: Path | None,
        *,
        metrics: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        parent_id: int | None = None,
        reason: str | None = None,
    ) -> ModelVersion:
        """The next version of (project, kind), recorded with ``status``; with ``staging``, its files moved
        into place first (and back when the row cannot be written)."""
        project, kind = _check_key(project, kind)
        if staging is not None:
            record_checksum(staging)  # verified whenever the weights are loaded (training.artifacts)
        with self._write() as db:
            version = self._next_version(db, project, kind)
            target = self.store / "models" / project / kind / f"v{version}"
            if staging is not None:
                if target.exists():  # left behind by a process killed between rename and commit
                    remove_dir(target)
                publish_dir(staging, target)
            try:
                new_id = self._insert(
                    db,
                    project,
                    kind,
                    version,
                    status,
                    metrics=metrics,
                    config=config,
                    lineage=lineage,
                    parent_id=parent_id,
                    reason=reason,
                    artifact_dir=None if staging is None else str(target),
                )
            except BaseException:
                if staging is not None:
                    os.rename(target, staging)
                raise
        return self.get(new_id)

    def note(self, ref: int | str, text: str) -> ModelVersion:
        """Set a version's note (its ``reason``: why it failed, or the promotion gate's decision on it)."""
        with self._write() as db:
            target = self._get_in(db, ref, check_files=False)
            db.execute(update(versions).where(versions.c.id == target.id).values(reason=text[:1000]))
            self._bump(db)
        return self.get(target.id)

    def promote(self, ref: int | str, *, by: str = "cli", reason: str = "") -> ModelVersion:
        """Make a version production; the previous production version becomes archived."""
        with self._write() as db:
            target = self._get_in(db, ref)
            if target.status == "failed":
                raise RegistryError(
                    f"{target.ref} failed ({target.reason}); a failed version cannot be promoted"
                )
            if target.status == "production":
                return target
            current = self._production_in(db, target.project, target.kind)
            self._swap(db, target, current, "promote", by, reason)
        return self.get(target.id)

    def rollback(self, project: str, kind: str, *, by: str = "cli", reason: str = "") -> ModelVersion:
        """Put the production version that came before the current one back into production."""
        project, kind = _check_key(project, kind)
        with self._write() as db:
            stack: builtins.list[int] = []
            e = history_events
            for action, version_id in db.execute(
                select(e.c.action, e.c.version_id)
                .where(e.c.project == project, e.c.kind == kind)
                .order_by(e.c.id)
            ):
                if action == "promote":
                    stack.append(version_id)
                elif stack:
                    stack.pop()
            current = self._production_in(db, project, kind)
            if current is None or len(stack) < 2:
                raise RegistryError(f"{project}/{kind}: no earlier production version to roll back to")
            previous = self._get_in(db, stack[-2])
            self._swap(db, previous, current, "rollback", by, reason)
        return self.get(previous.id)

    def cleanup_staging(self, older_than_s: float = 24 * 3600) -> builtins.list[Path]:
        """Remove staging directories abandoned by a crashed or killed trainer.

        A directory is abandoned when the process that made it (on this host) is gone, or when it is
        older than ``older_than_s`` (a trainer on another host sharing the store). The directory of a
        process of this host that is still alive is never removed, however old (a long training).
        """
        removed = []
        host = socket.gethostname()
        for path in sorted((self.store / "staging").glob("*")):
            name_host, _, rest = path.name.rpartition("-")[0].rpartition("-")
            pid = int(rest) if rest.isdigit() else -1
            here = name_host == host and pid > 0
            if here and pid_alive(pid):
                continue
            try:
                old = time.time() - path.stat().st_mtime > older_than_s
            except FileNotFoundError:  # removed meanwhile (published or cleaned by another process)
                continue
            if here or old:
                remove_dir(path)
                removed.append(path)
        return removed

    # -- internals -----------------------------------------------------------------------------
    def _insert(
        self,
        db: Connection,
        project: str,
        kind: str,
        version: int,
        status: str,
        *,
        metrics: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        parent_id: int | None = None,
        artifact_dir: str | None = None,
        reason: str | None = None,
    ) -> int:
        """One new row in ``versions`` (and the revision bumped), in the caller's write transaction."""
        result = db.execute(
            insert(versions).values(
                project=project,
                kind=kind,
                version=version,
                status=status,
                metrics=_dumps(metrics),
                config=_dumps(config),
                lineage=_dumps(lineage),
                parent_id=parent_id,
                artifact_dir=artifact_dir,
                created_at=time.time(),
                reason=reason,
            )
        )
        self._bump(db)
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    @staticmethod
    def _next_version(db: Connection, project: str, kind: str) -> int:
        query = select(func.coalesce(func.max(versions.c.version), 0) + 1).where(
            versions.c.project == project, versions.c.kind == kind
        )
        return int(db.execute(query).scalar_one())

    @staticmethod
    def _get_in(db: Connection, ref: int | str, check_files: bool = True) -> ModelVersion:
        text = str(ref).strip()
        if text.isdigit():
            query = select(versions).where(versions.c.id == int(text))
        elif m := _REF_RE.match(text):
            query = select(versions).where(
                versions.c.project == m["project"],
                versions.c.kind == m["kind"],
                versions.c.version == int(m["version"]),
            )
        else:
            raise RegistryError(
                f"bad version reference {text!r}: use an id (12) or PROJECT/KIND/vN (4/detect/v3)"
            )
        row = db.execute(query).first()
        if row is None:
            raise RegistryError(f"no model version {text!r}")
        version = _row_to_version(row)
        if (
            check_files
            and version.artifact_dir is not None
            and version.status != "failed"
            and not version.artifact_dir.is_dir()
        ):
            raise ArtifactError(f"{version.ref}: artifact directory {version.artifact_dir} is missing")
        return version

    @staticmethod
    def _production_in(db: Connection, project: str, kind: str) -> ModelVersion | None:
        row = db.execute(
            select(versions).where(
                versions.c.project == project, versions.c.kind == kind, versions.c.status == "production"
            )
        ).first()
        return _row_to_version(row) if row else None

    def _swap(
        self,
        db: Connection,
        new: ModelVersion,
        old: ModelVersion | None,
        action: str,
        by: str,
        reason: str,
    ) -> None:
        if old is not None:
            db.execute(update(versions).where(versions.c.id == old.id).values(status="archived"))
        db.execute(update(versions).where(versions.c.id == new.id).values(status="production"))
        db.execute(
            insert(history_events).values(
                project=new.project,
                kind=new.kind,
                action=action,
                version_id=new.id,
                previous_id=old.id if old else None,
                by=by,
                reason=reason,
                at=time.time(),
            )
        )
        self._bump(db)
