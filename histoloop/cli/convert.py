"""``histoloop convert ...``: annotation formats → training datasets (a thin layer over converters/).

Every command prints a summary (converted / skipped with reasons) and exits 0 when something usable was
written, 1 when nothing was (or, with ``--strict``, when anything was skipped). Bad data never prints a
traceback: a bad item is a skipped item with its reason; an input that is not what the command reads at
all (an export that is not JSON, a dataset without its manifest) and a file system error (an output
folder that cannot be written) are one message and exit 1.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from histoloop.cli import options

TARGETS = {
    "yolo-detect": "detect",
    "yolo-obb": "obb",
    "yolo-segment": "yolo-segment",
    "masks": "segment",
    "classify": "classify",
}


def _finish(report, strict: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        style = "green" if report.ok and not report.skipped else "yellow" if report.ok else "red"
        lines = report.summary().splitlines()
        console.print(f"[{style}]{lines[0]}[/]" + (f" → {report.output}" if report.output else ""))
        for line in lines[1:]:
            console.print(line, markup=False)
        if report.warnings:
            console.print(
                f"{len(report.warnings)} warnings (e.g. {report.warnings[0][0]}: {report.warnings[0][1]})",
                markup=False,
            )
    if not report.ok:
        why = "" if report.skipped else " (no input items found)"
        click.echo(f"nothing usable was produced{why}", err=True)
        sys.exit(1)
    if strict and report.skipped:
        click.echo(f"--strict: {len(report.skipped)} items or regions were skipped", err=True)
        sys.exit(1)


def _progress() -> bool:
    return sys.stderr.isatty()


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:  # bad input files: a message, not a traceback
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # e.g. an output folder that cannot be written, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@click.group()
def convert() -> None:
    """Convert annotations (Label Studio, LabelImg, Aperio XML, BreCaHAD) into training datasets."""


@convert.command("labelstudio")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "target", type=click.Choice(sorted(TARGETS)), required=True)
@options.label_config
@options.local_root()
@click.option("--obb", is_flag=True, help="With --to yolo-detect: rotated rectangles as YOLO-OBB lines.")
@click.option("--per-annotator", is_flag=True, help="One item per annotator instead of one per task.")
@options.approval(default="submitted")
@click.option("--labels-only", is_flag=True, help="Write labels only (no images).")
@click.option("--test-fraction", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@options.split_options
@options.strict
@options.force
@options.json_output
@click.pass_obj
def labelstudio_cmd(
    settings,
    export,
    out,
    target,
    label_config,
    local_root,
    obb,
    per_annotator,
    approval,
    labels_only,
    test_fraction,
    split_options,
    strict,
    force,
    as_json,
) -> None:
    """Label Studio JSON EXPORT → dataset OUT (YOLO detect/OBB/segment, PNG masks or class folders).

    OUT is replaced by the new dataset: it must be new, empty or a dataset histoloop wrote (--force
    replaces anything else, deleting it), and it may never be or contain an input.
    """
    from converters.dataset import check_output
    from converters.images import ImageLoader
    from converters.kinds import dataset_spec
    from converters.labelstudio import export_to_dataset, load_export

    kind = "obb" if (obb and target == "yolo-detect") else TARGETS[target]
    images = None
    if not labels_only:
        images = ImageLoader(
            local_root=local_root or getattr(settings, "local_files_root", None),
            label_studio_url=getattr(settings, "label_studio_url", None),
            api_key=settings.label_studio_api_key.get()
            if getattr(settings, "label_studio_api_key", None)
            else None,
            max_bytes=getattr(settings, "max_image_bytes", 512 << 20),
            max_pixels=getattr(settings, "max_image_pixels", 16384**2),
        )
    inputs = [export, *([label_config] if label_config else [])]
    inputs += [images.local_root] if images is not None and images.local_root else []
    _run(check_output, out, inputs, force=force)
    tasks = _run(load_export, export)
    report = _run(
        export_to_dataset,
        tasks,
        kind,
        out,
        label_config=label_config,
        images=images,
        split_options=dataclasses.replace(split_options, test_fraction=test_fraction),
        approval=approval,
        per_annotator=per_annotator,
        binary_masks=dataset_spec(kind).binary_masks,
        progress=_progress(),
        inputs=inputs,
        force=force,
    )
    _finish(report, strict, as_json)


@convert.command("labelimg")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "target", type=click.Choice(["yolo", "labelstudio"]), required=True)
@click.option(
    "--url-prefix",
    default="/data/local-files/?d=",
    show_default=True,
    help="--to labelstudio: prefix of each task's image URL.",
)
@click.option(
    "--relative-to",
    type=click.Path(file_okay=False),
    default=None,
    help="--to labelstudio: Label Studio's document root (image paths are made relative to it).",
)
@click.option("--as-annotations", is_flag=True, help="--to labelstudio: annotations instead of predictions.")
@options.split_options
@options.strict
@options.force
@options.json_output
def labelimg_cmd(
    folder,
    out,
    target,
    url_prefix,
    relative_to,
    as_annotations,
    split_options,
    strict,
    force,
    as_json,
) -> None:
    """LabelImg FOLDER (VOC XML or YOLO txt) → YOLO dataset OUT, or Label Studio tasks OUT (.json).

    --to yolo: OUT is replaced by the new dataset: it must be new, empty or a dataset histoloop wrote
    (--force replaces anything else, deleting it), and it may never be or contain FOLDER. --to labelstudio:
    OUT and OUT's .label_config.xml are overwritten unless they are files in FOLDER (refused), or OUT
    is a file that is not a JSON list of tasks (refused unless --force).
    """
    from converters.labelimg import labelimg_to_labelstudio, labelimg_to_yolo

    if target == "yolo":
        report = _run(labelimg_to_yolo, folder, out, split_options=split_options, force=force)
    else:
        report = _run(
            labelimg_to_labelstudio,
            folder,
            out,
            url_prefix=url_prefix,
            relative_to=relative_to,
            as_annotations=as_annotations,
            force=force,
        )
    _finish(report, strict, as_json)


@convert.command("aperio")
@click.argument("xml_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "target", type=click.Choice(["masks", "yolo-detect", "yolo-segment"]), required=True)
@click.option(
    "--label",
    "default_label",
    default="nucleus",
    show_default=True,
    help="Class of regions whose <Annotation> has no Name.",
)
@options.split_options
@options.strict
@options.force
@options.json_output
def aperio_cmd(
    xml_dir, images_dir, out, target, default_label, split_options, strict, force, as_json
) -> None:
    """Aperio/ImageScope XML_DIR + IMAGES_DIR (same stems, e.g. MoNuSeg) → masks or YOLO dataset OUT.

    OUT is replaced by the new dataset: it must be new, empty or a dataset histoloop wrote (--force
    replaces anything else, deleting it), and it may never be or contain an input.
    """
    from converters.kinds import dataset_spec
    from converters.pathology import aperio_to_dataset

    kind = {"masks": "segment", "yolo-detect": "detect", "yolo-segment": "yolo-segment"}[target]
    report = _run(
        aperio_to_dataset,
        xml_dir,
        images_dir,
        out,
        kind,
        default_label=default_label,
        split_options=split_options,
        binary_masks=dataset_spec(kind).binary_masks,
        progress=_progress(),
        force=force,
    )
    _finish(report, strict, as_json)


@convert.command("brecahad")
@click.argument(
    "json_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--width", type=click.IntRange(1), required=True, help="Image width in px (BreCaHAD: 1360).")
@click.option("--height", type=click.IntRange(1), required=True, help="Image height in px (BreCaHAD: 1024).")
@click.option(
    "--to", "target", type=click.Choice(["yolo-detect", "masks"]), default="yolo-detect", show_default=True
)
@click.option(
    "--box-size", type=float, default=32.0, show_default=True, help="Box side in px around each centre."
)
@click.option("--radius", type=float, default=12.0, show_default=True, help="Disc radius in px (masks).")
@click.option(
    "--images-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder with the images (same stems); without it only labels are written.",
)
@options.val_fraction
@options.strict
@options.force
@options.json_output
def brecahad_cmd(
    json_files, out, width, height, target, box_size, radius, images_dir, val_fraction, strict, force, as_json
) -> None:
    """BreCaHAD point JSON_FILES → fixed-size boxes or circular masks per class in OUT.

    OUT is replaced by the new dataset: it must be new, empty or a dataset histoloop wrote (--force
    replaces anything else, deleting it), and it may never be or contain an input.
    """
    from converters.pathology import brecahad_to_dataset
    from converters.split import SplitOptions

    report = _run(
        brecahad_to_dataset,
        list(json_files),
        out,
        width=width,
        height=height,
        kind="detect" if target == "yolo-detect" else "segment",
        box_size=box_size,
        radius=radius,
        images_dir=images_dir,
        split_options=SplitOptions(val_fraction=val_fraction),
        force=force,
    )
    _finish(report, strict, as_json)


@convert.command("tile")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tile", "tile_size", type=click.IntRange(16), default=640, show_default=True)
@click.option("--overlap", type=click.IntRange(0), default=64, show_default=True)
@click.option(
    "--min-visible",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Keep a box cut at a tile border when at least this fraction of it remains.",
)
@options.strict
@options.force
@options.json_output
def tile_cmd(dataset, out, tile_size, overlap, min_visible, strict, force, as_json) -> None:
    """Cut the images of DATASET (detect, yolo-segment or masks) into overlapping tiles, labels clipped.

    OUT is replaced by the new dataset: it must be new, empty or a dataset histoloop wrote (--force
    replaces anything else, deleting it), and it may never be or contain an input.
    """
    from converters.tiling import tile_dataset

    if overlap >= tile_size:
        raise click.BadParameter("must be smaller than --tile", param_hint="--overlap")
    report = _run(
        tile_dataset,
        dataset,
        out,
        tile=tile_size,
        overlap=overlap,
        min_visible=min_visible,
        progress=_progress(),
        force=force,
    )
    _finish(report, strict, as_json)
