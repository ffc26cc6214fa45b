"""From stored state to queued jobs: evaluate the trigger policy and enqueue what is due.

:func:`dispatch` reads the event store, asks :func:`workers.triggers.decide` which (project, kind) should
retrain, and calls :func:`workers.jobs.enqueue_retrain` for each (idempotent: a job already waiting is
reused). It is safe to call any time, from any process, as often as you like — that is what makes the
pending-trigger sweep trivial: nothing is "pending" except in the durable store, so calling it again
after Redis comes back enqueues exactly what was missed.

:class:`Dispatcher` runs dispatch in one background thread (the backend builds one per app), so a webhook never waits on
Redis: the request records the event and wakes the thread. Wake-ups that arrive while a dispatch runs,
or within ``min_interval_s`` (0.25 s) of the last one, are merged into the next one (a storm of webhooks
costs a few dispatches a second). When Redis is down the
thread retries with backoff until it answers; on start it sweeps every project once, and then again
every ``sweep_s`` (5 minutes): a retrain request whose job gave up while Label Studio was down is queued
again without waiting for a webhook.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from redis import Redis, RedisError
from redis.exceptions import LockError

from kernel.settings import Settings
from workers.events import EventStore
from workers.jobs import enqueue_retrain
from workers.triggers import Trigger, decide

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisError, LockError, OSError)


def dispatch(
    settings: Settings,
    projects: Iterable[str] | None = None,
    *,
    store: EventStore | None = None,
    connection: Redis | None = None,
) -> list[tuple[Trigger, str]]:
    """Enqueue a retraining for every due (project, kind) (all projects, or only ``projects``).

    Returns ``[(trigger, job_id)]``. Raises a Redis error when Redis is unreachable (nothing is lost:
    the state it acted on stays in the store, so the next call does the same work).
    """
    store = store or EventStore.from_settings(settings)
    done = []
    for trigger in decide(store.kind_states(projects), settings.project):
        job_id = enqueue_retrain(
            settings, trigger.project, trigger.kind, trigger.reason, connection=connection, store=store
        )
        if trigger.manual:
            store.mark_requested(trigger.project, trigger.kind, job_id)
        log.info("retrain %s/%s -> job %s (%s)", trigger.project, trigger.kind, job_id, trigger.reason)
        done.append((trigger, job_id))
    return done


class Dispatcher:
    """A background thread that dispatches after webhooks, and retries while Redis is down."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore | None = None,
        max_backoff_s: float = 10.0,
        sweep_s: float = 300.0,
        min_interval_s: float = 0.25,
    ) -> None:
        self.settings = settings
        self.min_interval_s = min_interval_s
        """At most one dispatch per this many seconds: a storm of webhooks wakes the thread hundreds of times
        a second, and each dispatch reads the store's counts (a few ms of this process's interpreter, which
        the webhooks' own threads then wait for)."""
        self._last = float("-inf")
        self.sweep_s = sweep_s
        self.store = store or EventStore.from_settings(settings)
        self.max_backoff_s = max_backoff_s
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._projects: set[str] | None = None  # None: every project (the sweep)
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.dispatched = 0

    def notify(self, project: str | None = None) -> None:
        """Ask for a dispatch of ``project`` (None: of every project) soon; never blocks on Redis."""
        with self._lock:
            if self._thread is None:
                self._projects = None  # first wake-up in this process: sweep everything
                self._thread = threading.Thread(target=self._run, name="histoloop-dispatch", daemon=True)
                self._thread.start()
            elif project is None:
                self._projects = None
            elif self._projects is not None:
                self._projects.add(project)
        self._wake.set()

    def _take(self) -> set[str] | None:
        with self._lock:
            projects, self._projects = self._projects, set()
        return projects

    def _run(self) -> None:
        backoff = 0.25
        while True:
            woke = self._wake.wait(self.sweep_s)
            pause = self._last + self.min_interval_s - time.monotonic()
            if woke and pause > 0:
                time.sleep(pause)  # the wake-ups meanwhile are merged into this dispatch
            self._wake.clear()
            projects = self._take() if woke else None  # the periodic sweep: every project
            if projects is not None and not projects:
                continue
            self._last = time.monotonic()
            try:
                self.dispatched += len(dispatch(self.settings, projects, store=self.store))
                backoff = 0.25
            except REDIS_ERRORS as exc:
                self.failures += 1
                log.warning("Redis unavailable (%s); retrying the dispatch in %.1f s", exc, backoff)
                with self._lock:
                    if self._projects is not None:
                        self._projects = None if projects is None else self._projects | projects
                threading.Event().wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                self._wake.set()
            except Exception:  # a bug must not kill the thread: the events stay in the store
                log.exception("dispatch failed")
