"""The durable event store on both backends (SQLite, PostgreSQL): counts, baselines, requests; concurrent
writers in several processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from waits import LONG, wait_for

from workers.events import AnnotationRow, EventStore


def ann(i: int, approved: bool = True, kinds: tuple[str, ...] = ("detect",)) -> AnnotationRow:
    return AnnotationRow(i, 100 + i, kinds, approved)


def new(store: EventStore, project: str = "4", kind: str = "detect") -> int:
    return {(s.project, s.kind): s.new_approved for s in store.kind_states()}.get((project, kind), 0)


@pytest.fixture
def target(tmp_path: Path, database_url: str) -> str:
    return database_url or str(tmp_path / "e.sqlite")


def test_counts_since_the_last_counted_run(target: str) -> None:
    store = EventStore(target)
    store.record("PROJECT_UPDATED", "4", {}, kinds=("detect", "classify"))
    for i in range(5):
        store.record("ANNOTATION_CREATED", "4", {}, annotations=[ann(i, kinds=("detect", "classify"))])
    store.record("ANNOTATION_CREATED", "4", {}, annotations=[ann(9, approved=False)])
    assert new(store) == 5 and new(store, kind="classify") == 5

    run = store.start_run("job-1", "4", "detect", "test", store.approved_ids("4", "detect"))
    assert run.annotation_ids == [0, 1, 2, 3, 4]
    assert new(store) == 0 and new(store, kind="classify") == 5  # per kind
    store.record("ANNOTATION_UPDATED", "4", {}, annotations=[ann(2)])  # a changed label counts again
    store.record("ANNOTATION_CREATED", "4", {}, annotations=[ann(10)])
    assert new(store) == 2

    store.finish_run("job-1", "abandoned", detail="worker died")  # its snapshot no longer counts
    assert new(store) == 6
    store.start_run("job-2", "4", "detect", "test", [])
    store.finish_run("job-2", "bad_data")  # bad data: wait for new labels
    assert new(store) == 0


def test_unapproving_and_deleting(target: str) -> None:
    store = EventStore(target)
    store.record("ANNOTATION_CREATED", "4", {}, kinds=("detect",), annotations=[ann(1), ann(2), ann(3)])
    store.record("ANNOTATION_UPDATED", "4", {}, annotations=[ann(1, approved=False)])
    store.record("ANNOTATIONS_DELETED", "4", {}, deleted_ids=[2])
    assert store.approved_ids("4") == [3]
    assert new(store) == 1


def test_requests_are_pending_until_handed_to_a_job(target: str) -> None:
    store = EventStore(target)
    store.request("7", "segment", "cli")
    (state,) = store.kind_states()
    assert (state.project, state.kind, state.requests) == ("7", "segment", ("cli",))
    assert store.mark_requested("7", "segment", "retrain-7-segment-1") == 1
    assert not any(s.requests for s in store.kind_states())
    assert store.has_requests("retrain-7-segment-1") and not store.has_requests("other")


def _writer(target: str, start: int, n: int) -> None:
    store = EventStore(target)
    for i in range(start, start + n):
        store.record("ANNOTATION_CREATED", "4", {"i": i}, kinds=("detect",), annotations=[ann(i)])


def test_concurrent_processes_lose_nothing(target: str) -> None:
    path = target
    EventStore(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), k * 100, 60)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(LONG)
        assert p.exitcode == 0
    store = EventStore(path)
    assert store.count_events("ANNOTATION_CREATED") == 240
    assert len(store.approved_ids("4", "detect")) == 240


def test_a_snapshot_has_seen_every_event_below_it(target: str) -> None:
    """Writers commit in sequence order (serialised transactions), so an event numbered below a snapshot
    was visible when the snapshot was taken: no annotation slips between two runs uncounted."""
    from sqlalchemy import func, select

    from workers.events import t_events

    store = EventStore(target)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(target, k * 1000, 100)) for k in range(2)]
    for p in procs:
        p.start()
    snapshots = []
    while any(p.is_alive() for p in procs):
        with store.db.read() as db:
            snapshots.append(tuple(db.execute(select(func.max(t_events.c.seq), func.count())).one()))
    for p in procs:
        p.join(LONG)
        assert p.exitcode == 0
    with store.db.read() as db:
        for top, seen in snapshots:
            if top is not None:
                later = db.execute(select(func.count()).where(t_events.c.seq <= top)).scalar_one()
                assert later == seen, f"an event below snapshot {top} committed after it"
    assert len(snapshots) > 10


def test_concurrent_records_are_committed_together(target: str) -> None:
    """Group commit: the webhooks that arrive while one commit runs are committed by the next in one
    transaction, each with its own sequence number, and nobody returns before its event is committed."""
    import threading

    from sqlalchemy import event

    store = EventStore(target)
    commits: list[int] = []
    event.listen(store.db.engine, "commit", lambda conn: commits.append(1))
    seqs: dict[int, int] = {}

    def one(i: int) -> None:
        seqs[i] = store.record("ANNOTATION_CREATED", "4", {"i": i}, kinds=("detect",), annotations=[ann(i)])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    with store.db.write():  # another writer holds the store: the 16 webhooks queue behind it
        for t in threads:
            t.start()
        # one leader, 15 waiting
        wait_for(lambda: len(store._groups.queue) >= 15, LONG, "15 webhooks queued behind the leader", 0.002)
        assert len(store._groups.queue) == 15
        assert not seqs  # none acknowledged while its transaction cannot commit
        commits.clear()
    for t in threads:
        t.join(LONG)
    # the blocking writer's, the leader's own event, then the 15 that queued behind it
    assert len(commits) == 3, commits
    assert sorted(seqs.values()) == list(range(min(seqs.values()), min(seqs.values()) + 16))
    assert store.count_events("ANNOTATION_CREATED") == 16 and new(store) == 16


def test_a_bad_event_in_a_group_fails_only_its_own_caller(target: str) -> None:
    import threading

    store = EventStore(target)
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:  # action None breaks the events table's NOT NULL: that event alone must fail
            action = None if i == 3 else "ANNOTATION_CREATED"
            results[i] = store.record(action, "4", {}, kinds=("detect",), annotations=[ann(i)])  # type: ignore[arg-type]
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    with store.db.write():
        for t in threads:
            t.start()
    for t in threads:
        t.join(LONG)
    assert isinstance(results.pop(3), Exception)
    assert all(isinstance(v, int) for v in results.values()), results
    assert store.count_events() == 7 and sorted(store.approved_ids("4")) == [0, 1, 2, 4, 5, 6, 7]
