"""What the backend counts for Prometheus (``GET /metrics``, :mod:`ml_backend.routes.metrics`).

==================================================== =========================================================
metric                                               what
==================================================== =========================================================
``histoloop_http_requests_total{route,method,status}`` requests per route (the URL rule, e.g. ``/predict``)
``histoloop_http_request_duration_seconds{route}``   latency histogram per route
``histoloop_predicted_tasks_total{mode,outcome}``    tasks answered by ``/predict`` (``batch``/``interactive``;
                                                     ``ok``/``error``)
``histoloop_predicted_regions_total{kind,mode}``     regions sent, by the model kind that made them
``histoloop_model_loads_total{kind,outcome}``        production versions loaded (``ok``/``failed``)
``histoloop_webhook_events_total{action,status}``    Label Studio webhooks (``recorded``, ``ignored``...)
``histoloop_jobs{state}``                            retraining jobs in RQ by state (read at scrape time)
``histoloop_redis_up``                               whether Redis answered that read
``histoloop_model_info{project,kind,version}``       1 for each production version (``version``: the
                                                     ``model_version`` Label Studio shows, ``detect-v3``),
                                                     read from the registry at scrape time
``histoloop_model_versions{project,kind,status}``     versions of each project and kind by status
                                                     (``production``, ``candidate``, ``archived``,
                                                     ``failed``; 0 where none), read from the registry at
                                                     scrape time: a refused candidate stays ``candidate``,
                                                     a promotion moves one to ``production`` and the
                                                     version it replaced to ``archived``
``process_*``, ``python_gc_*``, ``python_info``      prometheus-client's default collectors (CPU seconds,
                                                     memory, open files, start time; garbage collection;
                                                     the Python version)
==================================================== =========================================================

The counters live in one :class:`prometheus_client.CollectorRegistry` of this module's own (not the
library's global default registry, so that only what is listed here is exported); the default process,
platform and garbage-collection collectors are registered in it explicitly. Under gunicorn with several
worker processes, ``histoloop serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode: each process writes its values to files there) and ``/metrics`` adds up every process's; the jobs
and model gauges are read from Redis and the registry by whichever process answers. The ``process_*`` and
``python_gc_*`` values of one process cannot be added up, so in that mode only ``python_info`` is exported
(as prometheus-client's multiprocess mode does).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kernel.settings import Settings
from kernel.tags import predicted_by
from training.registry import STATUSES, Registry

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry(auto_describe=True)
for _default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # what the global registry has
    REGISTRY.register(_default)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 100.0)

HTTP_REQUESTS = Counter(
    "histoloop_http_requests",
    "HTTP requests by route, method and status",
    ("route", "method", "status"),
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "histoloop_http_request_duration_seconds",
    "HTTP request latency by route",
    ("route",),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
PREDICTED_TASKS = Counter(
    "histoloop_predicted_tasks", "Tasks answered by /predict", ("mode", "outcome"), registry=REGISTRY
)
PREDICTED_REGIONS = Counter(
    "histoloop_predicted_regions",
    "Regions sent to Label Studio, by model kind",
    ("kind", "mode"),
    registry=REGISTRY,
)
MODEL_LOADS = Counter(
    "histoloop_model_loads", "Production model versions loaded", ("kind", "outcome"), registry=REGISTRY
)
WEBHOOK_EVENTS = Counter(
    "histoloop_webhook_events", "Label Studio webhook events", ("action", "status"), registry=REGISTRY
)
JOB_STATES = ("queued", "started", "deferred", "scheduled", "finished", "failed", "canceled")


def count_predictions(mode: str, items: Iterable[dict[str, Any]]) -> None:
    """Count the tasks and regions of one ``/predict`` reply."""
    for item in items:
        PREDICTED_TASKS.labels(mode, "error" if item.get("error") else "ok").inc()
        for region in item.get("result") or ():
            kind = predicted_by(str(region.get("type", "")).lower()) or "other"
            PREDICTED_REGIONS.labels(kind, mode).inc()


def count_model_load(kind: str, ok: bool) -> None:
    MODEL_LOADS.labels(kind, "ok" if ok else "failed").inc()


WEBHOOK_ACTIONS = frozenset(
    {
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
        "ANNOTATIONS_CREATED",
        "START_TRAINING",
        "PROJECT_CREATED",
        "PROJECT_UPDATED",
        "PROJECT_DELETED",
        "TASKS_CREATED",
        "TASKS_DELETED",
        "REVIEW_CREATED",
        "REVIEW_UPDATED",
        "REVIEWS_DELETED",
        "LABEL_LINK_CREATED",
        "LABEL_LINK_UPDATED",
        "LABEL_LINK_DELETED",
    }
)
"""Label Studio's webhook actions: each is a value of the ``action`` label; any other string is ``other``
(every distinct value would be a new series, and the sender chooses it)."""


def count_webhook(action: str, status: str) -> None:
    WEBHOOK_EVENTS.labels(action if action in WEBHOOK_ACTIONS else "other", status).inc()


def instrument(app: Flask) -> None:
    """Count every request of ``app`` by route (its URL rule, so unknown paths are one ``other``)."""

    @app.before_request
    def _start() -> None:
        g.histoloop_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "other"
        HTTP_REQUESTS.labels(rule, request.method, str(response.status_code)).inc()
        started = g.get("histoloop_started")
        if started is not None:
            HTTP_LATENCY.labels(rule).observe(time.perf_counter() - started)
        return response


class JobsCollector(Collector):
    """``histoloop_jobs{state}`` and ``histoloop_redis_up``, read from RQ when scraped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("histoloop_jobs", "Retraining jobs in RQ by state", labels=("state",))
        up = GaugeMetricFamily("histoloop_redis_up", "Whether Redis answered the jobs query")
        try:
            counts = job_counts(self.settings)
        except Exception as exc:  # Redis down: say so, never fail the scrape
            log.info("/metrics: no job counts (%s: %s)", type(exc).__name__, exc)
            up.add_metric([], 0)
        else:
            for state in JOB_STATES:
                jobs.add_metric([state], counts.get(state, 0))
            up.add_metric([], 1)
            yield jobs
        yield up


class ModelInfoCollector(Collector):
    """``histoloop_model_info{project,kind,version}``: 1 per production version, and
    ``histoloop_model_versions{project,kind,status}``: the versions of each project and kind by status (the
    promotion gate's decisions), read from the registry when scraped (what every process serves on its next
    request)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "histoloop_model_info",
            "The production model version of each project and kind (1)",
            labels=("project", "kind", "version"),
        )
        counts = GaugeMetricFamily(
            "histoloop_model_versions",
            "Model versions of each project and kind by status",
            labels=("project", "kind", "status"),
        )
        try:
            production = self.registry.list(status="production")
            by_status = self.registry.status_counts()
        except Exception as exc:  # the database unreachable: the rest of the scrape still answers
            log.info("/metrics: no model versions (%s: %s)", type(exc).__name__, exc)
            return
        for version in production:
            info.add_metric([version.project, version.kind, version.label], 1)
        yield info
        for project, kind in sorted({(p, k) for p, k, _ in by_status}):
            for status in STATUSES:  # every status, 0 included: an alert on a rise needs the series
                counts.add_metric([project, kind, status], by_status.get((project, kind, status), 0))
        yield counts


def job_counts(settings: Settings) -> dict[str, int]:
    from rq import Queue
    from rq.registry import (
        CanceledJobRegistry,
        DeferredJobRegistry,
        FailedJobRegistry,
        FinishedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    from workers.jobs import redis_connection

    redis = redis_connection(settings.redis_url)
    queue = Queue(settings.queue, connection=redis)
    return {
        "queued": queue.count,
        "started": StartedJobRegistry(queue=queue).count,
        "deferred": DeferredJobRegistry(queue=queue).count,
        "scheduled": ScheduledJobRegistry(queue=queue).count,
        "finished": FinishedJobRegistry(queue=queue).count,
        "failed": FailedJobRegistry(queue=queue).count,
        "canceled": CanceledJobRegistry(queue=queue).count,
    }


def exposition(settings: Settings, registry: Registry | None = None) -> bytes:
    """The Prometheus text of this process (or of every process, in multiprocess mode) plus the jobs and,
    given the model ``registry``, its production versions."""
    scraped = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters)
        text = generate_latest(counters)
        scraped.register(PLATFORM_COLLECTOR)
    else:
        text = generate_latest(REGISTRY)
    scraped.register(JobsCollector(settings))
    if registry is not None:
        scraped.register(ModelInfoCollector(registry))
    return text + generate_latest(scraped)


def mark_process_dead(pid: int) -> None:
    """gunicorn's ``child_exit`` hook in multiprocess mode (drops a dead worker's live gauges)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
