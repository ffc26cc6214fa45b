"""The ``histoloop`` admin CLI: a thin layer over converters/, training/, ml_backend/ and workers/.

Subcommands are imported only when used, so ``histoloop --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
import logging

import click

from kernel.logs import LOG_FORMAT, quiet_ultralytics
from kernel.settings import Settings, load_settings

SUBCOMMANDS = {
    "convert": "histoloop.cli.convert:convert",
    "train": "histoloop.cli.train:train",
    "models": "histoloop.cli.models:models",
    "serve": "histoloop.cli.serve:serve",
    "worker": "histoloop.cli.worker:worker",
    "jobs": "histoloop.cli.jobs:jobs",
    "retrain": "histoloop.cli.jobs:retrain",
    "predict": "histoloop.cli.predict:predict",
    "demo": "histoloop.cli.demo:demo",
    "slides": "histoloop.cli.slides:slides",
    "settings": "histoloop.cli.main:show_settings",
    "db": "histoloop.cli.db:db",
    "simulate": "histoloop.cli.simulate:simulate",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module when the subcommand is run. A module that fails to import raises
    its own ImportError (its message names what is missing); ``--help`` lists it as unavailable."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attr = SUBCOMMANDS[name].split(":")
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if not self._listing:
                raise
            return click.Command(name, help=f"(unavailable: {exc})")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False


@click.group(cls=LazyGroup)
@click.version_option(package_name="histoloop", prog_name="histoloop")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, verbose: bool) -> None:
    """histoloop: annotation-in-the-loop models for Label Studio."""
    try:
        ctx.obj = load_settings(config_file)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, ctx.obj.log_level.upper(), logging.INFO),
        format=LOG_FORMAT,
    )
    if not verbose:  # one line per HTTP request is noise at INFO
        for name in ("httpx", "httpcore", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
        quiet_ultralytics()


@click.command("settings")
@click.pass_obj
def show_settings(settings: Settings) -> None:
    """Print the effective settings (secrets masked)."""
    import json

    click.echo(json.dumps(settings.redacted(), indent=2))
