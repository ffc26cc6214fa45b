"""histoloop.cli.options: a shared option says the same in every command, and the split options arrive as
one value."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import histoloop.cli.options
import histoloop.cli.params
from converters.split import SplitOptions
from histoloop.cli import main
from histoloop.cli.main import SUBCOMMANDS

VOC = Path(__file__).resolve().parents[1] / "data" / "labelimg_voc"


def _commands() -> list[tuple[str, click.Command]]:
    """Every (name, command) of the CLI, the subcommands of the groups included."""
    ctx = click.Context(main)
    found = []
    todo = [(name, main.get_command(ctx, name)) for name in SUBCOMMANDS]
    while todo:
        name, command = todo.pop()
        assert command is not None, name
        if isinstance(command, click.Group):
            todo += [(f"{name} {n}", c) for n, c in command.commands.items()]
        else:
            found.append((name, command))
    return found


@pytest.mark.parametrize(
    "flag",
    [
        "--json",
        "--strict",
        "--local-root",
        "--label-config",
        "--project",
        "--kind",
        "--group-regex",
        "--val-fraction",
        "--min-score",
        "--approval",
    ],
)
def test_a_shared_option_has_one_help_text(flag: str) -> None:
    helps = {}
    for name, command in _commands():
        for param in command.params:
            if isinstance(param, click.Option) and flag in param.opts:
                helps[name] = param.help
    assert len(helps) >= 2, helps
    # --local-root and --approval name their default; the text before it is the same everywhere
    assert len({(h or "").split("(default")[0].rstrip(" .") for h in helps.values()}) == 1, helps


def test_the_split_options_reach_the_converter_as_one_value(tmp_path, monkeypatch) -> None:
    import converters.labelimg

    seen: list[SplitOptions] = []
    real = converters.labelimg.labelimg_to_yolo

    def spy(folder, out, *, split_options: SplitOptions, **rest):
        seen.append(split_options)
        return real(folder, out, split_options=split_options, **rest)

    monkeypatch.setattr(converters.labelimg, "labelimg_to_yolo", spy)
    args = [
        "convert",
        "labelimg",
        str(VOC),
        str(tmp_path / "out"),
        "--to",
        "yolo",
        "--val-fraction",
        "0.5",
        "--group-regex",
        r"^(\w)",
        "--seed",
        "3",
        "--json",
    ]
    result = CliRunner().invoke(main, args, env={"HISTOLOOP_MODEL_STORE": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert seen == [SplitOptions(val_fraction=0.5, group_regex=r"^(\w)", seed=3)]
    assert json.loads(result.output)["converted"] > 0


def test_a_project_id_as_the_api_number() -> None:
    @click.command()
    @histoloop.cli.options.project(number=True)
    def cmd(project: int) -> None:
        click.echo(repr(project))

    assert CliRunner().invoke(cmd, ["--project", "4.1795424387"]).output == "4\n"
    refused = CliRunner().invoke(cmd, ["--project", "abc"])
    assert refused.exit_code == 2 and "bad project reference" in refused.output
