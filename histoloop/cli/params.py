"""Click parameter types shared by the subcommands."""

from __future__ import annotations

from typing import Any

import click

from kernel.labelstudio import project_key


class ProjectId(click.ParamType):
    """A Label Studio project id (``4``, or ``4.1795424387`` as ``/setup`` names it) -> the key ``"4"``
    (``number=True``: the int ``4`` Label Studio's API takes); anything else (``abc``, ``٣``, 4,000
    digits) is a usage error, before anything is recorded or queued.

    >>> PROJECT_ID.convert("4.1795424387", None, None), PROJECT_NUMBER.convert("4", None, None)
    ('4', 4)
    """

    name = "project id"

    def __init__(self, number: bool = False) -> None:
        self.number = number

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str | int:
        try:
            key = project_key(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return int(key) if self.number else key


PROJECT_ID = ProjectId()
PROJECT_NUMBER = ProjectId(number=True)
