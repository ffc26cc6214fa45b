"""``histoloop demo``: the whole loop on this machine, with a real Label Studio."""

from __future__ import annotations

from pathlib import Path

import click

from kernel.settings import Settings


@click.command()
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Your own PNG/JPEG tiles (default: generated H&E-like tiles).",
)
@click.option("--count", default=12, show_default=True, help="Generated tiles, when no --images.")
@click.option("--label-studio-port", default=8080, show_default=True)
@click.option("--port", "backend_port", default=9090, show_default=True, help="The backend's port.")
@click.option(
    "--label-studio-venv",
    type=click.Path(path_type=Path),
    help="Where Label Studio is installed (default: <model store>/label-studio-venv).",
)
@click.option("--no-wait", is_flag=True, help="Set everything up, print the URLs, then stop (for scripts).")
@click.pass_context
def demo(
    ctx: click.Context,
    images: Path | None,
    count: int,
    label_studio_port: int,
    backend_port: int,
    label_studio_venv: Path | None,
    no_wait: bool,
) -> None:
    """Start Redis, Label Studio, the backend and a worker; set up demo projects with a first model each.

    One progress bar per first model, then its held-out score; `histoloop -v demo` shows the trainings' logs
    (ultralytics' epoch tables included) instead. Prints the Label Studio URL and login. Ctrl-C, or `kill` (SIGTERM, SIGHUP), stops everything it started.
    """
    from histoloop.demo import run_demo

    settings: Settings = ctx.obj
    verbose = bool(ctx.find_root().params.get("verbose"))
    from histoloop.stack import stopped_by_signals

    with stopped_by_signals():
        run_demo(
            settings,
            images=images,
            count=count,
            ls_port=label_studio_port,
            backend_port=backend_port,
            label_studio_venv=label_studio_venv,
            wait=(lambda: None) if no_wait else None,
            verbose=verbose,
        )
