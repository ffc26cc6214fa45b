"""Background retraining: Label Studio webhooks → trigger policy → one RQ job per (project, kind) →
export, convert, train, evaluate, register, promote when better.

Modules (one concept each):

- :mod:`workers.webhook` — ``POST /webhook`` (Flask blueprint): records events, answers in milliseconds;
- :mod:`workers.events` — the durable SQLite store (events, approved annotations, runs);
- :mod:`workers.approval` — which annotations count as approved (per-project policy);
- :mod:`workers.triggers` — the retrain policy, a pure function of stored counts and settings;
- :mod:`workers.dispatch` — from stored state to queued jobs (and the retry thread when Redis is down);
- :mod:`workers.jobs` — deterministic job ids, enqueue, list, cancel;
- :mod:`workers.pipeline` — the job itself; :mod:`workers.progress` — its progress and cancellation;
- :mod:`workers.promotion` — the promotion gate (never | if_better | always, margin);
- :mod:`workers.worker` — the CUDA-safe RQ worker (SpawnWorker) and crash recovery;
- :mod:`workers.redis_server` — start a local Redis when none answers (tests, demo).
"""
