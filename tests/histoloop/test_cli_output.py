"""histoloop.cli.output: a table written to a log keeps its cells whole."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from histoloop.cli.output import LOG_WIDTH, console


def _wide_table() -> Table:
    table = Table()
    for i in range(13):
        table.add_column(f"column {i}")
    table.add_row(*(f"random {i}.00×" for i in range(13)))
    return table


def test_a_table_written_to_a_file_is_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    file = io.StringIO()
    out = console(file=file)
    assert out.width == LOG_WIDTH
    out.print(_wide_table())
    text = file.getvalue()
    assert "…" not in text and all(f"random {i}.00×" in text for i in range(13))
    file = io.StringIO()  # what rich alone does: 80 columns, every cell cut
    Console(file=file).print(_wide_table())
    assert "…" in file.getvalue()


def test_columns_and_terminals_keep_their_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert console(file=io.StringIO()).width == 100
    monkeypatch.delenv("COLUMNS")
    assert console(file=io.StringIO(), force_terminal=True, width=90).width == 90
