"""The training worker: one RQ worker per GPU (or one on the CPU), safe with CUDA.

**Why SpawnWorker.** RQ's default ``Worker`` forks a work horse per job. CUDA cannot be used in a
child forked from a process that has initialised it (the driver state does not survive ``fork``), and a
long-lived worker that ever touched torch.cuda would hand every later horse a broken context.
``rq.SpawnWorker`` starts each horse with ``os.posix_spawn`` — a fresh interpreter that imports torch
itself — so the parent never imports torch and no CUDA state crosses a fork. The parent keeps RQ's
supervision that ``SimpleWorker`` would lose: it enforces the job timeout, keeps the heartbeat, and
notices when the horse dies (OOM, SIGKILL) and marks the job failed. The GPU is chosen with
``CUDA_VISIBLE_DEVICES`` in the parent's environment before anything starts, so the horse sees exactly
one device (``cuda:0``). One worker runs one job at a time: one training per GPU.

**Several machines.** Every worker, on any machine, connects to the same Redis (``redis_url``), the same
PostgreSQL (``database_url``: the registry and the event store) and the same model store folder (a shared
mount, version folders only): a job goes to whichever worker is free, the registry's serialised
transactions order registrations and promotions across hosts, and :func:`workers.jobs.enqueue_retrain`
keeps one job per (project, kind). Each job records its host and GPUs in its meta (``histoloop jobs list``).

**Crashes.** On start, and then every ``settings.heartbeat`` seconds while it runs (a thread of the
parent), a worker (1) marks the jobs of dead workers failed/abandoned through RQ's own
``StartedJobRegistry.cleanup`` — a worker on this host whose pid is gone is dead now; a job on another
host is abandoned when its heartbeat has not come for 3x ``settings.heartbeat`` (RQ's job monitoring
interval; :meth:`TrainingWorker.get_heartbeat_ttl`) — so a worker killed on one machine has its job failed
by a worker on another within a minute or two, and (2) removes abandoned staging directories
(:meth:`training.registry.Registry.cleanup_staging`). A horse that dies under a live worker is handled at
once. The horse and RQ's scheduler process die with the worker (:func:`kernel.processes.die_with_parent`), so a killed
worker leaves no orphan behind. Nothing is registered by a run that did not finish, so production is untouched; the run no longer
counts for the trigger policy, so the next webhook retrains, and the explicit requests it held are
pending again, once (:func:`workers.pipeline.mark_abandoned`).

**Redis away or emptied.** The worker waits for a Redis that stops answering instead of exiting
(:class:`TrainingWorker`'s overrides of RQ's heartbeat, suspension check, maintenance, state and pubsub,
and :class:`PatientScheduler`): the horse trains on, and the run is stamped alive in the event store on
every heartbeat (``runs.alive_at``), Redis or not. A Redis that restarted without its data forgot the
queued and started jobs; :func:`recover_runs` (at start and every heartbeat) abandons the runs nobody
stamps any more and gives back the requests those jobs held, so the next dispatch queues them again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SpawnWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty

from kernel.processes import die_with_parent, pid_alive
from kernel.settings import Settings, load_settings, mask_url
from workers.events import EventStore

log = logging.getLogger(__name__)


def _cleanup_staging(older_than_s: float = 24 * 3600) -> None:
    from training.registry import Registry

    try:
        removed = Registry.from_settings(load_settings()).cleanup_staging(older_than_s=older_than_s)
        for path in removed:
            log.warning("removed abandoned staging directory %s", path)
    except Exception:
        log.exception("staging cleanup failed")


REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
"""What a Redis that is not answering raises (refused, reset, timed out)."""
MAX_REDIS_BACKOFF_S = 30.0


class PatientScheduler(RQScheduler):
    """RQ's scheduler (the process that enqueues retries when their backoff ends), retrying while Redis
    does not answer instead of exiting with a traceback."""

    def work(self) -> None:
        self._install_signal_handlers()
        self.register_birth()
        while True:
            if self._stop_requested:
                with contextlib.suppress(*REDIS_DOWN):
                    self.stop()
                break
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
            except REDIS_DOWN as exc:  # the worker logs the outage; this tries again after its interval
                log.debug("scheduler: Redis unavailable (%s)", exc)
            time.sleep(self.interval)


STALE_HEARTBEATS = 9
"""A run whose worker has not stamped it for this many heartbeats (3 heartbeat TTLs), and whose job Redis
no longer knows as started, is abandoned (:func:`recover_runs`)."""


class TrainingWorker(SpawnWorker):
    """``rq.SpawnWorker`` (see the module docstring) that cleans up after a horse that died, and stamps
    its running job's run alive in the event store on every heartbeat."""

    store: EventStore | None = None
    """The event store whose runs this worker stamps (:meth:`maintain_heartbeats`); set by :func:`build_worker`."""
    redis_url: str = ""
    """The Redis it works from, for its log lines (credentials masked); set by :func:`build_worker`."""
    _redis_down_since: float | None = None

    # -- a Redis that stops answering ----------------------------------------------------------
    # RQ's worker quits on the first Redis error outside its dequeue loop (a heartbeat while the horse
    # trains, its suspension check, its maintenance, a state change). These wait for Redis instead: the
    # horse trains on, the run is stamped in the event store, and RQ's bookkeeping resumes when Redis
    # answers again. One warning per outage, one line when it is back, both from the main thread (the
    # pubsub and recovery threads only retry).
    def _redis_unavailable(self, exc: BaseException) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning("Redis unavailable at %s, retrying (%s)", mask_url(self.redis_url or "?"), exc)

    def _redis_answered(self) -> None:
        if self._redis_down_since is not None:
            down = time.monotonic() - self._redis_down_since
            self._redis_down_since = None
            log.warning("Redis at %s answers again after %.0f s", mask_url(self.redis_url or "?"), down)

    @contextlib.contextmanager
    def _redis_may_be_away(self, *, answered: bool = True) -> Iterator[None]:
        """Run the block; a Redis that does not answer is logged as an outage instead of raised (the next
        call tries again); ``answered``: a block that went through ends the outage."""
        try:
            yield
        except REDIS_DOWN as exc:
            self._redis_unavailable(exc)
        else:
            if answered:
                self._redis_answered()

    def _wait_for_redis(self, what: Any, *args: Any) -> Any:
        """``what(*args)``, retried with backoff (1 s doubling to 30 s) while Redis does not answer."""
        backoff = 1.0
        while True:
            try:
                result = what(*args)
            except REDIS_DOWN as exc:
                self._redis_unavailable(exc)
                if self._stop_requested:
                    return None
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_REDIS_BACKOFF_S)
                continue
            self._redis_answered()
            return result

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # queued on a pipeline: nothing is sent here
            super().heartbeat(timeout, pipeline=pipeline)
            return
        with self._redis_may_be_away():
            super().heartbeat(timeout)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
            return
        with self._redis_may_be_away(answered=False):
            super().set_state(state)

    def check_for_suspension(self, burst: bool) -> None:
        self._wait_for_redis(super().check_for_suspension, burst)

    def run_maintenance_tasks(self) -> None:
        with self._redis_may_be_away(answered=False):  # the next round does it
            super().run_maintenance_tasks()

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        if isinstance(exc, REDIS_DOWN):  # the main thread logs the outage (once: only it logs it)
            log.debug("pubsub: Redis unavailable (%s)", exc)
            time.sleep(2.0)  # redis-py subscribes again when it reconnects
        else:
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own, with :class:`PatientScheduler` in place of ``RQScheduler``."""
        self.scheduler = PatientScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def teardown(self) -> None:
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            log.warning("worker %s stopped without telling Redis (%s)", self.name, exc)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long a started job stays claimed without a heartbeat: 3 monitoring intervals (RQ's own adds a
        fixed 60 s to one, which a short ``settings.heartbeat`` could not shorten)."""
        interval = int(self.job_monitoring_interval)
        if job.timeout and job.timeout > 0:
            return int(min(job.timeout - working_time, interval)) + 2 * interval
        return 3 * interval

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        """Stamp the run alive in the event store, then RQ's heartbeats (skipped while Redis is away: the
        monitor loop calls this again every ``job_monitoring_interval``)."""
        self._stamp_alive(job.id)
        with self._redis_may_be_away():
            super().maintain_heartbeats(job, execution)

    def _stamp_alive(self, job_id: str) -> None:
        if self.store is None:
            return
        try:
            self.store.touch_run(job_id)
        except Exception as exc:  # the event store away for a moment: the next heartbeat stamps it
            log.warning("job %s: could not stamp its run alive: %s", job_id, exc)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            # the horse ended while Redis was away: what it did is in the event store and the registry
            self._redis_unavailable(exc)
            log.warning("job %s ended while Redis was unavailable: its outcome is in the event store", job.id)
        finally:
            _cleanup_staging()

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        from workers.pipeline import mark_abandoned

        mark_abandoned(job.id, f"work horse died (waitpid status {ret_val})", job)


def recover_abandoned(connection: Redis, queue_names: Sequence[str]) -> list[str]:
    """Fail the started jobs whose worker is dead (RQ's StartedJobRegistry cleanup); returns their ids."""
    here = socket.gethostname()
    failed = []
    for name in queue_names:
        # failure callbacks run under a time limit: a timer where signals cannot be used (a thread)
        penalty = None if threading.current_thread() is threading.main_thread() else TimerDeathPenalty
        registry = StartedJobRegistry(name, connection=connection, death_penalty_class=penalty)
        dead_entries = {}
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=True):
            job = Job.fetch_many([job_id], connection=connection)[0]
            worker_name = job.worker_name if job else None
            worker = (
                Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name, connection=connection)
                if worker_name
                else None
            )
            # a job whose worker is not named yet is starting: only its heartbeat (RQ's cleanup above) can
            # declare it abandoned; a named worker whose key is gone stopped sending heartbeats long ago
            gone = worker is not None and worker.hostname == here and not pid_alive(worker.pid)
            if worker_name and (worker is None or gone):
                dead_entries[f"{job_id}:{execution_id}"] = 0
                failed.append(job_id)
                if worker is not None:
                    # certainly dead; a worker without a key may be cut off from Redis: on_failure decides
                    if gone:
                        from workers.pipeline import mark_abandoned

                        mark_abandoned(job_id, f"its worker (pid {worker.pid} on {here}) is gone", job)
                    worker.register_death()
        if dead_entries:
            # Expire them now and let RQ's own cleanup fail them (failure callback, FailedJobRegistry,
            # dependents enqueued): the same path as a heartbeat that ran out.
            connection.zadd(registry.key, dead_entries, xx=True)
            registry.cleanup(timestamp=1)
    for job_id in failed:
        log.warning("job %s was abandoned by a dead worker: marked failed", job_id)
    return failed


def recover_runs(store: EventStore, connection: Redis, stale_s: float) -> list[str]:
    """Give back what jobs that Redis no longer knows held; returns the ids of the jobs recovered.

    A Redis restarted without its data (what :func:`workers.redis_server.ensure_redis` starts) forgets its
    queued and started jobs, so RQ's own recovery (:func:`recover_abandoned`) never fails them. Here:

    - a run still ``running`` whose worker has not stamped it for ``stale_s`` seconds and whose job is not
      started in Redis (unknown, or ended without recording its run) is ``abandoned`` (it does not count:
      the next trigger retrains) and its explicit requests are pending again, once
      (:func:`workers.pipeline.mark_abandoned`);
    - requests held by a job that never started a run and that Redis does not know (it was queued) are
      pending again.

    The next dispatch (a webhook, a worker starting, the backend's sweep) queues them under new ids.
    """
    from workers.pipeline import mark_abandoned

    recovered = []
    for run in store.stale_runs(stale_s):
        job = Job.fetch_many([run.job_id], connection=connection)[0]
        if job is not None and job.get_status(refresh=False) == JobStatus.STARTED:
            continue  # RQ knows it: its heartbeat decides (recover_abandoned)
        detail = f"no heartbeat for {stale_s:.0f} s and Redis no longer knows the job as started"
        if mark_abandoned(run.job_id, detail, job, store=store):
            log.warning("job %s: %s; its run is marked abandoned", run.job_id, detail)
            recovered.append(run.job_id)
    for job_id in store.held_without_run():
        if not connection.exists(Job.key_for(job_id)):
            released = store.release_requests(job_id)
            log.warning(
                "job %s is gone from Redis: its %d explicit request(s) are pending again", job_id, released
            )
            recovered.append(job_id)
    return recovered


def prepare_environment(
    settings: Settings,
    gpu: int | None,
    device: str | None,
    config_file: str | None,
    gpus: Sequence[int] = (),
) -> str:
    """Choose the device for this worker's horses (before anything imports torch); returns it.

    ``gpu``: ``CUDA_VISIBLE_DEVICES=<gpu>`` and device ``cuda:0``; ``gpus`` (several): all of them visible,
    device ``cuda`` and ``HISTOLOOP_TRAIN_DEVICES=<how many>``, so that one training uses them all (DDP,
    :mod:`training.distributed`); ``device="cpu"``: no GPU visible. The horse is a fresh interpreter that
    reads its settings from this environment, so the device and the config file are handed down through
    ``HISTOLOOP_DEVICE`` / ``HISTOLOOP_TRAIN_DEVICES`` / ``HISTOLOOP_CONFIG``.
    """
    if len(gpus) == 1:
        gpu = gpus[0]
    if len(gpus) > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        os.environ["HISTOLOOP_TRAIN_DEVICES"] = str(len(gpus))
        device = "cuda"
    elif gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        device = "cuda:0"
    elif device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    device = device or settings.device
    os.environ["HISTOLOOP_DEVICE"] = device
    if config_file:
        os.environ["HISTOLOOP_CONFIG"] = os.path.abspath(config_file)
    return device


def build_worker(
    settings: Settings, queues: Sequence[str] | None = None, name: str | None = None
) -> TrainingWorker:
    from workers.jobs import redis_connection

    connection = redis_connection(settings.redis_url)
    names = list(queues or [settings.queue])
    worker = TrainingWorker(
        [Queue(n, connection=connection) for n in names],
        connection=connection,
        name=name,
        job_monitoring_interval=settings.heartbeat,
    )
    worker.store = EventStore.from_settings(settings)
    worker.redis_url = settings.redis_url
    return worker


def _recover(worker: TrainingWorker, stale_s: float) -> None:
    recover_abandoned(worker.connection, [q.name for q in worker.queues])
    if worker.store is not None:
        recover_runs(worker.store, worker.connection, stale_s)


def _keep_recovering(worker: TrainingWorker, interval_s: float, stop: threading.Event) -> None:
    """Every ``interval_s``: fail the jobs that dead workers (on any host) left started, and give back
    what jobs that Redis forgot held (:func:`recover_runs`)."""
    while not stop.wait(interval_s):
        try:
            _recover(worker, STALE_HEARTBEATS * interval_s)
        except REDIS_DOWN as exc:  # the next round tries again; the worker's main thread logs the outage
            log.debug("recovering abandoned jobs: Redis unavailable (%s)", exc)
        except Exception as exc:
            log.warning("recovering abandoned jobs failed: %s", exc)


def run_worker(
    settings: Settings,
    *,
    queues: Sequence[str] | None = None,
    burst: bool = False,
    name: str | None = None,
) -> bool:
    """Recover what dead workers left, sweep pending triggers, then work until stopped (or idle, ``burst``)."""
    from workers.dispatch import REDIS_ERRORS, dispatch

    # RQ's scheduler (retries with backoff) is forked from this process: it must not outlive it
    os.register_at_fork(after_in_child=die_with_parent)
    worker = build_worker(settings, queues, name)
    _recover(worker, STALE_HEARTBEATS * max(1, settings.heartbeat))
    _cleanup_staging()
    try:
        dispatch(settings, connection=worker.connection)  # triggers recorded while Redis was away
    except REDIS_ERRORS as exc:
        log.warning("pending-trigger sweep failed: %s", exc)
    stop = threading.Event()
    threading.Thread(
        target=_keep_recovering,
        args=(worker, max(1, settings.heartbeat), stop),
        name="histoloop-recover",
        daemon=True,
    ).start()
    try:
        return worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level.upper())
    finally:
        stop.set()
