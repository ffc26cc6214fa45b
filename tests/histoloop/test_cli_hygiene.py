"""The CLI's hygiene: its version, read-only commands that write nothing, settings errors that name their
variable, import errors that surface, and one style for the options and empty tables."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import click
from click.testing import CliRunner

from histoloop.cli.main import SUBCOMMANDS, main


def test_version_comes_from_the_package_metadata(tmp_path) -> None:
    result = CliRunner().invoke(main, ["--version"], env={"HISTOLOOP_MODEL_STORE": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert result.output == f"histoloop, version {metadata.version('histoloop')}\n"


def test_version_needs_no_valid_settings(tmp_path) -> None:
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_RETRAIN_THRESHOLD": "abc"}
    result = CliRunner().invoke(main, ["--version"], env=env)
    assert result.exit_code == 0 and metadata.version("histoloop") in result.output


def test_a_bad_setting_is_a_usage_error_that_names_it(tmp_path) -> None:
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_RETRAIN_THRESHOLD": "abc"}
    result = CliRunner().invoke(main, ["settings"], env=env)
    assert result.exit_code == 2
    assert "HISTOLOOP_RETRAIN_THRESHOLD: 'abc' is not an integer" in result.output


def test_a_subcommand_that_fails_to_import_raises_its_import_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_cmd.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(SUBCOMMANDS, "broken", "broken_cmd:broken")
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path)}
    result = CliRunner().invoke(main, ["broken", "--help"], env=env)
    assert isinstance(result.exception, ModuleNotFoundError), result.output
    assert "No module named 'no_such_dependency_xyz'" in str(result.exception)
    assert "No such command" not in result.output
    listed = CliRunner().invoke(main, ["--help"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "(unavailable: No module named 'no_such_dependency_xyz')" in listed.output
    assert "slides" in listed.output and "models" in listed.output


def _schemas(url: str) -> set[str]:
    """The histoloop schemas a PostgreSQL database holds."""
    from sqlalchemy import create_engine, text

    from kernel.database import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT schema_name FROM information_schema.schemata"))
            return {r[0] for r in rows if r[0].startswith("histoloop_")}
    finally:
        engine.dispose()


def _written(store: Path, database_url: str) -> list[str]:
    """What a command left behind: files in the model store, or schemas in the PostgreSQL database."""
    files = sorted(str(p.relative_to(store)) for p in store.rglob("*")) if store.exists() else []
    return files + sorted(_schemas(database_url) if database_url else [])


def test_read_only_commands_create_nothing_on_a_fresh_store(tmp_path: Path, database_url: str) -> None:
    store = tmp_path / "store"
    env = {"HISTOLOOP_MODEL_STORE": str(store), "HISTOLOOP_DATABASE_URL": database_url}
    listed = CliRunner().invoke(main, ["models", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "no model versions yet (no registry yet at" in listed.output
    assert CliRunner().invoke(main, ["models", "list", "--json"], env=env).output == "[]\n"
    shown = CliRunner().invoke(main, ["models", "show", "4/detect/v1"], env=env)
    assert shown.exit_code == 1 and "no registry yet at" in shown.output
    status = CliRunner().invoke(main, ["db", "status"], env=env)
    assert status.exit_code == 0, status.output
    assert "registry: Database(" in status.output and status.output.count("not created yet (head") == 2
    assert _written(store, database_url) == []
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    assert "at migration registry_0001 (head registry_0001)\n" in run_ok(env, "db", "status")


def test_db_status_reports_pending_migrations_and_runs_none(tmp_path: Path) -> None:
    from kernel.database import Database
    from workers.migrations import EVENTS

    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_DATABASE_URL": ""}
    run_ok(env, "db", "upgrade")
    events = Database(tmp_path / "events.sqlite", "events", migrations=EVENTS, upgrade=False)
    with events.write() as conn:  # as a database left by a histoloop two migrations older
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'events_0001'")
    status = run_ok(env, "db", "status")
    assert "at migration events_0001 (head events_0004): not migrated: 3 pending" in status
    assert events.current() == "events_0001"
    registry = Database(tmp_path / "registry.sqlite", "registry", migrations=None, upgrade=False)
    with registry.write() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'registry_9999'")
    refused = CliRunner().invoke(main, ["models", "list"], env=env)
    assert refused.exit_code == 1 and "'registry_9999', which this histoloop does not know" in refused.output


def run_ok(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_slides_command_takes_the_project_as_the_same_number() -> None:
    from histoloop.cli.slides import slides

    converted = {
        name: param.type.convert("4", param, None)
        for name, command in slides.commands.items()
        for param in command.params
        if isinstance(param, click.Option) and "--project" in param.opts
    }
    assert set(converted) == {"import", "predict", "export"}
    assert set(converted.values()) == {4} and {type(v) for v in converted.values()} == {int}, converted
