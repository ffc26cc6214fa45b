"""``histoloop slides ...``: whole-slide images into Label Studio tasks, models over whole slides, and
annotations back onto the slides.

    histoloop slides import S1.svs S2.tif --project 4 --size 1024 --mpp 0.5 [--per-slide 50 | --stride 512]
    histoloop slides predict S1.svs --project 4 --kind segment --out results/
    histoloop slides export --project 4 --out annotations/

A slide that cannot be read is reported by name and the others go on; the command exits 1 only when no
slide could be done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from histoloop.cli import options
from kernel.settings import Settings

console = Console(stderr=True, highlight=False)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    )


def _client(settings: Settings) -> Any:
    """label_studio_sdk's client of the one Label Studio client (:mod:`converters.lsclient`)."""
    from converters.lsclient import LabelStudioClient, LabelStudioError

    try:
        return LabelStudioClient.from_settings(settings, timeout=300).sdk
    except LabelStudioError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("slides")
def slides() -> None:
    """Whole-slide images: import fields as tasks, predict over slides, export annotations to GeoJSON."""


@slides.command("import")
@click.argument("slide_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@options.project(number=True)
@click.option(
    "--size", type=click.IntRange(16, 16384), default=1024, show_default=True, help="Field side (px)."
)
@click.option("--mpp", type=float, default=0.5, show_default=True, help="Field resolution (µm/px).")
@click.option(
    "--stride", type=int, default=None, help="Grid stride in field px (default: --size, no overlap)."
)
@click.option("--per-slide", type=int, default=None, help="Fields drawn at random per slide (default: all).")
@click.option("--min-tissue", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--subdir", default="slides", show_default=True, help="Folder under the local-files root.")
@options.group_regex
@options.local_root()
@click.option("--seed", type=int, default=0, show_default=True)
@options.reader
@options.slide_mpp
@options.json_output
@click.pass_obj
def import_(
    settings: Settings,
    slide_files: tuple[Path, ...],
    project: int,
    size: int,
    mpp: float,
    stride: int | None,
    per_slide: int | None,
    min_tissue: float,
    subdir: str,
    group_regex: str | None,
    local_root: str | None,
    seed: int,
    reader: str,
    slide_mpp: float | None,
    as_json: bool,
) -> None:
    """Cut tissue fields from SLIDE_FILES and create one task per field in the project.

    The fields are written under the local-files root, in --subdir, which must lie inside the root."""
    from histoloop.slides import fields_folder, import_slides

    root = local_root or settings.local_files_root
    if root is None:
        raise click.UsageError("no local-files root: pass --local-root or set HISTOLOOP_LOCAL_FILES_ROOT")
    try:
        fields_folder(root, subdir)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--subdir") from None
    client = _client(settings)
    with _bar() as bar:
        tid = bar.add_task("slides", total=None)

        def progress(name: str, done: int, total: int) -> None:
            bar.update(tid, description=name, completed=done, total=total)

        report = import_slides(
            client,
            project,
            list(slide_files),
            root,
            size=size,
            mpp=mpp,
            stride=stride,
            per_slide=per_slide,
            min_tissue=min_tissue,
            subdir=subdir,
            group_regex=group_regex,
            reader=reader,
            slide_mpp=slide_mpp,
            seed=seed,
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=1))
    else:
        click.echo(report.summary())
    if report.slides == 0:
        sys.exit(1)


@slides.command("predict")
@click.argument("slide_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@options.project(number=True)
@options.kind()
@click.option("--version", "ref", default=None, help="A version (4/segment/v3) instead of production.")
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=Path("slide-predictions"), show_default=True
)
@click.option("--mpp", type=float, default=None, help="Resolution to predict at (default: the model's).")
@click.option("--field-size", type=int, default=None, help="Field side in px (default: 4 × the model input).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="segment: mask threshold.")
@options.min_score
@options.device
@options.reader
@options.slide_mpp
@click.pass_obj
def predict(
    settings: Settings,
    slide_files: tuple[Path, ...],
    project: int,
    kind: str,
    ref: str | None,
    out_dir: Path,
    mpp: float | None,
    field_size: int | None,
    threshold: float,
    min_score: float | None,
    device: str | None,
    reader: str,
    slide_mpp: float | None,
) -> None:
    """Run the project's production model over the tissue of SLIDE_FILES: GeoJSON + overlay per slide."""
    from converters.slides import SlideError
    from histoloop.cli.stores import NoRegistry, read_registry
    from training.registry import RegistryError
    from training.runtime import resolve_device
    from training.slides import predict_slide
    from training.versions import load_model

    try:
        registry = read_registry(settings)
        version = registry.get(ref) if ref else registry.production(str(project), kind)
    except NoRegistry:
        if ref:
            raise
        version = None
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    if version is None or version.artifact_dir is None:
        raise click.ClickException(
            f"project {project} has no production {kind} model (histoloop models list)"
        )
    dev = resolve_device(device or settings.device)
    model = load_model(version.artifact_dir, device=dev)
    score = min_score if min_score is not None else settings.project(project).min_score
    if score is None:  # the version's own threshold (chosen on its validation split), else the default
        from kernel.settings import DEFAULT_MIN_SCORE

        score = float(model.card.extra.get("score_threshold") or DEFAULT_MIN_SCORE)
    failed = 0
    with _bar() as bar:
        for path in slide_files:
            tid = bar.add_task(path.name, total=None)
            try:
                result = predict_slide(
                    path,
                    version.artifact_dir,
                    out_dir,
                    mpp=mpp,
                    field_size=field_size,
                    threshold=threshold,
                    min_score=score,
                    reader=reader,
                    slide_mpp=slide_mpp,
                    version_label=version.label,
                    predictor=model,
                    progress=lambda d, t, tid=tid: bar.update(tid, completed=d, total=t),
                )
            except (SlideError, OSError) as exc:
                failed += 1
                console.print(f"[red]could not read {path.name}[/]: {exc}")
                continue
            console.print(
                f"{path.name}: {result.fields} fields at {result.mpp:g} µm/px on {dev}, {result.features} "
                f"objects, {result.fields_per_second:.2f} fields/s → {result.outputs['geojson']}"
            )
    if failed == len(slide_files):
        sys.exit(1)


@slides.command("export")
@options.project(number=True)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=Path("slide-annotations"), show_default=True
)
@options.approval()
@click.pass_obj
def export(settings: Settings, project: int, out_dir: Path, approval: str | None) -> None:
    """Approved annotations of the project's slide fields → one QuPath GeoJSON per slide."""
    from converters.geojson import write_geojson
    from converters.slide_annotations import annotations_to_features
    from workers.pipeline import export_project

    tasks, _ = export_project(settings, str(project))
    rule = approval or settings.project(project).approval
    by_slide, report = annotations_to_features(tasks, rule)
    for slide, features in sorted(by_slide.items()):
        path = write_geojson(
            out_dir / f"{Path(slide).stem}.annotations.geojson", features, slide=slide, project=project
        )
        click.echo(f"{slide}: {len(features)} annotations → {path}")
    skipped = [r for r in report.skipped if "not a slide field" not in r[1]]
    for item, why in skipped[:20]:
        console.print(f"skipped {item}: {why}", markup=False)
    if not by_slide:
        click.echo(f"project {project}: no approved annotations on slide fields", err=True)
        sys.exit(1)
