"""``histoloop serve``: the Label Studio ML backend (gunicorn; ``--dev`` for Flask's dev server)."""

from __future__ import annotations

import click

from kernel.settings import Settings


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on [settings: host].")
@click.option("--port", type=int, default=None, help="Port to listen on [settings: port].")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="gunicorn worker processes (each loads its own models).",
)
@click.option(
    "--threads", type=click.IntRange(1), default=4, show_default=True, help="Threads per worker process."
)
@click.option(
    "--behind-auth-proxy",
    is_flag=True,
    help="Listen beyond this host without basic auth and a webhook secret (a proxy of your own "
    "authenticates every request).",
)
@click.pass_obj
def serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    dev: bool,
    workers: int,
    threads: int,
    behind_auth_proxy: bool,
) -> None:
    """Serve predictions to Label Studio (GET /health, POST /setup, /predict, /webhook, GET /versions).

    An address beyond this host (--host 0.0.0.0) needs HISTOLOOP_BASIC_AUTH_USER/_PASSWORD and
    HISTOLOOP_WEBHOOK_SECRET (or --behind-auth-proxy)."""
    from ml_backend.server import open_bind_refusal, run_dev, run_gunicorn

    host = host or settings.host
    port = port or settings.port
    refusal = None if behind_auth_proxy else open_bind_refusal(settings, host)
    if refusal:
        raise click.UsageError(refusal)
    auth = "on" if settings.basic_auth_user else "off"
    click.echo(f"histoloop backend on http://{host}:{port} (basic auth {auth}, store {settings.model_store})")
    if dev:
        run_dev(settings, host, port)
    else:
        run_gunicorn(settings, host, port, workers=workers, threads=threads)
