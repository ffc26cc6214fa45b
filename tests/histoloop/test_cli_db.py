"""`histoloop db upgrade|status|migrate-from-sqlite`: a lab's SQLite registry and event store into a real
PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from registry_testkit import card_only_version

from histoloop.cli import main
from training.registry import Registry
from workers.events import AnnotationRow, EventStore


def run(env: dict[str, str], *args: str):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def pg_url(postgres_server) -> str:
    return postgres_server.fresh()


def test_upgrade_and_status_on_both(tmp_path: Path, database_url: str) -> None:
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_DATABASE_URL": database_url}
    result = run(env, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "registry_0001" in result.output and "events_0004" in result.output
    status = run(env, "db", "status").output
    assert "at migration registry_0001 (head registry_0001)" in status
    assert (tmp_path / "registry.sqlite").exists() != bool(database_url)


def test_migrate_from_sqlite_keeps_everything(tmp_path: Path, pg_url: str) -> None:
    reg = Registry(tmp_path / "registry.sqlite", tmp_path)
    v1 = card_only_version(reg, metrics={"balanced_accuracy": 0.7})
    v2 = card_only_version(reg, metrics={"balanced_accuracy": 0.8})
    reg.promote(v1.id, by="alice")
    reg.promote(v2.id, by="bob", reason="better")
    reg.record_failed("4", "classify", "bad data: no malignant")
    events = EventStore(tmp_path / "events.sqlite")
    events.record("PROJECT_UPDATED", "4", {}, kinds=("classify",))
    for i in range(5):
        events.record(
            "ANNOTATION_CREATED", "4", {"i": i}, annotations=[AnnotationRow(i, 100 + i, ("classify",), True)]
        )
    events.request("4", "classify", "cli")
    events.start_run("retrain-4-classify-1", "4", "classify", "test", events.approved_ids("4"))
    events.finish_run("retrain-4-classify-1", "done", version_id=v2.id)

    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_DATABASE_URL": pg_url}
    result = run(env, "db", "migrate-from-sqlite")
    assert result.exit_code == 0, result.output
    assert "copied 3 versions, 2 events, 1 meta" in result.output

    moved = Registry(pg_url, tmp_path)
    assert [v.to_dict() for v in moved.list()] == [v.to_dict() for v in reg.list()]
    assert moved.history("4", "classify") == reg.history("4", "classify")
    assert moved.revision() == reg.revision()
    assert moved.rollback("4", "classify").id == v1.id  # the history works on
    assert card_only_version(moved).version == 4  # ids and numbers continue after the copied ones
    moved_events = EventStore(pg_url)
    assert moved_events.kind_states() == events.kind_states()
    assert moved_events.runs() == events.runs()
    assert moved_events.record("ANNOTATION_CREATED", "4", {}) == events.last_seq() + 1

    again = CliRunner().invoke(main, ["db", "migrate-from-sqlite"], env=env)
    assert again.exit_code == 1 and "already has rows" in again.output


def test_migrate_needs_a_database_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["db", "migrate-from-sqlite"],
        env={"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_DATABASE_URL": ""},
    )
    assert result.exit_code == 2 and "HISTOLOOP_DATABASE_URL" in result.output
