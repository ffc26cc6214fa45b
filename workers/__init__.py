"""Background retraining: Label Studio webhooks → trigger policy → one RQ job per (project, kind) →
export, then training's one convert → train → evaluate → register → promote path.

Modules (one concept each):

- :mod:`workers.intake` — what a webhook payload changes in the event store (``/webhook`` is the backend's);
- :mod:`workers.events` — the durable SQLite store (events, approved annotations, runs);
- :mod:`workers.triggers` — the retrain policy, a pure function of stored counts and settings;
- :mod:`workers.dispatch` — from stored state to queued jobs (and the retry thread when Redis is down);
- :mod:`workers.jobs` — deterministic job ids, enqueue, list, cancel;
- :mod:`workers.pipeline` — the job itself (export, then :func:`training.lifecycle.retrain_from_tasks`);
  :mod:`workers.progress` — its progress and cancellation;
- :mod:`workers.worker` — the CUDA-safe RQ worker (SpawnWorker) and crash recovery;
- :mod:`workers.redis_server` — start a local Redis when none answers (tests, demo).
"""
