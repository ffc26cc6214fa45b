"""Running the app: gunicorn in production, Flask's development server with ``dev``.

gunicorn runs ``workers`` processes of ``threads`` threads each (``gthread`` with requests read whole in the
event loop before a thread sees them: :mod:`ml_backend.gworker`); each process has its
own model cache, so memory grows with ``workers`` (one process with a few threads is the default: model
calls are serialised per model anyway, and torch uses every core for one call).

Each instance has a control socket of its own (gunicorn's default, ``~/.gunicorn/gunicorn.ctl``, is
one per user: a second ``histoloop serve`` would take it over from the first), in a private temporary
directory removed when the server stops. ``/predict`` may use all threads but one of a process
(``predict_slots``), so that ``/health`` and ``/webhook`` always find a free thread; up to
``predict_queue`` more wait for a slot (``predict_queue_timeout`` s at most) on threads added for them.

A bind beyond this host (``0.0.0.0``, any address that is not loopback) needs basic auth and a webhook
secret (:func:`open_bind_refusal`): otherwise anyone who reaches the port could ``/setup`` projects,
read predictions and post webhooks.

>>> GunicornApp.options_for("127.0.0.1", 9090, workers=2, threads=4)["bind"]
'127.0.0.1:9090'
>>> [is_loopback(h) for h in ("127.0.0.1", "localhost", "[::1]", "0.0.0.0", "10.0.0.5", "")]
[True, True, True, False, False, False]
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from kernel.logs import LOG_FORMAT
from kernel.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Read by prometheus_client when it is first imported: this module never imports it (the workers do)."""
PREDICT_TIMEOUT_S = 120
"""gunicorn's worker timeout; Label Studio gives /predict 100 s."""


ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
"""gunicorn's access line without its own ``[%(t)s]``: the timestamp is the log format's."""


HOW_TO_GENERATE = 'python -c "import secrets; print(secrets.token_hex(32))"'
"""The command the refusal of an open bind suggests for generating a password or secret."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, ``127.x.x.x``, ``::1``)."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_bind_refusal(settings: Settings, host: str) -> str | None:
    """Why the backend must not listen on ``host``, or None: a bind beyond loopback needs basic auth
    (user and password) and a webhook secret."""
    if is_loopback(host):
        return None
    missing = [
        name
        for name, value in (
            ("HISTOLOOP_BASIC_AUTH_USER", settings.basic_auth_user),
            ("HISTOLOOP_BASIC_AUTH_PASSWORD", settings.basic_auth_password.get()),
            ("HISTOLOOP_WEBHOOK_SECRET", settings.webhook_secret.get()),
        )
        if not value
    ]
    if not missing:
        return None
    return (
        f"refusing to listen on {host!r} (beyond this host) without {', '.join(missing)}: anyone who reaches "
        "the port could set up projects, read predictions and post webhooks. Set HISTOLOOP_BASIC_AUTH_USER "
        "and HISTOLOOP_BASIC_AUTH_PASSWORD (and enter them in Label Studio's Connect Model form) and "
        "HISTOLOOP_WEBHOOK_SECRET (the webhook's X-Histoloop-Webhook-Secret header, README 'The webhook'); "
        f"generate each with: {HOW_TO_GENERATE}. Behind a proxy of your own that authenticates every "
        "request: --behind-auth-proxy."
    )


def logconfig() -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error and access loggers and the app's loggers write one stream
    (stderr) in :data:`kernel.logs.LOG_FORMAT`, at the root logger's level (``-v``: debug)."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"histoloop": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "histoloop",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


class GunicornApp(BaseApplication):
    """gunicorn serving :func:`ml_backend.app.create_app` for the given settings."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    @staticmethod
    def options_for(
        host: str, port: int, workers: int = 1, threads: int = 4, control_socket: str | None = None
    ) -> dict[str, Any]:
        return {
            "control_socket": control_socket,
            "bind": f"{host}:{port}",
            "workers": max(1, workers),
            "threads": max(1, threads),
            "worker_class": "ml_backend.gworker.BufferingWorker",
            "timeout": PREDICT_TIMEOUT_S,
            "graceful_timeout": 30,
            "keepalive": 5,
            "accesslog": "-",
            "errorlog": "-",
            # gunicorn's lines in the Python log format (its access line carries no timestamp of its own)
            "access_log_format": ACCESS_LOG_FORMAT,
            "logconfig_dict": logconfig(),
            "child_exit": _child_exit,
        }

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        from ml_backend.app import create_app

        return create_app(self.settings)


def _child_exit(server: Any, worker: Any) -> None:
    from ml_backend.telemetry import mark_process_dead

    mark_process_dead(worker.pid)


def multiprocess_metrics(settings: Settings, port: int) -> str | None:
    """With several workers: prometheus-client's multiprocess mode in ``<store>/prometheus/<port>``
    (emptied at start), unless ``PROMETHEUS_MULTIPROC_DIR`` is set already. Must run before the workers
    import prometheus_client (gunicorn loads the app in each worker, after this)."""
    if os.environ.get(MULTIPROC_ENV):
        return os.environ[MULTIPROC_ENV]
    directory = settings.model_store / "prometheus" / str(port)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return str(directory)


def predict_slots_for(settings: Settings, threads: int) -> Settings:
    """``settings`` with ``predict_slots`` = ``threads - 1`` (at least 1) unless it was set."""
    if settings.predict_slots > 0:
        return settings
    return dataclasses.replace(settings, predict_slots=max(1, threads - 1))


def run_gunicorn(settings: Settings, host: str, port: int, workers: int = 1, threads: int = 4) -> None:
    """Serve with gunicorn until stopped (SIGINT/SIGTERM); threads are at least 2 (one kept for
    ``/health`` and ``/webhook``), plus ``predict_queue`` for the predictions waiting for a slot."""
    if workers > 1:
        multiprocess_metrics(settings, port)
    threads = max(2, threads)
    control = Path(tempfile.mkdtemp(prefix="histoloop-gunicorn-"))
    try:
        settings = predict_slots_for(settings, threads)
        # the predictions waiting for a slot wait on threads of their own, beyond ``threads``
        pool = threads + max(0, settings.predict_queue)
        options = GunicornApp.options_for(host, port, workers, pool, str(control / "gunicorn.ctl"))
        GunicornApp(settings, options).run()
    finally:
        shutil.rmtree(control, ignore_errors=True)


def run_dev(settings: Settings, host: str, port: int) -> None:
    """Serve with Flask's development server (threaded, auto-reload off)."""
    from ml_backend.app import create_app

    create_app(settings).run(host=host, port=port, debug=False, threaded=True, use_reloader=False)
