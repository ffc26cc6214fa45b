"""The CLI's hygiene: its version, read-only commands that write nothing, settings errors that name their
variable, import errors that surface, and one style for the options and empty tables."""

from __future__ import annotations

from importlib import metadata

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
