"""``histoloop simulate``: a specialist replayed, round by round, on a fully labelled set.

The set (anything the converters read with ground truth; :mod:`converters.ground_truth`) is tiled, a
fixed test split of whole groups (patients/slides) is set aside and never trained on, and each ordering
policy plays its own rounds from no model at all, in its own model store:

1. choose ``per_round`` tasks among those not yet approved: ``random`` (seeded), ``sequential`` (the set's
   order) or ``uncertainty`` (the current production's lowest task score first, as a Label Studio user
   sorts the Data Manager; ties in the seeded random order);
2. predict them with the production model **through the backend's own predict path**
   (:meth:`ml_backend.engine.Engine.predict`: label config → predictors → Label Studio results, the code
   ``/predict`` runs, with the project's ``min_score``);
3. the specialist corrects each prediction to the ground truth (:mod:`training.corrections` counts the
   actions; "from scratch" is the same ground truth drawn without a suggestion) and approves it;
4. the approved tasks go through **the workers' own path**, :func:`training.lifecycle.retrain_from_tasks`
   (convert → train → evaluate → register → promote when the project's gate says so); the next round
   predicts with whatever production is then.

Each round also predicts the test split with the production that served the round (same path) and
evaluates it there (:func:`training.evaluate.evaluate`): held-out corrections per task and metrics on the
same tasks every round. A last row, after the last retraining, measures the production trained on every
approved task. Rows are written as JSON lines as they come; the curve and the table come at the end.

``--label-studio`` plays the same rounds against a real Label Studio project (see
:mod:`histoloop.simulate_labelstudio`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from converters.ground_truth import GroundTruthTask, dataset_tasks, label_config, source_to_dataset, tile
from converters.split import split_fraction
from kernel.kinds import PRIMARY_METRIC, check_kind
from kernel.settings import Secret, Settings
from training.corrections import Corrections
from training.specialist import from_scratch, regions_of, result_corrections, seconds

log = logging.getLogger(__name__)

ORDERS = ("random", "sequential", "uncertainty")
PROJECT = "1"
SCORES = ("added", "deleted", "adjusted", "relabelled", "pixels", "total")


@dataclass
class SimulationConfig:
    kind: str
    rounds: int | None = None
    """None: as many as it takes to approve every task of the pool."""
    per_round: int = 8
    orders: tuple[str, ...] = ("random",)
    test_split: str = "0.25"
    """A fraction of the groups (at least one), or a comma-separated list of group names."""
    seed: int = 0
    tile: int = 256
    overlap: int = 0
    group_regex: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    """Training options of the kind (``TrainConfig`` fields) over the settings' ``train.<kind>``."""
    min_score: float | None = None
    auto_promote: str | None = None
    label_config: str | None = None
    """The source's label config (a Label Studio export's), for the conversion."""
    images: str | None = None
    """An Aperio XML folder's images, when they are not in ``<DATA>/images``."""
    local_root: str | None = None
    """Where a Label Studio export's ``/data/local-files/?d=`` images are (default: the export's folder)."""
    keep_models: bool = False

    def __post_init__(self) -> None:
        self.kind = check_kind(self.kind)
        bad = [o for o in self.orders if o not in ORDERS]
        if bad or not self.orders:
            raise ValueError(f"--order must be among {', '.join(ORDERS)}, not {', '.join(bad) or 'nothing'}")
        if self.per_round < 1 or (self.rounds is not None and self.rounds < 1):
            raise ValueError("--per-round and --rounds must be at least 1")


@dataclass
class Replay:
    """The replayable set: tasks to approve (the pool) and the held-out test tasks, and their project."""

    kind: str
    classes: list[str]
    label_config: str
    document_root: Path
    pool: list[GroundTruthTask]
    test: list[GroundTruthTask]
    test_dataset: Path
    test_groups: list[str]


def prepare(data: Path, config: SimulationConfig, work: Path) -> Replay:
    """Convert, tile, read and split ``data`` (see the module docstring) under ``work``."""
    from converters.images import ImageLoader
    from converters.labelstudio import export_to_dataset

    work.mkdir(parents=True, exist_ok=True)
    source, _ = source_to_dataset(
        data,
        config.kind,
        work / "source",
        label_config=config.label_config,
        images=config.images,
        group_regex=config.group_regex,
        local_root=config.local_root or (Path(data).parent if Path(data).is_file() else None),
    )
    tiled = tile(source, work / "tiles", config.tile, config.overlap)
    root = work / "files"
    tasks, classes, _ = dataset_tasks(tiled, root)
    if not tasks:
        raise ValueError(f"{data}: no task with an image and ground truth")
    test_groups = choose_test_groups(sorted({t.group for t in tasks}), config.test_split, config.seed)
    test = [t for t in tasks if t.group in test_groups]
    pool = [t for t in tasks if t.group not in test_groups]
    config_xml = label_config(config.kind, classes)
    test_dataset = work / "test-dataset"
    report = export_to_dataset(
        [t.task(annotation_id=t.id) for t in test],
        config.kind,
        test_dataset,
        label_config=config_xml,
        images=ImageLoader(local_root=root),
        split="val",
    )
    if not report.converted:
        raise ValueError(f"{data}: the test split could not be converted: {report.skipped[:3]}")
    return Replay(config.kind, classes, config_xml, root, pool, test, test_dataset, test_groups)


def choose_test_groups(groups: Sequence[str], test_split: str, seed: int = 0) -> list[str]:
    """The groups set aside: those named (comma-separated), or a fraction of them (at least one, never
    all) chosen by their hash, so the choice does not depend on the order of the files.

    >>> choose_test_groups(["TCGA-A7-A13E", "TCGA-AR-A1AK", "TCGA-AR-A1AS", "TCGA-E2-A1B5"], "0.25")
    ['TCGA-A7-A13E']
    >>> choose_test_groups(["a", "b", "c"], "b,c")
    ['b', 'c']
    """
    groups = list(groups)
    if len(groups) < 2:
        raise ValueError(
            f"a test split by group needs at least two groups (patients/slides); found "
            f"{len(groups)} ({', '.join(groups)}): pass --group-regex to group otherwise"
        )
    try:
        fraction = float(test_split)
    except ValueError:
        named = [g.strip() for g in test_split.split(",") if g.strip()]
        unknown = [g for g in named if g not in groups]
        if unknown or not named or len(named) == len(groups):
            raise ValueError(
                f"--test-split {test_split!r}: groups are {', '.join(groups)}; name some, not all"
            ) from None
        return named
    if not 0 < fraction < 1:
        raise ValueError(f"--test-split {test_split}: a fraction must be in (0, 1)")
    n = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    return sorted(sorted(groups, key=lambda g: split_fraction(g, seed))[:n])


def simulation_settings(settings: Settings, config: SimulationConfig, store: Path, root: Path) -> Settings:
    """The settings of one ordering's project: its own model store and SQLite registry (never the lab's
    database), the replay's images and the training options. The retraining's validation split is the
    workers' own: by patient (``--group-regex`` when given, else the project's), by tile only when the
    approved tasks hold a single patient (:func:`converters.split.balance`), so that each version chooses
    its score threshold on a patient it did not train on, as it will be served."""
    base = settings.project(PROJECT)
    train = {**base.train, config.kind: {**base.train.get(config.kind, {}), **config.train}}
    project = dataclasses.replace(
        base,
        train=train,
        split_group_regex=config.group_regex or base.split_group_regex,
        retrain_threshold=0,
        min_score=base.min_score if config.min_score is None else config.min_score,
        auto_promote=base.auto_promote if config.auto_promote is None else config.auto_promote,
    )
    return dataclasses.replace(
        settings,
        model_store=store,
        registry_path=store / "registry.sqlite",
        database_url=Secret(""),
        local_files_root=root,
        projects={PROJECT: project},
    )


class Predictor:
    """The backend's predict path for one project: :class:`ml_backend.engine.Engine` over the registry."""

    def __init__(self, settings: Settings, config_xml: str, project: str = PROJECT) -> None:
        from ml_backend.engine import Engine
        from ml_backend.labelconfig import parse_label_config
        from ml_backend.models import ModelCache
        from ml_backend.projects import ProjectState
        from ml_backend.task_images import TaskImages
        from training.registry import Registry

        self.settings, self.project = settings, str(project)
        self.registry = Registry.from_settings(settings)
        self.engine = Engine(settings, ModelCache(self.registry, settings.device), TaskImages(settings))
        self.plan = parse_label_config(config_xml)
        self.state = ProjectState(label_config=config_xml)

    def predict(self, tasks: Sequence[GroundTruthTask]) -> tuple[str, list[dict[str, Any]]]:
        """(model_version, one Label Studio prediction per task)."""
        if not tasks:
            return "", []
        version, predictions, _ = self.engine.predict(
            self.project, [t.task() for t in tasks], self.plan, self.state
        )
        for task, prediction in zip(tasks, predictions, strict=True):
            if prediction.get("error"):
                raise RuntimeError(f"task {task.id} ({task.stem}): no prediction: {prediction['error']}")
        return version, predictions

    def model_version(self) -> str:
        """What the backend serves now (``histoloop-untrained`` before the first promotion)."""
        return self.engine.cache.versions(self.project, list(self.plan.kinds)).model_version


class Loop(Protocol):
    """Where the rounds are played: what predicts a round's tasks and what an approval sets going."""

    predictor: Predictor
    """The held-out test split is predicted and evaluated with this (the same registry as the loop's)."""

    def predict(self, tasks: Sequence[GroundTruthTask]) -> tuple[str, list[dict[str, Any]]]: ...

    def approve(
        self, chosen: list[GroundTruthTask], approved: list[GroundTruthTask], label: str
    ) -> dict[str, Any]:
        """Submit ``chosen`` (corrected to the truth); ``approved`` is every approved task so far. Returns
        what the retraining did (``version``, ``promoted``, ``decision``, ``val``, or ``error``)."""
        ...

    def close(self) -> None: ...


class LocalLoop:
    """The rounds in this process: :class:`Predictor` (Engine.predict) and, on approval,
    :func:`training.lifecycle.retrain_from_tasks` — the functions ``/predict`` and the workers' job run."""

    def __init__(self, replay: Replay, order: str, config: SimulationConfig, settings: Settings, work: Path):
        self.store = work / f"store-{order}"
        shutil.rmtree(self.store, ignore_errors=True)
        self.settings = simulation_settings(settings, config, self.store, replay.document_root)
        self.predictor = Predictor(self.settings, replay.label_config)
        self.replay, self.keep = replay, config.keep_models

    def predict(self, tasks: Sequence[GroundTruthTask]) -> tuple[str, list[dict[str, Any]]]:
        return self.predictor.predict(tasks)

    def approve(
        self, chosen: list[GroundTruthTask], approved: list[GroundTruthTask], label: str
    ) -> dict[str, Any]:
        from training.lifecycle import VersionFailed, retrain_from_tasks

        tasks = [t.task(annotation_id=t.id) for t in approved]
        try:
            done = retrain_from_tasks(
                self.settings,
                self.predictor.registry,
                PROJECT,
                self.replay.kind,
                tasks,
                self.replay.label_config,
                job_id=f"simulate-{label}",
            )
        except VersionFailed as exc:
            log.warning("simulate %s: training failed: %s", label, exc.reason)
            return {"error": exc.reason}
        return {
            "version": done.version.ref,
            "promoted": done.promoted,
            "decision": done.decision,
            "val": _scalars(done.metrics),
        }

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.store, ignore_errors=True)


def count(
    kind: str, tasks: Sequence[GroundTruthTask], predictions: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Corrections per task (by type), from scratch per task, and their ratio, over ``tasks``."""
    done, scratch = Corrections(), Corrections()
    for task, prediction in zip(tasks, predictions, strict=True):
        done += result_corrections(kind, prediction["result"], task.truth, task.width, task.height)
        scratch += from_scratch(kind, regions_of(kind, task.truth, task.width, task.height))
    n = max(len(tasks), 1)
    per_task = {k: v / n for k, v in done.as_dict().items() if k in SCORES}
    scratch_per_task = {k: v / n for k, v in scratch.as_dict().items() if k in SCORES}
    return {
        "tasks": len(tasks),
        "per_task": per_task,
        "scratch_per_task": scratch_per_task,
        "objects_per_task": scratch.objects / n,
        "ratio": done.total / scratch.total if scratch.total else None,
        "fewer_x": scratch.total / done.total if done.total else None,
        "pixel_ratio": done.pixels / scratch.pixels if scratch.pixels else None,
        "seconds_per_task": seconds(kind, done) / n,
        "scratch_seconds_per_task": seconds(kind, scratch) / n,
        "time_ratio": seconds(kind, done) / seconds(kind, scratch) if scratch.total else None,
    }


def order_tasks(
    order: str,
    remaining: list[GroundTruthTask],
    k: int,
    rng_order: dict[int, int],
    predict: Callable[[list[GroundTruthTask]], tuple[str, list[dict[str, Any]]]],
) -> tuple[list[GroundTruthTask], str, list[dict[str, Any]]]:
    """The next ``k`` tasks by ``order``, the model version that predicted them and their predictions."""
    if order == "sequential":
        chosen = remaining[:k]
    elif order == "random":
        chosen = sorted(remaining, key=lambda t: rng_order[t.id])[:k]
    else:  # uncertainty: the whole remaining pool predicted, lowest task score first
        version, predictions = predict(remaining)
        ranked = sorted(
            range(len(remaining)), key=lambda i: (predictions[i]["score"], rng_order[remaining[i].id])
        )
        picked = ranked[:k]
        return [remaining[i] for i in picked], version, [predictions[i] for i in picked]
    version, predictions = predict(chosen)
    return chosen, version, predictions


def _write_predictions(
    path: Path, tasks: Sequence[GroundTruthTask], predictions: Sequence[dict[str, Any]]
) -> None:
    """What the specialist was shown: the tasks with their predictions, as a Label Studio import file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        json.dumps([{**t.task(), "predictions": [p]} for t, p in zip(tasks, predictions, strict=True)])
    )
    tmp.replace(path)


def _scalars(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The numbers of an evaluation, and, where it chose a threshold, the corrections per true object at
    that threshold (``corrections_ratio``) and at each one tried: on the test split, what the version
    would have cost had its threshold been chosen on the test patient itself."""
    metrics = metrics or {}
    out = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if isinstance(metrics.get("corrections"), dict):
        out["corrections_ratio"] = metrics["corrections"].get("ratio_to_scratch")
    if isinstance(metrics.get("ratio_by_threshold"), dict):
        out["ratio_by_threshold"] = metrics["ratio_by_threshold"]
    return out


def held_out(replay: Replay, predictor: Predictor) -> dict[str, Any]:
    """The production's corrections and metrics on the test split (no metrics without a production)."""
    from training.evaluate import evaluate

    _, predictions = predictor.predict(replay.test)
    out = count(replay.kind, replay.test, predictions)
    production = predictor.registry.production(predictor.project, replay.kind)
    if production is not None and production.artifact_dir is not None:
        out["metrics"] = _scalars(
            evaluate(
                production.artifact_dir, replay.test_dataset, split="val", device=predictor.settings.device
            )
        )
    else:
        out["metrics"] = {}
    return out


def play(
    replay: Replay,
    order: str,
    config: SimulationConfig,
    loop: Loop,
    out_dir: Path,
    emit: Callable[[dict[str, Any]], None],
    advance: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One ordering's rounds on ``loop`` (see the module docstring); each row is passed to ``emit`` as it is
    made. What each round's tasks were shown goes to ``out_dir/predictions/<order>-round<N>.json``."""
    rng = np.random.default_rng(config.seed)
    rng_order = {t.id: int(i) for t, i in zip(replay.pool, rng.permutation(len(replay.pool)), strict=True)}
    rounds = min(config.rounds or len(replay.pool), math.ceil(len(replay.pool) / config.per_round))
    remaining, approved = list(replay.pool), list[GroundTruthTask]()
    rows: list[dict[str, Any]] = []
    for number in range(1, rounds + 2):
        last = number == rounds + 1 or not remaining
        started = time.perf_counter()
        row: dict[str, Any] = {
            "kind": replay.kind,
            "order": order,
            "round": number,
            "trained_on": len(approved),
        }
        chosen: list[GroundTruthTask] = []
        if not last:
            chosen, version, predictions = order_tasks(
                order, remaining, config.per_round, rng_order, loop.predict
            )
            row["model_version"] = version
            row["round_tasks"] = count(replay.kind, chosen, predictions)
            _write_predictions(out_dir / "predictions" / f"{order}-round{number}.json", chosen, predictions)
        else:
            row["model_version"] = loop.predictor.model_version()
        t0 = time.perf_counter()
        row["test"] = held_out(replay, loop.predictor)
        row["test_s"] = time.perf_counter() - t0
        if chosen:
            ids = {t.id for t in chosen}
            remaining = [t for t in remaining if t.id not in ids]
            approved += chosen
            row["approved"] = len(approved)
            t0 = time.perf_counter()
            row["training"] = loop.approve(chosen, approved, f"{order}-{number}")
            row["training"]["seconds"] = time.perf_counter() - t0
        row["wall_s"] = time.perf_counter() - started
        rows.append(row)
        emit(row)
        if advance is not None:
            advance(f"{order} round {number}")
        if last:
            break
    return rows


def simulate(
    data: Path,
    config: SimulationConfig,
    settings: Settings,
    out_dir: Path,
    *,
    progress: bool = True,
    work: Path | None = None,
    make_loop: Callable[[Replay, str], Loop] | None = None,
) -> list[dict[str, Any]]:
    """Play every ordering of ``config`` on ``data``; rows in ``out_dir/rounds.jsonl``, the curve in
    ``out_dir/curve.png``. Returns the rows.

    ``work``: where the tiles and model stores go (default ``out_dir/work``); ``make_loop(replay, order)``:
    where the rounds are played (default: :class:`LocalLoop`, in this process)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(work) if work is not None else out_dir / "work"
    replay = prepare(Path(data), config, work)
    log.info(
        "simulate %s: %d tasks to approve, %d held out (groups %s)",
        config.kind,
        len(replay.pool),
        len(replay.test),
        ", ".join(replay.test_groups),
    )
    rows_path = out_dir / "rounds.jsonl"
    rows_path.write_text("")

    def emit(row: dict[str, Any]) -> None:
        with rows_path.open("a") as f:
            f.write(json.dumps(row, default=_json_default) + "\n")

    rounds = min(config.rounds or len(replay.pool), math.ceil(len(replay.pool) / config.per_round))
    rows: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        job = bar.add_task("simulate", total=len(config.orders) * (rounds + 1))
        for order in config.orders:
            loop = make_loop(replay, order) if make_loop else LocalLoop(replay, order, config, settings, work)
            try:
                rows += play(
                    replay,
                    order,
                    config,
                    loop,
                    out_dir,
                    emit,
                    lambda what: bar.update(job, advance=1, description=what),
                )
            finally:
                loop.close()
    summary = {
        "kind": config.kind,
        "pool": len(replay.pool),
        "test": len(replay.test),
        "test_groups": replay.test_groups,
        "classes": replay.classes,
        "config": dict(dataclasses.asdict(config).items()),
        "rows": rows,
    }
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=_json_default))
    tmp.replace(out_dir / "summary.json")
    learning_curve(rows, out_dir / "curve.png")
    if not config.keep_models and make_loop is None:  # a Label Studio project keeps showing its images
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def learning_curve(rows: list[dict[str, Any]], path: Path) -> Path:
    """Corrections per task (held-out test split; the round's own tasks dashed; dotted, the test split at
    the threshold best for it) and the held-out primary metric, against the approved tasks the serving
    model learned from; one line per ordering."""
    from training.plots import _figure, _save

    plt = _figure()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    kind = rows[0]["kind"] if rows else "detect"
    metric = PRIMARY_METRIC[check_kind(kind)]
    colours = {"random": "tab:blue", "sequential": "tab:green", "uncertainty": "tab:red"}
    scratch = None
    for order in dict.fromkeys(r["order"] for r in rows):
        mine = [r for r in rows if r["order"] == order]
        x = [r["trained_on"] for r in mine]
        c = colours.get(order)
        left.plot(
            x, [r["test"]["per_task"]["total"] for r in mine], "o-", color=c, label=f"{order}: test split"
        )
        xr = [r["trained_on"] for r in mine if "round_tasks" in r]
        left.plot(
            xr,
            [r["round_tasks"]["per_task"]["total"] for r in mine if "round_tasks" in r],
            "s--",
            color=c,
            alpha=0.6,
            label=f"{order}: the round's tasks",
        )
        oracle = [
            (r["trained_on"], r["test"]["metrics"]["corrections_ratio"] * r["test"]["objects_per_task"])
            for r in mine
            if r["test"]["metrics"].get("corrections_ratio") is not None
        ]
        if oracle:
            left.plot(
                *zip(*oracle, strict=True),
                "x:",
                color=c,
                alpha=0.8,
                label=f"{order}: test split, at its own best threshold",
            )
        right.plot(x, [r["test"]["metrics"].get(metric, np.nan) for r in mine], "o-", color=c, label=order)
        scratch = mine[0]["test"]["scratch_per_task"]["total"]
    if scratch is not None:
        left.axhline(scratch, color="grey", ls=":", label="from scratch (test split)")
        left.axhline(scratch / 5, color="black", ls=":", lw=0.8, label="5x fewer")
    left.set_yscale("symlog", linthresh=1.0)
    left.set(
        xlabel="approved tasks the model learned from",
        ylabel="corrections per task (symlog)",
        title=f"{kind}: a specialist's corrections",
    )
    right.set(
        xlabel="approved tasks the model learned from",
        ylabel=f"held-out {metric}",
        title=f"{kind}: held-out {metric} (test split)",
        ylim=(0, 1),
    )
    right.set_xlim(left.get_xlim())
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.grid(alpha=0.3)
    return _save(fig, path)


def table(rows: list[dict[str, Any]]) -> Any:
    """A rich table of the rows: one line per round and ordering."""
    from rich.table import Table

    kind = rows[0]["kind"] if rows else "detect"
    metric = PRIMARY_METRIC[check_kind(kind)]
    t = Table(title=f"histoloop simulate ({kind})")
    for name in (
        "order",
        "round",
        "learned from",
        "round: corr/task",
        "× fewer",
        "test: corr/task",
        "added",
        "deleted",
        "adjusted",
        "relabelled",
        "× fewer (test)",
        "est. time (test)",
        f"test {metric}",
        "train s",
    ):
        t.add_column(name, justify="left" if name == "order" else "right")
    for r in rows:
        test, rt = r["test"], r.get("round_tasks")
        t.add_row(
            r["order"],
            str(r["round"]),
            str(r["trained_on"]),
            f"{rt['per_task']['total']:.2f}" if rt else "-",
            _x(rt) if rt else "-",
            f"{test['per_task']['total']:.2f}",
            *(f"{test['per_task'][k]:.2f}" for k in ("added", "deleted", "adjusted", "relabelled")),
            _x(test),
            _time(test),
            f"{test['metrics'].get(metric, float('nan')):.3f}",
            f"{r['training']['seconds']:.0f}" if "training" in r else "-",
        )
    return t


def _time(counted: dict[str, Any]) -> str:
    """A specialist's estimated seconds per task and their share of drawing from scratch."""
    if counted.get("time_ratio") is None:
        return "-"
    return f"{counted['seconds_per_task']:.0f} s ({counted['time_ratio']:.2f})"


def _x(counted: dict[str, Any]) -> str:
    if counted.get("fewer_x") is not None:
        return f"{counted['fewer_x']:.2f}×"
    return "∞" if counted.get("ratio") == 0 else "-"


__all__ = [
    "ORDERS",
    "Replay",
    "SimulationConfig",
    "choose_test_groups",
    "count",
    "learning_curve",
    "play",
    "prepare",
    "simulate",
    "table",
]
