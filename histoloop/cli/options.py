"""The options several ``histoloop`` commands share, each declared once: one name, type, default and help.

A command takes an option by its decorator, so that ``--json`` or ``--local-root`` reads and says the same
in every command's ``--help``:

    @click.command()
    @options.project()
    @options.json_output
    def show(project: str, as_json: bool) -> None: ...

:func:`split_options` gives a command one :class:`~converters.split.SplitOptions` value (``split_options``)
in place of ``--val-fraction``, ``--group-regex`` and ``--seed``.

>>> @click.command()
... @split_options
... def cmd(split_options: SplitOptions) -> None:
...     click.echo(split_options)
>>> from click.testing import CliRunner
>>> print(CliRunner().invoke(cmd, ["--val-fraction", "0.3", "--seed", "2"]).output, end="")
SplitOptions(val_fraction=0.3, group_regex=None, seed=2, test_fraction=0.0)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from converters.split import SplitOptions
from histoloop.cli.params import PROJECT_ID, PROJECT_NUMBER
from kernel.kinds import KINDS
from kernel.labelstudio import APPROVAL_POLICIES

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

json_output = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON (machine-readable)."
)
strict = click.option("--strict", is_flag=True, help="Exit 1 when anything was skipped.")
force = click.option(
    "--force",
    is_flag=True,
    help="Replace OUT even when it holds files that are not a histoloop dataset (they are deleted).",
)
label_config = click.option(
    "--label-config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The Label Studio project's label config XML (its classes, in order); "
    "default: inferred from the export.",
)
device = click.option(
    "--device", default=None, help="Where to run: auto, cpu, cuda or cuda:N (default: the device setting)."
)
min_score = click.option(
    "--min-score",
    type=float,
    default=None,
    help="Regions scored below this are dropped (default: the project's min_score setting).",
)
reader = click.option(
    "--reader",
    type=click.Choice(["auto", "tiffslide", "openslide"]),
    default="auto",
    show_default=True,
    help="Slide reader (OpenSlide is optional: pip install openslide-python openslide-bin).",
)
slide_mpp = click.option(
    "--slide-mpp", type=float, default=None, help="The slides' µm/px when their metadata has none."
)
val_fraction = click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of the split groups (patients) in the validation split.",
)
group_regex = click.option(
    "--group-regex",
    default=None,
    help="Regex whose first group is an item's split group, its patient or slide "
    "(default: the TCGA patient TCGA-XX-YYYY in its name).",
)
split_seed = click.option("--seed", type=int, default=0, show_default=True, help="Split seed.")


def project(*, required: bool = True, number: bool = False) -> Decorator:
    """``--project``: a Label Studio project id, as the key ``"4"`` (``number=True``: the int ``4`` its API
    takes); see :class:`~histoloop.cli.params.ProjectId`."""
    return click.option(
        "--project",
        type=PROJECT_NUMBER if number else PROJECT_ID,
        required=required,
        help="Label Studio project id.",
    )


def kind(*, required: bool = True) -> Decorator:
    """``--kind``: a model kind (:data:`kernel.kinds.KINDS`)."""
    return click.option("--kind", type=click.Choice(KINDS), required=required, help="Model kind.")


def local_root(*, default: str = "the local_files_root setting", exists: bool = False) -> Decorator:
    """``--local-root``: Label Studio's local-files document root (a folder; with ``exists``, one that is
    there); ``default`` says what the command uses without it."""
    return click.option(
        "--local-root",
        type=click.Path(file_okay=False, exists=exists),
        default=None,
        help=f"Label Studio's local-files document root, where its /data/local-files/?d= paths point "
        f"(default: {default}).",
    )


def approval(*, default: str | None = None) -> Decorator:
    """``--approval``: which annotations count (:data:`kernel.labelstudio.APPROVAL_POLICIES`); without a
    ``default``, the project's rule."""
    return click.option(
        "--approval",
        type=click.Choice(APPROVAL_POLICIES),
        default=default,
        show_default=default is not None,
        help="Which annotations count" + ("." if default else " (default: the project's rule)."),
    )


def split_options(f: F) -> F:
    """``--val-fraction``, ``--group-regex`` and ``--seed``, given to the command as one ``split_options``."""

    @functools.wraps(f)
    def command(*args: Any, val_fraction: float, group_regex: str | None, seed: int, **kwargs: Any) -> Any:
        split = SplitOptions(val_fraction=val_fraction, group_regex=group_regex, seed=seed)
        return f(*args, split_options=split, **kwargs)

    for option in (split_seed, group_regex, val_fraction):  # click lists the last applied first
        command = option(command)
    return cast(F, command)
