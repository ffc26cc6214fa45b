"""The durable store behind the triggers: webhook events, approved annotations, training runs.

One SQLite file (``settings.events_path``, WAL mode) shared by every backend process and every worker;
each write is one ``BEGIN IMMEDIATE`` transaction, so concurrent webhooks in several processes never
lose an update. Redis holds only the queue: when it is down or emptied, everything needed to decide
and enqueue again is here.

Tables: ``events`` (every webhook, its project token stripped), ``projects`` (label config and model
kinds), ``annotations`` (one row per annotation: kinds, approved, deleted, and ``changed_seq``, the id of
the event that last made it approved or changed it), ``requests`` (explicit retrain requests and the
job each was handed to), ``runs`` (what each training run was trained on: the event sequence number of
its snapshot, the annotation ids, its status and the version it produced). Sequence numbers, not clock
times, order events and snapshots, so workers on other machines with skewed clocks count correctly.

>>> import tempfile
>>> store = EventStore(Path(tempfile.mkdtemp()) / "events.sqlite")
>>> _ = store.record("ANNOTATION_CREATED", "4", {}, kinds=("detect",),
...                  annotations=[AnnotationRow(11, 3, ("detect",), True)])
>>> [(s.kind, s.new_approved) for s in store.kind_states()]
[('detect', 1)]
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.settings import Settings
from kernel.sqlite import ThreadConnections
from workers.triggers import KindState

COUNTED_RUN_STATUSES = ("running", "done", "bad_data", "cancelled", "error")
"""Runs whose snapshot moves the "newly approved" counter (see :mod:`workers.triggers`)."""
RUN_STATUSES = (*COUNTED_RUN_STATUSES, "abandoned")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    action      TEXT NOT NULL,
    project     TEXT,
    payload     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (
    project      TEXT PRIMARY KEY,
    label_config TEXT,
    kinds        TEXT NOT NULL DEFAULT '',
    updated_seq  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    project       TEXT NOT NULL,
    annotation_id INTEGER NOT NULL,
    task_id       INTEGER,
    kinds         TEXT NOT NULL DEFAULT '',
    approved      INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0,
    changed_seq   INTEGER NOT NULL,
    PRIMARY KEY (project, annotation_id)
);
CREATE TABLE IF NOT EXISTS requests (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at REAL NOT NULL,
    job_id     TEXT
);
CREATE INDEX IF NOT EXISTS pending_requests ON requests (job_id) WHERE job_id IS NULL;
CREATE TABLE IF NOT EXISTS runs (
    job_id         TEXT PRIMARY KEY,
    project        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    snapshot_seq   INTEGER NOT NULL,
    annotation_ids TEXT NOT NULL DEFAULT '[]',
    status         TEXT NOT NULL,
    version_id     INTEGER,
    detail         TEXT NOT NULL DEFAULT '',
    started_at     REAL NOT NULL,
    finished_at    REAL
);
"""


@dataclass(frozen=True)
class AnnotationRow:
    """One annotation as a webhook reported it."""

    annotation_id: int
    task_id: int | None
    kinds: tuple[str, ...]
    approved: bool


@dataclass(frozen=True)
class Run:
    job_id: str
    project: str
    kind: str
    reason: str
    snapshot_seq: int
    annotation_ids: list[int]
    status: str
    version_id: int | None
    detail: str
    started_at: float
    finished_at: float | None


def _kinds_text(kinds: Iterable[str]) -> str:
    return "," + ",".join(kinds) + "," if kinds else ""


class EventStore:
    """The durable event store; safe across threads and processes (a connection per thread)."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self._connections = ThreadConnections(self.path, timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db().executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")

    @classmethod
    def from_settings(cls, settings: Settings) -> EventStore:
        return cls(settings.events_path)

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (:meth:`kernel.sqlite.ThreadConnections.write`)."""
        return self._connections.write()

    # -- webhooks ------------------------------------------------------------------------------
    def record(
        self,
        action: str,
        project: str | None,
        payload: dict[str, Any],
        *,
        label_config: str | None = None,
        kinds: tuple[str, ...] | None = None,
        annotations: Iterable[AnnotationRow] = (),
        deleted_ids: Iterable[int] = (),
        requests: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Record one webhook and what it changes, in one transaction; returns its sequence number."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO events (received_at, action, project, payload) VALUES (?, ?, ?, ?)",
                (time.time(), action, project, json.dumps(payload, default=str)),
            )
            seq = int(cur.lastrowid or 0)
            if project is not None and (label_config is not None or kinds is not None):
                db.execute(
                    "INSERT INTO projects (project, label_config, kinds, updated_seq) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (project) DO UPDATE SET label_config = COALESCE(excluded.label_config,"
                    " label_config), kinds = excluded.kinds, updated_seq = excluded.updated_seq",
                    (project, label_config, ",".join(kinds or ()), seq),
                )
            for a in annotations:
                # changed_seq moves only when the annotation is (still) approved: an update that
                # un-approves it does not count as a new label.
                db.execute(
                    "INSERT INTO annotations (project, annotation_id, task_id, kinds, approved, deleted,"
                    " changed_seq) VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (project, annotation_id) DO UPDATE"
                    " SET task_id = excluded.task_id, kinds = excluded.kinds, approved = excluded.approved,"
                    " deleted = 0, changed_seq = CASE WHEN excluded.approved THEN excluded.changed_seq"
                    " ELSE changed_seq END",
                    (project, a.annotation_id, a.task_id, _kinds_text(a.kinds), int(a.approved), seq),
                )
            for annotation_id in deleted_ids:
                db.execute(
                    "UPDATE annotations SET deleted = 1 WHERE project = ? AND annotation_id = ?",
                    (project, annotation_id),
                )
            for kind, reason in requests:
                db.execute(
                    "INSERT INTO requests (project, kind, reason, created_at) VALUES (?, ?, ?, ?)",
                    (project, kind, reason, time.time()),
                )
        return seq

    def request(self, project: str, kind: str, reason: str) -> int:
        """An explicit retrain request (``histoloop retrain``), kept until a job takes it."""
        return self.record("RETRAIN_REQUESTED", project, {"kind": kind, "reason": reason},
                           requests=[(kind, reason)])  # fmt: skip

    def mark_requested(self, project: str, kind: str, job_id: str) -> int:
        """Hand the pending requests of (project, kind) to ``job_id``; returns how many."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE requests SET job_id = ? WHERE project = ? AND kind = ? AND job_id IS NULL",
                (job_id, project, kind),
            )
        return cur.rowcount

    def has_requests(self, job_id: str) -> bool:
        """Whether explicit requests were handed to ``job_id`` (it then runs even with nothing new)."""
        row = self._db().execute("SELECT 1 FROM requests WHERE job_id = ? LIMIT 1", (job_id,)).fetchone()
        return row is not None

    # -- reading -------------------------------------------------------------------------------
    def project_kinds(self, project: str) -> tuple[str, ...]:
        row = self._db().execute("SELECT kinds FROM projects WHERE project = ?", (project,)).fetchone()
        return tuple(k for k in (row["kinds"] if row else "").split(",") if k)

    def label_config(self, project: str) -> str | None:
        row = self._db().execute("SELECT label_config FROM projects WHERE project = ?", (project,)).fetchone()
        return row["label_config"] if row else None

    def last_seq(self) -> int:
        return int(self._db().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def count_events(self, action: str | None = None, project: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM events WHERE 1", []
        for column, value in (("action", action), ("project", project)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return int(self._db().execute(sql, args).fetchone()[0])

    def approved_ids(self, project: str, kind: str | None = None) -> list[int]:
        sql = "SELECT annotation_id FROM annotations WHERE project = ? AND approved = 1 AND deleted = 0"
        args: list[Any] = [project]
        if kind is not None:
            sql += " AND kinds LIKE ?"
            args.append(f"%,{kind},%")
        return [r[0] for r in self._db().execute(sql + " ORDER BY annotation_id", args)]

    def baseline_seq(self, project: str, kind: str) -> int:
        """The snapshot of the newest run of (project, kind) that counts (0 when none)."""
        marks = ",".join("?" * len(COUNTED_RUN_STATUSES))
        row = (
            self._db()
            .execute(
                f"SELECT COALESCE(MAX(snapshot_seq), 0) FROM runs WHERE project = ? AND kind = ? AND status IN ({marks})",
                (project, kind, *COUNTED_RUN_STATUSES),
            )
            .fetchone()
        )
        return int(row[0])

    def kind_states(self, projects: Iterable[str] | None = None) -> list[KindState]:
        """The :class:`KindState` of every known (project, kind), or only of ``projects``."""
        db = self._db()
        rows = db.execute("SELECT project, kinds FROM projects ORDER BY project").fetchall()
        wanted = None if projects is None else {str(p) for p in projects}
        pending: dict[tuple[str, str], list[str]] = {}
        for r in db.execute("SELECT project, kind, reason FROM requests WHERE job_id IS NULL ORDER BY id"):
            pending.setdefault((r["project"], r["kind"]), []).append(r["reason"])
        pairs = [(r["project"], k) for r in rows for k in r["kinds"].split(",") if k]
        pairs += [key for key in pending if key not in pairs]
        states = []
        for project, kind in pairs:
            if wanted is not None and project not in wanted:
                continue
            new = db.execute(
                "SELECT COUNT(*) FROM annotations WHERE project = ? AND approved = 1 AND deleted = 0"
                " AND kinds LIKE ? AND changed_seq > ?",
                (project, f"%,{kind},%", self.baseline_seq(project, kind)),
            ).fetchone()[0]
            states.append(KindState(project, kind, int(new), tuple(pending.get((project, kind), ()))))
        return states

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, job_id: str, project: str, kind: str, reason: str, annotation_ids: list[int]) -> Run:
        """Record that ``job_id`` trains on the approved annotations known now (its snapshot)."""
        with self._write() as db:
            seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
            db.execute(
                "INSERT INTO runs (job_id, project, kind, reason, snapshot_seq, annotation_ids, status,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?) ON CONFLICT (job_id) DO UPDATE SET"
                " snapshot_seq = excluded.snapshot_seq, annotation_ids = excluded.annotation_ids,"
                " status = 'running', started_at = excluded.started_at, finished_at = NULL, detail = ''",
                (job_id, project, kind, reason, seq, json.dumps(sorted(annotation_ids)), time.time()),
            )
        return self.run(job_id)  # type: ignore[return-value]

    def finish_run(
        self, job_id: str, status: str, *, version_id: int | None = None, detail: str = ""
    ) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, version_id = ?, detail = ?, finished_at = ? WHERE job_id = ?",
                (status, version_id, detail[:2000], time.time(), job_id),
            )

    def run(self, job_id: str) -> Run | None:
        row = self._db().execute("SELECT * FROM runs WHERE job_id = ?", (job_id,)).fetchone()
        return _row_to_run(row) if row else None

    def runs(self, project: str | None = None, kind: str | None = None) -> list[Run]:
        sql, args = "SELECT * FROM runs WHERE 1", []
        for column, value in (("project", project), ("kind", kind)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return [_row_to_run(r) for r in self._db().execute(sql + " ORDER BY started_at", args)]


def _row_to_run(row: sqlite3.Row) -> Run:
    d = dict(row)
    d["annotation_ids"] = json.loads(d["annotation_ids"])
    return Run(**d)
