"""The model registry: the only writer of versions and the only judge of what "production" is.

One SQLite file (WAL mode) shared by the backend, the workers and the CLI, in as many processes as
there are. Every write is one ``BEGIN IMMEDIATE`` transaction, so two promotions that race are
serialised (no lost update), and a partial unique index makes "more than one production version per
(project, kind)" impossible at the database level. Artifacts are written by a trainer into a staging
directory and moved into place with a single rename when the version is registered: a reader never sees
a half-written version.

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
import sqlite3
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.settings import Settings
from kernel.sqlite import ThreadConnections, pid_alive
from training.artifacts import KINDS, ArtifactError, publish_dir, remove_dir

STATUSES = ("candidate", "production", "archived", "failed")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_REF_RE = re.compile(r"^(?P<project>[^/]+)/(?P<kind>[^/]+)/v(?P<version>\d+)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('candidate', 'production', 'archived', 'failed')),
    metrics      TEXT NOT NULL DEFAULT '{}',
    config       TEXT NOT NULL DEFAULT '{}',
    lineage      TEXT NOT NULL DEFAULT '{}',
    parent_id    INTEGER REFERENCES versions(id),
    artifact_dir TEXT,
    created_at   REAL NOT NULL,
    reason       TEXT,
    UNIQUE (project, kind, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_production_per_project_kind
    ON versions (project, kind) WHERE status = 'production';
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    previous_id INTEGER REFERENCES versions(id),
    by          TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""


class RegistryError(ValueError):
    """A request the registry refuses: unknown version, bad state transition, bad project key."""


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
            "id": self.id, "ref": self.ref, "label": self.label, "project": self.project, "kind": self.kind,
            "version": self.version, "status": self.status, "metrics": self.metrics, "config": self.config,
            "lineage": self.lineage, "parent_id": self.parent_id,
            "artifact_dir": str(self.artifact_dir) if self.artifact_dir else None,
            "created_at": self.created_at, "reason": self.reason,
        }  # fmt: skip


def _row_to_version(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        id=row["id"], project=row["project"], kind=row["kind"], version=row["version"],
        status=row["status"], metrics=json.loads(row["metrics"]), config=json.loads(row["config"]),
        lineage=json.loads(row["lineage"]), parent_id=row["parent_id"],
        artifact_dir=Path(row["artifact_dir"]) if row["artifact_dir"] else None,
        created_at=row["created_at"], reason=row["reason"],
    )  # fmt: skip


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
    """Model versions of every project, in one SQLite file, safe across threads and processes."""

    def __init__(self, path: Path, store: Path | None = None, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.store = Path(store) if store is not None else self.path.parent
        self._connections = ThreadConnections(self.path, timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db().executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings.registry_path, settings.model_store)

    # -- connections ---------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (:meth:`kernel.sqlite.ThreadConnections.write`)."""
        return self._connections.write()

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")

    # -- reading -------------------------------------------------------------------------------
    def revision(self) -> int:
        """A counter that changes on every register, promote and rollback (cheap to poll)."""
        return int(self._db().execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])

    def get(self, ref: int | str) -> ModelVersion:
        """A version by id (``12``) or by reference (``4/detect/v3``)."""
        db = self._db()
        text = str(ref).strip()
        if text.isdigit():
            row = db.execute("SELECT * FROM versions WHERE id = ?", (int(text),)).fetchone()
        elif m := _REF_RE.match(text):
            row = db.execute(
                "SELECT * FROM versions WHERE project = ? AND kind = ? AND version = ?",
                (m["project"], m["kind"], int(m["version"])),
            ).fetchone()
        else:
            raise RegistryError(
                f"bad version reference {text!r}: use an id (12) or PROJECT/KIND/vN (4/detect/v3)"
            )
        if row is None:
            raise RegistryError(f"no model version {text!r}")
        return _row_to_version(row)

    def production(self, project: str, kind: str) -> ModelVersion | None:
        row = (
            self._db()
            .execute(
                "SELECT * FROM versions WHERE project = ? AND kind = ? AND status = 'production'",
                (str(project), kind),
            )
            .fetchone()
        )
        return _row_to_version(row) if row else None

    def list(
        self, project: str | None = None, kind: str | None = None, status: str | None = None
    ) -> list[ModelVersion]:
        clauses, args = [], []
        for column, value in (("project", project), ("kind", kind), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(str(value))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db().execute(f"SELECT * FROM versions {where} ORDER BY project, kind, version", args)
        return [_row_to_version(r) for r in rows]

    def history(self, project: str, kind: str) -> list[dict[str, Any]]:
        """Every promotion and rollback of (project, kind), oldest first: who, when, why."""
        rows = self._db().execute(
            "SELECT e.*, v.version AS version, p.version AS previous_version FROM events e "
            "JOIN versions v ON v.id = e.version_id LEFT JOIN versions p ON p.id = e.previous_id "
            "WHERE e.project = ? AND e.kind = ? ORDER BY e.id",
            (str(project), kind),
        )
        return [dict(r) for r in rows]

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
        project, kind = _check_key(project, kind)
        with self._write() as db:
            version = self._next_version(db, project, kind)
            target = self.store / "models" / project / kind / f"v{version}"
            if target.exists():  # left behind by a process killed between rename and commit
                remove_dir(target)
            publish_dir(Path(staging), target)
            try:
                new_id = self._insert(db, project, kind, version, "candidate", metrics=metrics, config=config,
                                      lineage=lineage, parent_id=parent_id, artifact_dir=str(target))  # fmt: skip
            except BaseException:
                os.rename(target, staging)
                raise
        return self.get(new_id)

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
        project, kind = _check_key(project, kind)
        with self._write() as db:
            version = self._next_version(db, project, kind)
            new_id = self._insert(db, project, kind, version, "failed", config=config, lineage=lineage,
                                  parent_id=parent_id, reason=reason)  # fmt: skip
        return self.get(new_id)

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
            stack: list[int] = []
            for e in db.execute("SELECT action, version_id FROM events WHERE project = ? AND kind = ? ORDER BY id",
                                (project, kind)):  # fmt: skip
                if e["action"] == "promote":
                    stack.append(e["version_id"])
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
        older than ``older_than_s`` (a trainer on another host sharing the store).
        """
        removed = []
        host = socket.gethostname()
        for path in sorted((self.store / "staging").glob("*")):
            name_host, _, rest = path.name.rpartition("-")[0].rpartition("-")
            pid = int(rest) if rest.isdigit() else -1
            dead = name_host == host and pid > 0 and not pid_alive(pid)
            if dead or time.time() - path.stat().st_mtime > older_than_s:
                remove_dir(path)
                removed.append(path)
        return removed

    # -- internals -----------------------------------------------------------------------------
    def _insert(self, db: sqlite3.Connection, project: str, kind: str, version: int, status: str, *,
                metrics: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                lineage: dict[str, Any] | None = None, parent_id: int | None = None,
                artifact_dir: str | None = None, reason: str | None = None) -> int:  # fmt: skip
        """One new row in ``versions`` (and the revision bumped), in the caller's write transaction."""
        cur = db.execute(
            "INSERT INTO versions (project, kind, version, status, metrics, config, lineage, parent_id,"
            " artifact_dir, created_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (project, kind, version, status, _dumps(metrics), _dumps(config), _dumps(lineage), parent_id,
             artifact_dir, time.time(), reason),
        )  # fmt: skip
        self._bump(db)
        return int(cur.lastrowid)

    @staticmethod
    def _next_version(db: sqlite3.Connection, project: str, kind: str) -> int:
        row = db.execute(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE project = ? AND kind = ?",
            (project, kind),
        ).fetchone()
        return int(row[0])

    def _get_in(self, db: sqlite3.Connection, ref: int | str) -> ModelVersion:
        version = self.get(ref)  # same connection: sees this transaction
        if (
            version.artifact_dir is not None
            and version.status != "failed"
            and not version.artifact_dir.is_dir()
        ):
            raise ArtifactError(f"{version.ref}: artifact directory {version.artifact_dir} is missing")
        return version

    @staticmethod
    def _production_in(db: sqlite3.Connection, project: str, kind: str) -> ModelVersion | None:
        row = db.execute(
            "SELECT * FROM versions WHERE project = ? AND kind = ? AND status = 'production'", (project, kind)
        ).fetchone()
        return _row_to_version(row) if row else None

    def _swap(
        self,
        db: sqlite3.Connection,
        new: ModelVersion,
        old: ModelVersion | None,
        action: str,
        by: str,
        reason: str,
    ) -> None:
        if old is not None:
            db.execute("UPDATE versions SET status = 'archived' WHERE id = ?", (old.id,))
        db.execute("UPDATE versions SET status = 'production' WHERE id = ?", (new.id,))
        db.execute(
            "INSERT INTO events (project, kind, action, version_id, previous_id, by, reason, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (new.project, new.kind, action, new.id, old.id if old else None, by, reason, time.time()),
        )
        self._bump(db)
