"""The registry on both backends (a real SQLite file, a real PostgreSQL database), across threads and processes."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from registry_testkit import card_only_version
from sqlalchemy.exc import IntegrityError
from waits import LONG

import kernel.database as kernel_database
from kernel.database import DatabaseError
from training.artifacts import CARD_FILE, ArtifactError
from training.registry import Registry, RegistryError

OLD_SCHEMA = """
CREATE TABLE versions (id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, kind TEXT NOT NULL,
    version INTEGER NOT NULL, status TEXT NOT NULL CHECK (status IN ('candidate', 'production', 'archived', 'failed')),
    metrics TEXT NOT NULL DEFAULT '{}', config TEXT NOT NULL DEFAULT '{}', lineage TEXT NOT NULL DEFAULT '{}',
    parent_id INTEGER REFERENCES versions(id), artifact_dir TEXT, created_at REAL NOT NULL, reason TEXT,
    UNIQUE (project, kind, version));
CREATE UNIQUE INDEX one_production_per_project_kind ON versions (project, kind) WHERE status = 'production';
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, kind TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('promote', 'rollback')), version_id INTEGER NOT NULL REFERENCES versions(id),
    previous_id INTEGER REFERENCES versions(id), by TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', at REAL NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (key, value) VALUES ('revision', 0);
"""


def _candidate(reg: Registry, **metrics: float):
    return card_only_version(reg, metrics=metrics, lineage={"annotation_count": 3})


@pytest.fixture
def reg(tmp_path: Path, database_url: str) -> Registry:
    return Registry(database_url or tmp_path / "registry.sqlite", tmp_path)


def _target(reg: Registry) -> str:
    return str(reg.path) if reg.path is not None else reg.db.url


def test_register_moves_staging_into_place(reg: Registry, tmp_path: Path) -> None:
    v1 = _candidate(reg, balanced_accuracy=0.7)
    assert (v1.status, v1.version, v1.label) == ("candidate", 1, "classify-v1")
    assert v1.artifact_dir == tmp_path / "models" / "4" / "classify" / "v1"
    assert (v1.artifact_dir / CARD_FILE).is_file()
    assert list((tmp_path / "staging").iterdir()) == []
    assert reg.get("4/classify/v1") == v1 == reg.get(str(v1.id))
    assert reg.production("4", "classify") is None


def test_register_refuses_an_incomplete_version(reg: Registry) -> None:
    staging = reg.staging_dir()  # no model card: a trainer that died half-way
    with pytest.raises(ValueError, match=r"model.json"):
        reg.register("4", "detect", staging)
    assert reg.list() == []


def test_promote_archives_previous_and_keeps_history(reg: Registry) -> None:
    v1, v2 = _candidate(reg), _candidate(reg)
    before = reg.revision()
    reg.promote(v1.id, by="alice", reason="first model")
    reg.promote("4/classify/v2", by="bob", reason="better on val")
    assert reg.revision() == before + 2
    assert reg.production("4", "classify").id == v2.id
    assert reg.get(v1.id).status == "archived"
    history = reg.history("4", "classify")
    assert [(h["action"], h["version"], h["previous_version"], h["by"]) for h in history] == [
        ("promote", 1, None, "alice"),
        ("promote", 2, 1, "bob"),
    ]


def test_rollback_walks_back_through_productions(reg: Registry) -> None:
    v1, v2, v3 = _candidate(reg), _candidate(reg), _candidate(reg)
    for v in (v1, v2, v3):
        reg.promote(v.id)
    assert reg.rollback("4", "classify", reason="v3 misses small tumors").id == v2.id
    assert reg.rollback("4", "classify").id == v1.id
    assert reg.get(v3.id).status == "archived"
    with pytest.raises(RegistryError, match="no earlier production"):
        reg.rollback("4", "classify")
    assert reg.production("4", "classify").id == v1.id


def test_failed_versions_are_recorded_and_never_promoted(reg: Registry) -> None:
    good = _candidate(reg)
    reg.promote(good.id)
    failed = reg.record_failed("4", "classify", "class 'malignant' has no examples")
    assert (failed.status, failed.version, failed.artifact_dir) == ("failed", 2, None)
    with pytest.raises(RegistryError, match="cannot be promoted"):
        reg.promote(failed.id)
    assert reg.production("4", "classify").id == good.id


@pytest.mark.parametrize("project", ["../etc", "a/b", "", "x" * 65])
def test_bad_project_keys_are_refused(reg: Registry, project: str) -> None:
    with pytest.raises(RegistryError, match="bad project key"):
        reg.record_failed(project, "detect", "x")


def test_database_allows_one_production_only(reg: Registry) -> None:
    v1, v2 = _candidate(reg), _candidate(reg)
    reg.promote(v1.id)
    with pytest.raises(IntegrityError), reg.db.write() as db:  # a writer that bypasses the registry
        db.exec_driver_sql(f"UPDATE versions SET status = 'production' WHERE id = {v2.id}")  # noqa: S608 - an int id
    assert reg.get(v2.id).status == "candidate"


def test_schema_is_made_by_versioned_migrations(reg: Registry) -> None:
    assert reg.db.current() == reg.db.head() == "registry_0001"


def test_a_database_from_a_newer_histoloop_is_refused(tmp_path: Path, database_url: str) -> None:
    reg = Registry(database_url or tmp_path / "registry.sqlite", tmp_path)
    with reg.db.write() as db:
        db.exec_driver_sql("UPDATE alembic_version SET version_num = 'registry_9999'")
    kernel_database._upgraded.clear()  # as a new process would
    with pytest.raises(DatabaseError, match=r"registry_9999.*upgrade histoloop"):
        Registry(database_url or tmp_path / "registry.sqlite", tmp_path)


def test_a_registry_file_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    """A registry.sqlite written by the schema-on-open registry keeps its versions and gets versioned."""
    old = sqlite3.connect(tmp_path / "registry.sqlite")
    old.executescript(OLD_SCHEMA)
    old.execute(
        "INSERT INTO versions (project, kind, version, status, created_at) VALUES ('4', 'detect', 1, 'failed', 0)"
    )
    old.commit()
    old.close()
    reg = Registry(tmp_path / "registry.sqlite", tmp_path)
    assert [v.ref for v in reg.list()] == ["4/detect/v1"] and reg.db.current() == "registry_0001"
    assert reg.record_failed("4", "detect", "x").version == 2


def test_a_row_seen_before_its_files_is_waited_for(reg: Registry) -> None:
    """Another host's view of the shared store can lag behind the database: ``artifacts`` waits for the
    files a little, then says which version and folder it cannot see."""
    v1 = _candidate(reg)
    hidden = v1.artifact_dir.with_name("v1.elsewhere")
    os.rename(v1.artifact_dir, hidden)  # the row is committed, this host does not see the files yet
    reg.artifact_wait_s = 5.0
    threading.Timer(0.5, os.rename, (hidden, v1.artifact_dir)).start()
    started = time.monotonic()
    assert reg.artifacts(v1) == v1.artifact_dir
    assert 0.4 < time.monotonic() - started < 4
    os.rename(v1.artifact_dir, hidden)
    reg.artifact_wait_s = 0.3
    with pytest.raises(ArtifactError, match=r"4/classify/v1.*does not see"):
        reg.artifacts(v1)
    with pytest.raises(ArtifactError, match="missing"):  # nor is it promoted
        reg.promote(v1.id)
    assert reg.production("4", "classify") is None


def test_cleanup_staging_removes_dead_trainers_dirs(reg: Registry) -> None:
    alive = reg.staging_dir()
    dead = reg.store / "staging" / f"{alive.name.split('-')[0]}-999999999-deadbeef"
    dead.mkdir()
    removed = reg.cleanup_staging()
    assert removed == [dead] or dead in removed
    assert alive.is_dir() and not dead.exists()


def _promote_many(target: str, store: str, ids: list[int], barrier) -> None:
    reg = Registry(target, Path(store))
    barrier.wait()
    for i in ids:
        reg.promote(i, by=f"pid-{i}")


def _read_many(target: str, store: str, n: int, barrier, out) -> None:
    reg = Registry(target, Path(store))
    barrier.wait()
    seen = set()
    for _ in range(n):
        prod = [v for v in reg.list(project="4", kind="classify") if v.status == "production"]
        seen.add(len(prod))
    out.put(sorted(seen))


def test_concurrent_promotions_in_processes_lose_no_update(reg: Registry) -> None:
    versions = [_candidate(reg) for _ in range(8)]
    reg.promote(versions[0].id)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    out = ctx.Queue()
    a = ctx.Process(
        target=_promote_many, args=(_target(reg), str(reg.store), [v.id for v in versions[1::2]], barrier)
    )
    b = ctx.Process(
        target=_promote_many, args=(_target(reg), str(reg.store), [v.id for v in versions[2::2]], barrier)
    )
    reader = ctx.Process(target=_read_many, args=(_target(reg), str(reg.store), 300, barrier, out))
    for p in (a, b, reader):
        p.start()
    seen = out.get(timeout=LONG)
    for p in (a, b, reader):
        p.join(LONG)
        assert p.exitcode == 0
    # the reader never saw zero or two production versions
    assert seen == [1]
    history = reg.history("4", "classify")
    assert len(history) == 8
    # each promotion archived exactly the production that preceded it: a chain, no lost update
    for earlier, later in itertools.pairwise(history):
        assert later["previous_id"] == earlier["version_id"]
    assert reg.production("4", "classify").id == history[-1]["version_id"]
    assert sum(v.status == "production" for v in reg.list()) == 1
