"""Every example in a docstring runs and gives what it says: one runner over every module of the packages
that holds a ``>>>`` line (found by reading the files, so a new example is run without being listed)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernel", "converters", "training", "workers", "ml_backend", "histoloop", "benchmarks")
AT_LEAST = 68
"""How many modules held examples when this runner was written: fewer means the finder broke (or examples
were deleted: then lower this on purpose)."""


def modules_with_examples() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT).with_suffix("").parts
                found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


MODULES = modules_with_examples()


def test_the_runner_finds_the_examples() -> None:
    assert len(MODULES) >= AT_LEAST, MODULES
    assert {m.split(".")[0] for m in MODULES} >= {"kernel", "converters", "training", "ml_backend"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples name files relative to the repository root
    monkeypatch.delenv("COLUMNS", raising=False)  # console widths are the default one
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module)
    runner = doctest.DocTestRunner()
    failures: list[str] = []
    for test in tests:
        runner.run(test, out=failures.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(failures)
    examples = [e for t in tests for e in t.examples]
    assert examples, f"{name} has a '>>>' line but no example doctest finds"
    assert result.attempted > 0 or all(e.options.get(doctest.SKIP) for e in examples)
