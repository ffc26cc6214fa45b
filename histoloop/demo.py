"""The demo: the whole loop on one machine, with a real Label Studio and a first model per kind.

``histoloop demo`` (and the end-to-end tests) use these steps:

1. :func:`write_tiles` — the images: the user's own (``--images DIR``) or generated H&E-like tiles.
2. :func:`create_projects` — one Label Studio project per model kind (tumor boxes, tumor masks,
   benign/malignant), a local-files storage, the tasks.
3. :func:`bootstrap` — a first model version per project, trained on labelled synthetic tiles through the
   same path the workers use (Label Studio-format annotations → converters → trainer → registry), promoted.
4. :func:`connect_backend` — the ML backend connected (Label Studio creates the webhook itself) and
   predictions retrieved for every task.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from PIL import Image

from converters.synthetic import Tile, make_tile
from kernel.kinds import CORRECTIONS_RATIO, KINDS
from kernel.settings import Settings

if TYPE_CHECKING:
    from training.base import Progress

log = logging.getLogger(__name__)

TUMOR = "Tumor"
CHOICES = {"benign": "Benign", "malignant": "Malignant"}


def _box_regions(tile: Tile, from_name: str) -> list[dict[str, Any]]:
    from converters.predictions import boxes_to_results

    h, w = tile.mask.shape
    boxes = np.array(tile.boxes, dtype=np.float32).reshape(-1, 4)
    return boxes_to_results(boxes, np.ones(len(boxes)), [TUMOR] * len(boxes), w, h, from_name, "image")


def _mask_regions(tile: Tile, from_name: str) -> list[dict[str, Any]]:
    from converters.predictions import mask_to_brush_result

    return [mask_to_brush_result(tile.mask, TUMOR, 1.0, from_name, "image")] if tile.mask.any() else []


def _choice_regions(tile: Tile, from_name: str) -> list[dict[str, Any]]:
    from converters.predictions import choices_result

    return [choices_result(CHOICES[tile.label], 1.0, from_name, "image")]


@dataclass(frozen=True)
class DemoProject:
    """The demo's project of one kind: its Label Studio project, how a generated tile's exact label is
    annotated in it (``annotate(tile, from_name)``), and the held-out metrics a first version is shown by."""

    kind: str
    title: str
    label_config: str
    from_name: str
    annotate: Callable[[Tile, str], list[dict[str, Any]]]
    headline: tuple[str, ...]
    interactive: bool = False
    """Its label config has smart tools: the backend is connected for interactive pre-annotation."""


SMART_TOOLS = (
    f'<KeyPointLabels name="click" toName="image" smart="true" smartOnly="true">'
    f'<Label value="{TUMOR}" smart="true" background="blue"/></KeyPointLabels>'
    f'<RectangleLabels name="box" toName="image" smart="true" smartOnly="true">'
    f'<Label value="{TUMOR}" smart="true" background="blue"/></RectangleLabels>'
)
"""A click and a box that only prompt (Auto-Annotation on): the answer is a mask in the brush control."""

PROJECTS = {
    "detect": DemoProject(
        "detect",
        "histoloop demo: tumor boxes",
        '<View><Image name="image" value="$image" zoom="true"/>'
        f'<RectangleLabels name="tumor_box" toName="image"><Label value="{TUMOR}" background="red"/>'
        "</RectangleLabels></View>",
        "tumor_box",
        _box_regions,
        ("mAP50", "recall"),
    ),
    "segment": DemoProject(
        "segment",
        "histoloop demo: tumor masks",
        '<View><Image name="image" value="$image" zoom="true"/>'
        f'<BrushLabels name="tumor_mask" toName="image"><Label value="{TUMOR}" background="blue"/>'
        f"</BrushLabels>{SMART_TOOLS}</View>",
        "tumor_mask",
        _mask_regions,
        ("dice", "object_f1"),
        interactive=True,
    ),
    "classify": DemoProject(
        "classify",
        "histoloop demo: benign / malignant",
        '<View><Image name="image" value="$image"/><Choices name="diagnosis" toName="image" choice="single">'
        + "".join(f'<Choice value="{c}"/>' for c in CHOICES.values())
        + "</Choices></View>",
        "diagnosis",
        _choice_regions,
        ("balanced_accuracy", "roc_auc"),
    ),
}


# small enough to train in a few minutes at most on a laptop CPU, good enough to show suggestions.
# detect: yolo11n from its YAML on the 256 px tiles shrunk to 128 px (a tumor nest stays 20-55 px wide), not cut
# into 128 px tiles (nine times the images per epoch), without ultralytics' 3 warm-up epochs (with 5 batches an
# epoch they were a tenth of the training). It suggests nothing for about 30 epochs, then learns: held-out
# mAP@0.5 0.86 after 60 (BENCHMARKS.md, "The demo's first boxes"); the old 30 epochs at 256 px on 16 tiles
# left mAP@0.5 0 and suggested nothing.
DEMO_TRAINING: dict[str, dict[str, Any]] = {
    "detect": {
        "model": "yolo11n.yaml",
        "epochs": 60,
        "batch": 8,
        "imgsz": 128,
        "extra": {"tile": False, "ultralytics": {"warmup_epochs": 0}},
    },
    "segment": {"epochs": 6, "batch": 4, "imgsz": 128, "model": "resnet18"},
    "classify": {"epochs": 20, "batch": 8, "imgsz": 64, "model": "resnet18"},
}
DEMO_TILES = {"detect": 48, "segment": 16, "classify": 48}
"""Generated tiles (two per patient) a first version learns from; its patient-level validation split (a fifth
of the patients) is where its held-out score and its served score threshold come from. A detector from
random weights needs more boxes than a segmenter needs pixels: 16 tiles held 4-5 nests to train on. The
classifier learnt nothing from 16 tiles in 6 epochs (balanced accuracy 0.5 on its 2 validation tiles); 48
tiles and 20 epochs at 64 px take ~30 s and label 40 tiles of new patients right."""


def write_tiles(
    directory: Path, count: int, size: int = 256, seed: int = 0, site: str = "DE", first_patient: int = 1000
) -> list[tuple[Path, Tile]]:
    """Generate ``count`` H&E-like tiles as PNG (alternately malignant and benign), with their labels; two
    tiles per patient, named ``TCGA-<site>-<first_patient + i // 2>``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        tile = make_tile(seed=seed + i, size=size, malignant=i % 2 == 0)
        # a patient-like stem, so the patient-level split has groups to split by
        path = directory / f"TCGA-{site}-{first_patient + i // 2:04d}-01Z-00-DX{i % 2 + 1}.png"
        Image.fromarray(tile.image).save(path)
        out.append((path, tile))
    return out


SEEDED_TILES = 30
"""Labelled tasks each demo project starts with: a colleague's approved annotations of new synthetic
patients (two tiles each). The first retraining's patient-level validation split is drawn from them and
the user's tasks together: several tiles that no version trained on (BENCHMARKS.md, "The demo's first
retraining under if_better")."""


def seed_tiles(
    directory: Path, count: int = SEEDED_TILES, seed: int = 0, val_fraction: float = 0.2
) -> list[tuple[Path, Tile]]:
    """The seeded tasks' tiles, two per patient ``TCGA-CO-*`` (neither the first versions' nor the shown
    tiles' patients). The split is by the hash of the patient (:mod:`converters.split`); the patients are
    picked so that ``val_fraction`` of them hash into the validation split, as many do on average: with 12
    patients the validation split could otherwise hold 1 or 6 of them, by chance."""
    from converters.split import SplitOptions, split_of_group

    options = SplitOptions(val_fraction=val_fraction)
    patients = count // 2
    want = {"val": max(1, round(patients * val_fraction)), "train": 0}
    want["train"] = patients - want["val"]
    picked: list[int] = []
    number = 2000 + 100 * seed
    while len(picked) < patients:
        side = split_of_group(f"TCGA-CO-{number:04d}", options)
        if want.get(side, 0) > 0:
            want[side] -= 1
            picked.append(number)
        number += 1
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        tile = make_tile(seed=5000 + 1000 * seed + i, size=256, malignant=i % 2 == 0)
        path = directory / f"TCGA-CO-{picked[i // 2]:04d}-01Z-00-DX{i % 2 + 1}.png"
        Image.fromarray(tile.image).save(path)
        out.append((path, tile))
    return out


def annotation_result(kind: str, tile: Tile) -> list[dict[str, Any]]:
    """The exact label of a synthetic tile as a Label Studio annotation result (what a pathologist submits)."""
    project = PROJECTS[kind]
    regions = project.annotate(tile, project.from_name)
    for region in regions:
        region.pop("score", None)
    return regions


def local_files_url(path: Path, document_root: Path) -> str:
    return f"/data/local-files/?d={path.resolve().relative_to(document_root.resolve()).as_posix()}"


def labelled_tasks(
    kind: str, tiles: list[tuple[Path, Tile]], document_root: Path, first_id: int = 1
) -> list[dict[str, Any]]:
    """Label Studio tasks (as an export has them) of ``tiles``, each with its exact label as one submitted
    annotation; ids from ``first_id``."""
    return [
        {
            "id": first_id + i,
            "data": {"image": local_files_url(path, document_root)},
            "annotations": [
                {
                    "id": first_id + i,
                    "result": annotation_result(kind, tile),
                    "was_cancelled": False,
                    "ground_truth": False,
                    "completed_by": 1,
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            ],
        }
        for i, (path, tile) in enumerate(tiles)
    ]


def bootstrap(
    settings: Settings,
    project: str,
    kind: str,
    tiles: list[tuple[Path, Tile]],
    document_root: Path,
    progress: Any = None,
) -> Any:
    """Train, register and promote a first version for ``project`` from labelled tiles.

    The tiles' exact labels become Label Studio annotations, which go through the workers' own
    convert → train → evaluate → register path; the training options are the project's ``train`` setting.
    ``progress``: the training's progress callback (:class:`BootstrapBar`).
    """
    from training.lifecycle import retrain_from_tasks
    from training.registry import Registry

    tasks = labelled_tasks(kind, tiles, document_root)
    settings = dataclasses.replace(
        settings,
        local_files_root=document_root,
        project_defaults=dataclasses.replace(settings.project_defaults, auto_promote="always"),
        projects={},
    )
    registry = Registry.from_settings(settings)
    done = retrain_from_tasks(
        settings,
        registry,
        project,
        kind,
        tasks,
        PROJECTS[kind].label_config,
        progress=progress,
        job_id="demo-bootstrap",
    )
    log.info("bootstrap %s/%s: %s", project, kind, done.decision)
    return done.version


class BootstrapBar:
    """One progress bar for a first version: every batch of every epoch, then the pipeline's stages.

    A :class:`training.base.StageProgress`: the training reports its batches, the pipeline its stages.
    """

    def __init__(self, description: str, file: TextIO | None = None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=description, total=1, unit="batch", file=file, dynamic_ncols=True, leave=True)

    def __call__(self, progress: Progress) -> None:
        if progress.stage not in ("train", "val") or not progress.epochs:
            return
        steps = progress.steps or self.bar.total // progress.epochs or 1
        total = progress.epochs * steps
        done = (
            (progress.epoch - 1) * steps + progress.step
            if progress.stage == "train"
            else progress.epoch * steps
        )
        self.bar.total = max(total, done)
        self.bar.n = done
        if progress.stage == "train":
            loss = f", loss {progress.loss:.3f}" if progress.loss is not None else ""
            self.bar.set_postfix_str(f"epoch {progress.epoch}/{progress.epochs}{loss}")  # refreshes
        else:
            self.bar.refresh()

    def stage(self, stage: str, **extra: Any) -> None:
        if stage != "train":
            self.bar.set_postfix_str(stage)

    def close(self) -> None:
        self.bar.close()


def bootstrap_on_console(
    settings: Settings,
    project: str,
    kind: str,
    tiles: list[tuple[Path, Tile]],
    document_root: Path,
    *,
    verbose: bool = False,
    file: TextIO | None = None,
) -> Any:
    """:func:`bootstrap` as the demo shows it: one progress bar, then the held-out score; with ``verbose``
    the log instead of the bar (ultralytics' own tables too, unless ``YOLO_VERBOSE`` is false)."""
    out = file or sys.stderr
    description = f"first {kind} model, project {project}"
    if verbose:
        print(f"Training the {description} on synthetic tiles...", file=out, flush=True)
        version = bootstrap(settings, project, kind, tiles, document_root)
    else:
        from tqdm.contrib.logging import logging_redirect_tqdm

        bar = BootstrapBar(description, file=out)
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # the pipeline's INFO lines would break the bar
        try:
            with logging_redirect_tqdm():
                version = bootstrap(settings, project, kind, tiles, document_root, progress=bar)
        finally:
            root.setLevel(level)
            bar.close()
    print(f"  {version.ref}: {bootstrap_score(kind, version.metrics)}", file=out, flush=True)
    return version


def bootstrap_score(kind: str, metrics: dict[str, Any]) -> str:
    """One line on a first version's held-out metrics (generated tiles of patients it never saw).

    >>> bootstrap_score("detect", {"mAP50": 0.61, "recall": 0.7, "score_threshold": 0.3})
    'held-out mAP50 0.610, recall 0.700; suggestions from score 0.30'
    >>> bootstrap_score("classify", {"balanced_accuracy": 0.9, "corrections_ratio": 0.25})
    'held-out balanced_accuracy 0.900; corrections 0.25× of labelling from scratch'
    """
    parts = [
        f"{k} {metrics[k]:.3f}" for k in PROJECTS[kind].headline if isinstance(metrics.get(k), int | float)
    ]
    line = "held-out " + ", ".join(parts) if parts else "no held-out metrics"
    if isinstance(metrics.get("score_threshold"), int | float):
        line += f"; suggestions from score {metrics['score_threshold']:.2f}"
    ratio = metrics.get(CORRECTIONS_RATIO)
    if isinstance(ratio, int | float) and not isinstance(ratio, bool):
        line += f"; corrections {ratio:.2f}× of labelling from scratch"
    return line


def create_projects(
    client: Any, document_root: Path, images: list[Path], kinds: tuple[str, ...]
) -> dict[str, int]:
    """One Label Studio project per kind, each with a local-files storage and one task per image."""
    ids = {}
    for kind in kinds:
        spec = PROJECTS[kind]
        project = client.projects.create(title=spec.title, label_config=spec.label_config)
        folder = images[0].parent.resolve()
        client.import_storage.local.create(
            project=project.id, path=str(folder), use_blob_urls=True, title="slides"
        )
        client.projects.import_tasks(
            project.id, request=[{"image": local_files_url(p, document_root)} for p in images]
        )
        ids[kind] = project.id
    return ids


def seed_projects(
    client: Any, ids: dict[str, int], document_root: Path, tiles: list[tuple[Path, Tile]]
) -> None:
    """Import ``tiles`` into each project with their exact labels as submitted annotations (a colleague's
    approved work): what the first retraining validates on besides the user's own tasks."""
    folder = tiles[0][0].parent.resolve()
    for kind, pid in ids.items():
        client.import_storage.local.create(project=pid, path=str(folder), use_blob_urls=True, title="seeded")
        client.projects.import_tasks(
            pid,
            request=[
                {
                    "data": {"image": local_files_url(path, document_root)},
                    "annotations": [{"result": annotation_result(kind, tile)}],
                }
                for path, tile in tiles
            ],
        )


def connect_backend(client: Any, project_id: int, backend_url: str, interactive: bool = False) -> int:
    """Connect histoloop as the project's ML backend (``interactive``: for its smart tools too); returns
    its id in Label Studio."""
    backend = client.ml.create(
        project=project_id, url=backend_url, title="histoloop", is_interactive=interactive
    )
    return backend.id


def retrieve_predictions(client: Any, project_id: int) -> None:
    client.actions.create(
        id="retrieve_tasks_predictions", project=project_id, selected_items={"all": True, "excluded": []}
    )


def training_config_toml(training: dict[str, dict[str, Any]], **top: Any) -> str:
    """A histoloop config file (TOML) with per-kind retraining options, for the demo's worker."""

    def value(v: Any) -> str:
        if isinstance(v, dict):  # an inline table: extra = { tile = false, ultralytics = { ... } }
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    lines = [f"{k} = {value(v)}" for k, v in top.items()]
    for kind, options in training.items():
        lines += ["", f"[train.{kind}]", *(f"{k} = {value(v)}" for k, v in options.items())]
    return "\n".join(lines) + "\n"


def _credentials(path: Path) -> dict[str, str]:
    """The demo's admin login and API token: made once, kept (0600) so a second run reuses its Label Studio."""
    import json
    import secrets

    if path.is_file():
        return json.loads(path.read_text())
    creds = {
        "username": "admin@example.com",
        "password": secrets.token_urlsafe(10),
        "token": secrets.token_hex(20),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(creds))
    return creds


def run_demo(
    settings: Settings,
    *,
    images: Path | None = None,
    count: int = 12,
    ls_port: int = 8080,
    backend_port: int = 9090,
    label_studio_venv: Path | None = None,
    kinds: tuple[str, ...] = KINDS,
    wait: Any = None,
    verbose: bool = False,
) -> None:
    """Start everything, set up the demo projects, print the URL and login, run until ``wait()`` returns.

    ``verbose``: the first versions' training logs instead of one progress bar each."""
    from histoloop.labelstudio import LabelStudioServer
    from histoloop.stack import Stack, settings_env
    from training.registry import Registry
    from workers.redis_server import ensure_redis

    demo = settings.model_store / "demo"
    if images is not None:
        paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not paths:
            raise ValueError(f"{images}: no PNG/JPEG images (Label Studio shows PNG/JPEG in the browser)")
        document_root = Path(images).resolve().parent
    else:
        document_root = demo / "files"
        paths = [p for p, _ in write_tiles(document_root / "images", count, seed=100)]
    train_root = demo / "train"
    train_tiles = write_tiles(train_root / "images", max(DEMO_TILES[k] for k in kinds), seed=1000)

    creds = _credentials(demo / "credentials.json")
    redis = ensure_redis(settings.redis_url)
    ls = LabelStudioServer(
        venv=label_studio_venv or settings.model_store / "label-studio-venv",
        data_dir=demo / "label-studio",
        document_root=document_root,
        port=ls_port,
        username=creds["username"],
        password=creds["password"],
        token=creds["token"],
    )
    config_file = demo / "histoloop.toml"
    config_file.write_text(training_config_toml(DEMO_TRAINING, retrain_threshold=4))
    env = settings_env(
        {
            "HISTOLOOP_CONFIG": str(config_file),
            "HISTOLOOP_MODEL_STORE": str(settings.model_store),
            "HISTOLOOP_REDIS_URL": settings.redis_url,
            "HISTOLOOP_LABEL_STUDIO_URL": ls.url,
            "HISTOLOOP_LABEL_STUDIO_API_KEY": creds["token"],
            "HISTOLOOP_LOCAL_FILES_ROOT": str(document_root),
        }
    )
    stack = Stack(env=env, log_dir=demo / "logs")
    try:
        print(f"Starting Label Studio {ls.url} (first run installs it into {ls.venv}: about a minute)...")
        ls.start()
        client = ls.client()
        existing = {p.title: p.id for p in client.projects.list()}
        missing = tuple(k for k in kinds if PROJECTS[k].title not in existing)
        ids = {k: existing[PROJECTS[k].title] for k in kinds if k not in missing}
        created = create_projects(client, document_root, paths, missing) if missing else {}
        if created and images is None:  # generated tiles: their patients' exact labels are known
            seed_projects(client, created, document_root, seed_tiles(document_root / "seeded"))
        ids |= created
        registry = Registry.from_settings(settings)
        demo_settings = dataclasses.replace(
            settings, project_defaults=dataclasses.replace(settings.project_defaults, train=DEMO_TRAINING)
        )
        for kind, pid in ids.items():
            if registry.production(str(pid), kind) is None:
                tiles = train_tiles[: DEMO_TILES[kind]]
                bootstrap_on_console(demo_settings, str(pid), kind, tiles, train_root, verbose=verbose)
        backend_url = f"http://127.0.0.1:{backend_port}"
        stack.backend("127.0.0.1", backend_port)
        stack.worker(device=settings.device if settings.device != "auto" else "cpu")
        for kind, pid in ids.items():
            if kind in missing:
                connect_backend(client, pid, backend_url, interactive=PROJECTS[kind].interactive)
            retrieve_predictions(client, pid)
        print(
            f"\nhistoloop demo is running.\n  Label Studio: {ls.url}  (login {creds['username']} / "
            f"{creds['password']})\n  backend:      {backend_url}\n  projects:     "
            + ", ".join(f"{ls.url}/projects/{pid}/data ({kind})" for kind, pid in ids.items())
            + f"\n  logs:         {stack.log_dir}\nAnnotate a few tasks: after 4 new annotations a project retrains "
            "on them and the labelled tasks it started with, and the decision is printed here "
            "(`histoloop jobs list`, `histoloop models list`). Ctrl-C stops everything.\n"
        )
        seen = {v.id for v in registry.list()}
        (wait or (lambda: _watch_decisions(registry, seen)))()
    finally:
        stack.stop()
        ls.stop()
        if redis is not None:
            redis.stop()


def new_decisions(registry: Any, seen: set[int]) -> list[str]:
    """One line for each version trained since ``seen`` (ids, updated): the promotion gate's decision on it,
    or why its training failed."""
    lines = []
    for v in registry.list():
        if v.id in seen or (v.reason is None and v.status == "candidate"):  # not decided yet
            continue
        seen.add(v.id)
        lines.append(f"retrained {v.ref}: {v.reason or v.status}")
    return lines


def _watch_decisions(registry: Any, seen: set[int], interval_s: float = 2.0) -> None:
    """Until Ctrl-C: print each retraining's outcome as the workers record it."""
    import time

    try:
        while True:
            for line in new_decisions(registry, seen):
                print(line, flush=True)
            time.sleep(interval_s)
    except KeyboardInterrupt:
        print("\nstopping...")
