"""The floors, kept by tools: import contracts (import-linter), mypy over every package (its typing debt
only shrinking), and a worker parent that never imports torch (CUDA and fork)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from waits import LONG

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return str(path)


def test_import_contracts_hold() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    done = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(contracts)} kept, 0 broken" in done.stdout, done.stdout[-2000:]


def test_a_floor_pointing_up_is_caught(tmp_path: Path) -> None:
    """The contracts are not vacuous: a copy of the tree where the kernel imports ml_backend, a kind imports
    another kind and a module every kind shares imports the table of kinds breaks them."""
    copy = tmp_path / "tree"
    for name in ("kernel", "converters", "training", "workers", "ml_backend", "histoloop"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / "kernel" / "bad.py").write_text("import ml_backend.app\n")
    with open(copy / "training" / "kinds" / "classify.py", "a") as fh:
        fh.write("\nimport training.kinds.segment\n")
    with open(copy / "training" / "metrics.py", "a") as fh:
        fh.write("\nimport training.kinds\n")
    done = subprocess.run(
        [_tool("lint-imports")],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(copy), "PATH": str(BIN)},
    )
    assert done.returncode != 0 and "kernel.bad -> ml_backend.app" in done.stdout, done.stdout[-3000:]
    assert "training.kinds.classify -> training.kinds.segment" in done.stdout, done.stdout[-3000:]
    assert "training.metrics -> training.kinds" in done.stdout, done.stdout[-3000:]


PACKAGES = ["kernel", "converters", "training", "workers", "ml_backend", "histoloop", "benchmarks"]
TYPING_DEBT = 45
"""How many modules the typing debt held when mypy first covered every package: the most it may hold."""


def _mypy_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def test_mypy_is_clean_on_every_package() -> None:
    assert sorted(_mypy_config()["files"]) == sorted(PACKAGES)
    done = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]


def test_the_typing_debt_only_shrinks() -> None:
    debt = [m for o in _mypy_config().get("overrides", []) if o.get("ignore_errors") for m in o["module"]]
    assert len(debt) <= TYPING_DEBT, f"{len(debt)} modules in the typing debt: fix a module's types instead"
    for module in debt:  # each names a module that exists (a moved or deleted module leaves the list)
        path = ROOT / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module


def test_the_worker_parent_never_imports_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        from click.testing import CliRunner
        from histoloop.cli.main import main
        import workers.worker, workers.pipeline, workers.dispatch, workers.jobs, workers.intake
        assert CliRunner().invoke(main, ["worker", "--help"]).exit_code == 0
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ultralytics", "torchvision")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=LONG
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_test_modules_have_unique_basenames() -> None:
    """pytest's prepend import mode (tests/ has no __init__.py) imports test modules by basename: two
    test_x.py in different folders break collection of the whole suite."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
