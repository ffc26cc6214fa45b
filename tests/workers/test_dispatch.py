"""dispatch(): stored state -> queued jobs, idempotent; with Redis down it raises and loses nothing."""

from __future__ import annotations

import dataclasses

import pytest
from redis import Redis, RedisError
from rq import Queue

from workers.dispatch import dispatch
from workers.events import AnnotationRow, EventStore


def test_due_kinds_are_enqueued_once_and_requests_handed_over(wsettings) -> None:
    settings = wsettings(retrain_threshold=2)
    store = EventStore(settings.events_path)
    store.record("PROJECT_UPDATED", "4", {}, kinds=("detect", "segment"))
    for i in range(2):
        store.record("ANNOTATION_CREATED", "4", {}, annotations=[AnnotationRow(i, i, ("detect",), True)])
    store.request("4", "segment", "cli")
    store.record(
        "ANNOTATION_CREATED",
        "5",
        {},
        kinds=("classify",),
        annotations=[AnnotationRow(9, 9, ("classify",), True)],
    )

    done = {(t.project, t.kind, t.manual): job for t, job in dispatch(settings, store=store)}
    assert done == {
        ("4", "detect", False): "retrain-4-detect-1",
        ("4", "segment", True): "retrain-4-segment-1",
    }
    assert store.has_requests("retrain-4-segment-1")
    again = {job for _, job in dispatch(settings, store=store)}  # nothing new: same job (still queued)
    assert again == {"retrain-4-detect-1"}
    assert Queue(settings.queue, connection=Redis.from_url(settings.redis_url)).count == 2


def test_redis_down_raises_and_keeps_the_request(wsettings) -> None:
    settings = dataclasses.replace(wsettings(), redis_url="redis://127.0.0.1:9/0")
    store = EventStore(settings.events_path)
    store.request("4", "detect", "cli")
    with pytest.raises(RedisError):
        dispatch(settings, store=store)
    assert store.kind_states()[0].requests == ("cli",)
