"""The durable store behind the triggers: webhook events, approved annotations, training runs.

One database (:mod:`kernel.database`) shared by every backend process and every worker: a SQLite file
(``settings.events_path``, WAL) on one machine, PostgreSQL (``settings.database_url``) across machines.
Each write is one serialised transaction, so concurrent webhooks in several processes (and hosts) never
lose an update, and sequence numbers commit in order. Redis holds only the queue: when it is down or
emptied, everything needed to decide and enqueue again is here. The schema is made by versioned
migrations (``workers/migrations/events``).

Tables: ``events`` (every webhook, reduced to the fields the policies read, deleted after
``event_retention_days``: the counts they made live in the other tables), ``connected`` (the projects
that sent ``/setup`` to a backend of this store: webhooks of other projects are ignored), ``projects`` (label config and model
kinds), ``annotations`` (one row per annotation: kinds, approved, deleted, and ``changed_seq``, the id of
the event that last made it approved or changed it), ``requests`` (explicit retrain requests and the
job each was handed to), ``runs`` (what each training run was trained on: the event sequence number of
its snapshot, the annotation ids, its status and the version it produced). Sequence numbers, not clock
times, order events and snapshots, so workers on other machines with skewed clocks count correctly.
Because writers are serialised, an event with a sequence number below a run's snapshot has committed
before the snapshot was taken: no approved annotation falls between two runs uncounted.

>>> import tempfile
>>> store = EventStore(Path(tempfile.mkdtemp()) / "events.sqlite")
>>> _ = store.record("ANNOTATION_CREATED", "4", {}, kinds=("detect",),
...                  annotations=[AnnotationRow(11, 3, ("detect",), True)])
>>> [(s.kind, s.new_approved) for s in store.kind_states()]
[('detect', 1)]
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
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
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)

from kernel.database import Database, upsert
from kernel.settings import Settings
from workers.migrations import EVENTS
from workers.triggers import KindState

COUNTED_RUN_STATUSES = ("running", "done", "bad_data", "cancelled", "error")
"""Runs whose snapshot moves the "newly approved" counter (see :mod:`workers.triggers`)."""
RUN_STATUSES = (*COUNTED_RUN_STATUSES, "abandoned", "unavailable")
"""``abandoned``: its worker died; ``unavailable``: Label Studio could not be reached (nothing trained)."""
MAX_RERUNS = 1
"""How often an explicit request is pending again after its job was abandoned (its worker died)."""
PRUNE_EVERY = 256
"""Old events are pruned every this many recorded events."""

# The tables as the queries see them; the migrations in workers/migrations/events make them.
_meta = MetaData()
t_events = Table(
    "events",
    _meta,
    Column("seq", Integer, primary_key=True),
    Column("received_at", Float),
    Column("action", Text),
    Column("project", Text),
    Column("payload", Text),
)
t_projects = Table(
    "projects",
    _meta,
    Column("project", Text, primary_key=True),
    Column("label_config", Text),
    Column("kinds", Text),
    Column("updated_seq", Integer),
)
t_annotations = Table(
    "annotations",
    _meta,
    Column("project", Text, primary_key=True),
    Column("annotation_id", Integer, primary_key=True),
    Column("task_id", Integer),
    Column("kinds", Text),
    Column("approved", Integer),
    Column("deleted", Integer),
    Column("changed_seq", Integer),
)
t_requests = Table(
    "requests",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("project", Text),
    Column("kind", Text),
    Column("reason", Text),
    Column("created_at", Float),
    Column("job_id", Text),
    Column("reruns", Integer),
)
t_runs = Table(
    "runs",
    _meta,
    Column("job_id", Text, primary_key=True),
    Column("project", Text),
    Column("kind", Text),
    Column("reason", Text),
    Column("snapshot_seq", Integer),
    Column("annotation_ids", Text),
    Column("status", Text),
    Column("version_id", Integer),
    Column("detail", Text),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("alive_at", Float),
)
t_connected = Table(
    "connected", _meta, Column("project", Text, primary_key=True), Column("connected_at", Float)
)
TABLES = (t_events, t_projects, t_annotations, t_requests, t_runs, t_connected)
"""In the order a copy must insert them (:mod:`histoloop.cli.db`)."""


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
    alive_at: float | None = None
    """When its worker last said it runs (start, then every heartbeat)."""


DELETE_CHUNK = 10_000
"""Deleted annotation ids marked per ``executemany`` of :meth:`EventStore.record`."""


@dataclass(frozen=True)
class _RecordStatements:
    event: Any
    project: Any
    annotation: Any
    deleted: Any
    request: Any


@functools.cache
def _record_statements(dialect: str) -> _RecordStatements:
    """The statements of :meth:`EventStore.record`, built once per dialect with bound parameters: building
    them per call (SQLAlchemy's coercions and cache keys) cost several times the SQLite transaction."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    projects = dialect_insert(t_projects)
    project = projects.on_conflict_do_update(
        index_elements=["project"],
        set_={
            "label_config": func.coalesce(projects.excluded.label_config, t_projects.c.label_config),
            "kinds": projects.excluded.kinds,
            "updated_seq": projects.excluded.updated_seq,
        },
    )
    # changed_seq moves only when the annotation is (still) approved: an update that un-approves it does
    # not count as a new label.
    annotations = dialect_insert(t_annotations)
    x = annotations.excluded
    annotation = annotations.on_conflict_do_update(
        index_elements=["project", "annotation_id"],
        set_={
            "task_id": x.task_id,
            "kinds": x.kinds,
            "approved": x.approved,
            "deleted": 0,
            "changed_seq": case((x.approved == 1, x.changed_seq), else_=t_annotations.c.changed_seq),
        },
    )
    a = t_annotations.c
    deleted = (
        update(t_annotations)
        .where(a.project == bindparam("p"), a.annotation_id == bindparam("a"))
        .values(deleted=1)
    )
    return _RecordStatements(insert(t_events), project, annotation, deleted, insert(t_requests))


@dataclass(eq=False)
class _Pending:
    """One :meth:`EventStore.record` call waiting for its group's commit."""

    action: str
    project: str | None
    payload: str
    label_config: str | None
    kinds: tuple[str, ...] | None
    annotations: tuple[AnnotationRow, ...]
    deleted_ids: tuple[int, ...]
    requests: tuple[tuple[str, str], ...]
    seq: int | None = None
    error: BaseException | None = None
    done: bool = False


class _Group:
    """The events of one process waiting to be committed, and whether a leader is committing."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.queue: deque[_Pending] = deque()
        self.leading = False


def _kinds_text(kinds: Iterable[str]) -> str:
    return "," + ",".join(kinds) + "," if kinds else ""


class EventStore:
    """The durable event store; safe across threads, processes and (on PostgreSQL) hosts.

    ``target``: a SQLite file (the embedded default, ``<store>/events.sqlite``) or a ``postgresql://`` URL.
    """

    def __init__(
        self, target: str | Path, timeout: float = 60.0, retention_s: float = 30 * 86400, batch: int = 256
    ) -> None:
        self.db = Database(target, "events", migrations=EVENTS, timeout=timeout)
        self.path = self.db.path
        """The SQLite file (None on PostgreSQL)."""
        self.retention_s = retention_s
        self.batch = max(1, int(batch))
        """At most this many webhook events per write transaction (group commit, :meth:`record`)."""
        self._connected: set[str] = set()
        self._groups = _Group()

    @classmethod
    def from_settings(cls, settings: Settings) -> EventStore:
        return cls(
            settings.events_target,
            retention_s=settings.event_retention_days * 86400,
            batch=settings.event_batch,
        )

    # -- connected projects, retention ---------------------------------------------------------
    def connect(self, project: str) -> None:
        """Record that ``project`` sent ``/setup`` (written once per process and project)."""
        if project in self._connected:
            return
        with self._write() as db:
            if (
                db.execute(select(t_connected.c.project).where(t_connected.c.project == project)).first()
                is None
            ):
                db.execute(insert(t_connected).values(project=project, connected_at=time.time()))
        self._connected.add(project)

    def is_connected(self, project: str) -> bool:
        if project in self._connected:
            return True
        return self._scalar(select(t_connected.c.project).where(t_connected.c.project == project)) is not None

    def prune(self, older_than_s: float | None = None) -> int:
        """Delete events older than ``older_than_s`` (default: the retention); the newest is always kept
        (sequence numbers go on from it). Returns how many were deleted."""
        cutoff = time.time() - (self.retention_s if older_than_s is None else older_than_s)
        e = t_events
        with self._write() as db:
            newest = db.execute(select(func.max(e.c.seq))).scalar()
            if newest is None:
                return 0
            result = db.execute(delete(e).where(e.c.received_at < cutoff, e.c.seq < newest))
        return int(result.rowcount)

    def _write(self) -> AbstractContextManager[Connection]:
        """One serialised write transaction (:meth:`kernel.database.Database.write`)."""
        return self.db.write()

    def _scalar(self, query: Any) -> Any:
        with self.db.read() as db:
            return db.execute(query).scalar()

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
        """Record one webhook and what it changes; returns its sequence number once it is committed.

        Group commit: the events recorded at the same moment by the threads of this process are committed
        together, in one write transaction of up to ``batch`` events (in arrival order, each with its own
        sequence number), by the first of those threads (the leader) while the others wait for that
        commit. So concurrent webhooks queue for the store's single writer once per batch instead of once
        each. Nothing is acknowledged before its transaction has committed; an event whose statements fail
        is retried alone, so one bad event fails only its own caller.
        """
        item = _Pending(
            action,
            project,
            json.dumps(payload, default=str),
            label_config,
            kinds,
            tuple(annotations),
            tuple(deleted_ids),
            tuple(requests),
        )
        group = self._group()
        with group.cond:
            group.queue.append(item)
        pruned = False
        while True:
            with group.cond:
                while not item.done and group.leading:
                    group.cond.wait()
                if item.done:
                    break
                group.leading = True
                batch = [group.queue.popleft() for _ in range(min(self.batch, len(group.queue)))]
            try:
                self._commit(batch)
                pruned = pruned or any(i.seq is not None and i.seq % PRUNE_EVERY == 0 for i in batch)
            finally:
                with group.cond:
                    for i in batch:
                        if not i.done:  # only when _commit itself was interrupted
                            i.error, i.done = RuntimeError("the event store's commit was interrupted"), True
                    group.leading = False
                    group.cond.notify_all()
        if pruned:  # after the waiters are released: pruning delays no other webhook
            self.prune()
        if item.error is not None:
            raise item.error
        return item.seq  # type: ignore[return-value]

    def _group(self) -> _Group:
        """This process's commit group (a fork starts a new one: the parent's lock may be held)."""
        group = self._groups
        if group.pid != os.getpid():
            group = self._groups = _Group()
        return group

    def _commit(self, batch: list[_Pending]) -> None:
        """Commit ``batch`` in one transaction; on an error, each event in a transaction of its own."""
        st = _record_statements(self.db.dialect)
        try:
            with self._write() as db:
                seqs = [self._record_one(db, st, item) for item in batch]
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error, batch[0].done = exc, True
                return
            for item in batch:
                self._commit([item])
            return
        for item, seq in zip(batch, seqs, strict=True):
            item.seq, item.done = seq, True

    @staticmethod
    def _record_one(db: Connection, st: _RecordStatements, item: _Pending) -> int:
        project = item.project
        inserted = db.execute(
            st.event,
            {"received_at": time.time(), "action": item.action, "project": project, "payload": item.payload},
        )
        seq = int(inserted.inserted_primary_key[0])  # type: ignore[index]
        if project is not None and (item.label_config is not None or item.kinds is not None):
            db.execute(
                st.project,
                {
                    "project": project,
                    "label_config": item.label_config,
                    "kinds": ",".join(item.kinds or ()),
                    "updated_seq": seq,
                },
            )
        for a in item.annotations:
            db.execute(
                st.annotation,
                {
                    "project": project,
                    "annotation_id": a.annotation_id,
                    "task_id": a.task_id,
                    "kinds": _kinds_text(a.kinds),
                    "approved": int(a.approved),
                    "deleted": 0,
                    "changed_seq": seq,
                },
            )
        ids = item.deleted_ids
        for start in range(0, len(ids), DELETE_CHUNK):  # executemany: one statement, many rows
            db.execute(st.deleted, [{"p": project, "a": a} for a in ids[start : start + DELETE_CHUNK]])
        r = t_requests
        for kind, reason in item.requests:  # the same pending request twice is one request
            pending = (
                select(r.c.id)
                .where(r.c.project == project, r.c.kind == kind, r.c.reason == reason, r.c.job_id.is_(None))
                .limit(1)
            )
            if db.execute(pending).first() is None:
                db.execute(
                    st.request,
                    {"project": project, "kind": kind, "reason": reason, "created_at": time.time()},
                )
        return seq

    def request(self, project: str, kind: str, reason: str) -> int:
        """An explicit retrain request (``histoloop retrain``), kept until a job takes it."""
        return self.record(
            "RETRAIN_REQUESTED", project, {"kind": kind, "reason": reason}, requests=[(kind, reason)]
        )

    def mark_requested(self, project: str, kind: str, job_id: str) -> int:
        """Hand the pending requests of (project, kind) to ``job_id``; returns how many."""
        r = t_requests
        with self._write() as db:
            result = db.execute(
                update(r)
                .where(r.c.project == project, r.c.kind == kind, r.c.job_id.is_(None))
                .values(job_id=job_id)
            )
        return int(result.rowcount)

    def release_requests(self, job_id: str) -> int:
        """Make the requests handed to ``job_id`` pending again (it could not run them); returns how many."""
        r = t_requests
        with self._write() as db:
            result = db.execute(update(r).where(r.c.job_id == job_id).values(job_id=None))
        return int(result.rowcount)

    def last_job_number(self, prefix: str) -> int:
        """The highest ``n`` of the job ids ``<prefix>-<n>`` that a run or a request holds (0 when none):
        what the job counter of :func:`workers.jobs.enqueue_retrain` continues from when Redis lost its own."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"
        with self.db.read() as db:
            ids = [
                *db.execute(select(t_runs.c.job_id).where(t_runs.c.job_id.like(pattern, escape="\\"))),
                *db.execute(
                    select(t_requests.c.job_id)
                    .where(t_requests.c.job_id.like(pattern, escape="\\"))
                    .distinct()
                ),
            ]
        numbers = [job_id[len(prefix) + 1 :] for (job_id,) in ids]
        return max((int(n) for n in numbers if n.isdigit()), default=0)

    def release_abandoned(self, job_id: str) -> int:
        """Make the requests of an abandoned ``job_id`` pending again, each at most :data:`MAX_RERUNS`
        times; returns how many."""
        r = t_requests
        with self._write() as db:
            result = db.execute(
                update(r)
                .where(r.c.job_id == job_id, func.coalesce(r.c.reruns, 0) < MAX_RERUNS)
                .values(job_id=None, reruns=func.coalesce(r.c.reruns, 0) + 1)
            )
        return int(result.rowcount)

    def drop_requests(self, job_id: str) -> int:
        """Forget the requests handed to ``job_id`` (cancelled before it started); returns how many."""
        with self._write() as db:
            result = db.execute(delete(t_requests).where(t_requests.c.job_id == job_id))
        return int(result.rowcount)

    def held_without_run(self) -> list[str]:
        """The jobs that hold requests but never started a run (queued, or lost before they started)."""
        r = t_requests
        started = select(t_runs.c.job_id).where(t_runs.c.job_id == r.c.job_id).exists()
        query = select(r.c.job_id).where(r.c.job_id.is_not(None), ~started).distinct()
        with self.db.read() as db:
            return sorted(str(job_id) for (job_id,) in db.execute(query))

    def has_requests(self, job_id: str) -> bool:
        """Whether explicit requests were handed to ``job_id`` (it then runs even with nothing new)."""
        return self._scalar(select(t_requests.c.id).where(t_requests.c.job_id == job_id).limit(1)) is not None

    # -- reading -------------------------------------------------------------------------------
    def project_kinds(self, project: str) -> tuple[str, ...]:
        kinds = self._scalar(select(t_projects.c.kinds).where(t_projects.c.project == project))
        return tuple(k for k in (kinds or "").split(",") if k)

    def label_config(self, project: str) -> str | None:
        result: str | None = self._scalar(
            select(t_projects.c.label_config).where(t_projects.c.project == project)
        )
        return result

    def last_seq(self) -> int:
        return int(self._scalar(select(func.coalesce(func.max(t_events.c.seq), 0))))

    def count_events(self, action: str | None = None, project: str | None = None) -> int:
        query = select(func.count()).select_from(t_events)
        for column, value in (("action", action), ("project", project)):
            if value is not None:
                query = query.where(t_events.c[column] == value)
        return int(self._scalar(query))

    def approved_ids(self, project: str, kind: str | None = None) -> list[int]:
        a = t_annotations
        query = select(a.c.annotation_id).where(a.c.project == project, a.c.approved == 1, a.c.deleted == 0)
        if kind is not None:
            query = query.where(a.c.kinds.like(f"%,{kind},%"))
        with self.db.read() as db:
            return [int(r[0]) for r in db.execute(query.order_by(a.c.annotation_id))]

    @staticmethod
    def _baseline_query(project: str, kind: str) -> Any:
        r = t_runs
        return select(func.coalesce(func.max(r.c.snapshot_seq), 0)).where(
            r.c.project == project, r.c.kind == kind, r.c.status.in_(COUNTED_RUN_STATUSES)
        )

    def baseline_seq(self, project: str, kind: str) -> int:
        """The snapshot of the newest run of (project, kind) that counts (0 when none)."""
        return int(self._scalar(self._baseline_query(project, kind)))

    def kind_states(self, projects: Iterable[str] | None = None) -> list[KindState]:
        """The :class:`KindState` of every known (project, kind), or only of ``projects``."""
        wanted = None if projects is None else {str(p) for p in projects}
        a = t_annotations
        with self.db.read() as db:
            rows = db.execute(
                select(t_projects.c.project, t_projects.c.kinds).order_by(t_projects.c.project)
            ).all()
            pending: dict[tuple[str, str], list[str]] = {}
            r = t_requests
            for project, kind, reason in db.execute(
                select(r.c.project, r.c.kind, r.c.reason).where(r.c.job_id.is_(None)).order_by(r.c.id)
            ):
                pending.setdefault((project, kind), []).append(reason)
            pairs = [(p, k) for p, kinds in rows for k in kinds.split(",") if k]
            pairs += [key for key in pending if key not in pairs]
            states = []
            for project, kind in pairs:
                if wanted is not None and project not in wanted:
                    continue
                baseline = self._baseline_query(project, kind).scalar_subquery()
                new = db.execute(
                    select(func.count())
                    .select_from(a)
                    .where(
                        a.c.project == project,
                        a.c.approved == 1,
                        a.c.deleted == 0,
                        a.c.kinds.like(f"%,{kind},%"),
                        a.c.changed_seq > baseline,
                    )
                ).scalar_one()
                states.append(KindState(project, kind, int(new), tuple(pending.get((project, kind), ()))))
        return states

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, job_id: str, project: str, kind: str, reason: str, annotation_ids: list[int]) -> Run:
        """Record that ``job_id`` trains on the approved annotations known now (its snapshot)."""
        now = time.time()
        with self._write() as db:
            seq = int(db.execute(select(func.coalesce(func.max(t_events.c.seq), 0))).scalar_one())
            stmt = upsert(db, t_runs).values(
                job_id=job_id,
                project=project,
                kind=kind,
                reason=reason,
                snapshot_seq=seq,
                annotation_ids=json.dumps(sorted(annotation_ids)),
                status="running",
                started_at=now,
                alive_at=now,
                detail="",
            )
            x = stmt.excluded
            db.execute(
                stmt.on_conflict_do_update(
                    index_elements=["job_id"],
                    set_={
                        "snapshot_seq": x.snapshot_seq,
                        "annotation_ids": x.annotation_ids,
                        "status": "running",
                        "started_at": x.started_at,
                        "alive_at": x.alive_at,
                        "finished_at": None,
                        "detail": "",
                    },
                )
            )
        return self.run(job_id)  # type: ignore[return-value]

    def finish_run(
        self, job_id: str, status: str, *, version_id: int | None = None, detail: str = ""
    ) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self._write() as db:
            db.execute(
                update(t_runs)
                .where(t_runs.c.job_id == job_id)
                .values(status=status, version_id=version_id, detail=detail[:2000], finished_at=time.time())
            )

    def touch_run(self, job_id: str) -> bool:
        """Stamp ``job_id``'s run alive now (its worker's heartbeat); False when it is not running."""
        r = t_runs
        with self._write() as db:
            result = db.execute(
                update(r).where(r.c.job_id == job_id, r.c.status == "running").values(alive_at=time.time())
            )
        return bool(result.rowcount)

    def stale_runs(self, older_than_s: float) -> list[Run]:
        """Runs still ``running`` whose worker has not stamped them for ``older_than_s`` seconds."""
        r = t_runs
        cutoff = time.time() - older_than_s
        query = select(r).where(r.c.status == "running", func.coalesce(r.c.alive_at, r.c.started_at) < cutoff)
        with self.db.read() as db:
            return [_row_to_run(row) for row in db.execute(query.order_by(r.c.started_at))]

    def abandon_run(self, job_id: str, detail: str) -> bool:
        """Mark ``job_id``'s run ``abandoned`` if it is still running; returns whether it was."""
        r = t_runs
        with self._write() as db:
            result = db.execute(
                update(r)
                .where(r.c.job_id == job_id, r.c.status == "running")
                .values(status="abandoned", detail=detail[:2000], finished_at=time.time())
            )
        return bool(result.rowcount)

    def run(self, job_id: str) -> Run | None:
        with self.db.read() as db:
            row = db.execute(select(t_runs).where(t_runs.c.job_id == job_id)).first()
        return _row_to_run(row) if row else None

    def runs(self, project: str | None = None, kind: str | None = None) -> list[Run]:
        query = select(t_runs)
        for column, value in (("project", project), ("kind", kind)):
            if value is not None:
                query = query.where(t_runs.c[column] == value)
        with self.db.read() as db:
            return [_row_to_run(r) for r in db.execute(query.order_by(t_runs.c.started_at))]


def _row_to_run(row: Row[Any]) -> Run:
    d = dict(row._mapping)
    d["annotation_ids"] = json.loads(d["annotation_ids"])
    return Run(**d)
