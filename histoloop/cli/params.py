"""Click parameter types shared by the subcommands."""

from __future__ import annotations

from typing import Any

import click

from kernel.labelstudio import project_key


class ProjectId(click.ParamType):
    """A Label Studio project id (``4``, or ``4.1795424387`` as ``/setup`` names it) -> the key ``"4"``;
    anything else (``abc``, ``٣``, 4,000 digits) is a usage error, before anything is recorded or queued."""

    name = "project id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return project_key(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


PROJECT_ID = ProjectId()
