"""The floors, kept by tools: import contracts (import-linter), mypy over every package (its typing debt
only shrinking), a worker parent that never imports torch (CUDA and fork), the rows gate (a kind is one
row: no branch on a kind's name outside the rows) and pre-commit running what ``make lint`` runs."""

from __future__ import annotations

import ast
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


def test_no_function_opts_out_of_the_complexity_limit() -> None:
    opted_out = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "noqa: C901" in line
    ]
    assert not opted_out, f"split these functions instead of silencing ruff's C901: {opted_out}"


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


def _make_lint_commands() -> list[str]:
    """The commands of the Makefile's ``lint`` recipe, in order, with ``$(VENV)`` as ``.venv``."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("lint:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe += [c.strip().replace("$(VENV)", ".venv") for c in line.split("&&")]
    return recipe


def test_pre_commit_runs_what_make_lint_runs() -> None:
    import yaml

    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert [r["repo"] for r in config["repos"]] == ["local"]  # nothing to download
    hooks = config["repos"][0]["hooks"]
    assert all(h["language"] == "system" and h["pass_filenames"] is False for h in hooks)
    assert [h["entry"] for h in hooks] == _make_lint_commands()
    assert len(hooks) == 4  # ruff check, ruff format --check, lint-imports, mypy


# -- the rows gate: a kind is one row -------------------------------------------------------------------
KIND_NAMES = frozenset({"detect", "segment", "classify"})
ROWS = ("training/kinds/", "kernel/kinds.py", "kernel/tags.py")
"""Where a kind's name may be branched on: the kind rows and the kernel's kind and tag tables."""
ALLOWED = {
    # the dataset kinds' rows (converters/kinds/: detect, obb, yolo-segment, segment, classify), the
    # dataset-side twin of training/kinds/
    "converters/kinds/": "the dataset kinds' rows",
    # the benchmarks measure named kinds against the bare libraries: which metric and data each reports
    "benchmarks/crossval.py": "trains and scores each arm by its kind (segmenters against detectors)",
    "benchmarks/gpu.py": "benchmarks a kind's bare library call",
    "benchmarks/recipes.py": "reports each kind's own metric",
    "benchmarks/simulate.py": "reports each kind's own metric",
    "benchmarks/slides.py": "sizes each kind's fields",
    "benchmarks/train.py": "--only picks the kinds to time",
}
"""Outside the rows, the files that may still branch on a kind, each with why."""


def _is_kind_ref(node: ast.expr) -> bool:
    """``kind`` or ``<x>.kind`` (numpy's ``dtype.kind`` is no model kind)."""
    if isinstance(node, ast.Name):
        return node.id == "kind"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "kind"
        and not (isinstance(node.value, ast.Attribute) and node.value.attr == "dtype")
    )


def _strings(node: ast.expr) -> set[str]:
    """The string constants of a literal (a string, or a tuple, list or set of constants)."""
    elts = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}


def kind_branches(source: str) -> list[tuple[int, str]]:
    """(line, what) of each comparison or match on a kind: a kind's name compared or matched, or ``kind``
    compared with a string literal (``kind == "x"``, ``kind in ("x", "y")``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_strings(o) & KIND_NAMES for o in operands):
                found.append((node.lineno, "a kind's name compared"))
            elif any(_is_kind_ref(o) for o in operands) and any(_strings(o) for o in operands):
                found.append((node.lineno, "kind compared with a literal"))
        elif isinstance(node, ast.Match):
            if _is_kind_ref(node.subject):
                found.append((node.lineno, "match on kind"))
            found += [
                (p.lineno, "a kind's name matched")
                for case in node.cases
                for p in ast.walk(case.pattern)
                if isinstance(p, ast.MatchValue) and _strings(p.value) & KIND_NAMES
            ]
    return found


def _exempt(rel: str) -> bool:
    return any(rel == r or (r.endswith("/") and rel.startswith(r)) for r in (*ROWS, *ALLOWED))


def test_a_kind_is_branched_on_only_in_its_row() -> None:
    hits = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not _exempt(rel):
                hits += [f"{rel}:{line}: {what}" for line, what in kind_branches(path.read_text())]
    assert hits == [], "a kind's behaviour belongs in its row (training/kinds/), not a branch:\n" + "\n".join(
        hits
    )


def test_every_allowed_file_exists() -> None:
    for rel in (*ROWS, *ALLOWED):
        assert (ROOT / rel).exists(), rel


@pytest.mark.parametrize(
    "planted",
    [
        'if kind == "segment":\n    pass\n',
        'x = 1 if spec.kind != "detect" else 2\n',
        'ok = kind in ("detect", "classify")\n',
        'ok = "classify" in kinds\n',
        'ok = kind == "obb"\n',
        'match kind:\n    case "detect":\n        pass\n',
        'match value:\n    case "segment":\n        pass\n',
    ],
)
def test_the_rows_gate_catches_a_planted_branch(planted: str) -> None:
    assert kind_branches(planted), planted


@pytest.mark.parametrize(
    "fine",
    [
        "ok = kind in KINDS\n",
        "same = row.kind == kind\n",
        "if spec.kind is None:\n    pass\n",
        'ok = mask.dtype.kind in "ub"\n',
        'name = "segment"\n',
    ],
)
def test_the_rows_gate_leaves_lookups_alone(fine: str) -> None:
    assert kind_branches(fine) == []
