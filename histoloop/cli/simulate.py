"""``histoloop simulate``: replay a fully labelled set as a specialist annotating it with histoloop's help.

    histoloop simulate ../shared/data/monuseg-breast --kind segment --per-round 8 --order random,uncertainty
    histoloop simulate export.json --label-config config.xml --kind detect --rounds 3 --epochs 10

Writes ``rounds.jsonl`` (one row per round), ``summary.json`` and ``curve.png`` into ``--out`` and prints
the table. See :mod:`histoloop.simulate` for what each round does and :mod:`training.corrections` for how
corrections are counted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from histoloop.cli import options, output
from kernel.settings import Settings

console = output.console()


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _orders(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(o.strip() for v in values for o in v.split(",") if o.strip())) or ("random",)


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@options.kind()
@click.option(
    "--rounds", type=int, default=None, help="Rounds to play (default: until every task is approved)."
)
@click.option("--per-round", type=int, default=8, show_default=True, help="Tasks approved per round.")
@click.option(
    "--order",
    "orders",
    multiple=True,
    default=("random",),
    show_default=True,
    help="random | sequential | uncertainty; repeat it or give a list (random,uncertainty) to compare.",
)
@click.option(
    "--test-split",
    default="0.25",
    show_default=True,
    help="Groups (patients/slides) held out: a fraction, or comma-separated group names.",
)
@options.group_regex
@click.option(
    "--tile",
    type=int,
    default=256,
    show_default=True,
    help="Cut larger fields into tiles of this size (0: never).",
)
@click.option("--overlap", type=int, default=0, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: simulate-<kind>).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=None, help="Training option (else the settings' train.<kind>).")
@click.option("--imgsz", type=int, default=None)
@click.option("--batch", type=int, default=None)
@click.option("--model", default=None)
@click.option(
    "--train-option",
    "train_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other TrainConfig field for the retrainings (repeatable), e.g. patience=5.",
)
@options.min_score
@click.option(
    "--auto-promote",
    type=click.Choice(["never", "if_better", "always"]),
    default=None,
    help="The project's promotion rule (default: the settings').",
)
@options.label_config
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The images of an Aperio XML folder given as DATA (default: DATA/images).",
)
@options.local_root(default="the folder of the export given as DATA", exists=True)
@click.option("--keep-models", is_flag=True, help="Keep the model stores and tiles (out/work).")
@click.option(
    "--label-studio",
    "label_studio_url",
    default=None,
    help="Play the rounds against this Label Studio (a new project, annotations through its API).",
)
@click.option("--api-key", default=None, help="Label Studio's legacy API token (default: the settings').")
@click.option(
    "--backend",
    "backend_url",
    default=None,
    help="With --label-studio: the histoloop backend Label Studio connects to (http://host:9090).",
)
@click.option(
    "--document-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --label-studio: its LOCAL_FILES_DOCUMENT_ROOT (the tiles are written under it).",
)
@click.option(
    "--timeout",
    type=float,
    default=1800.0,
    show_default=True,
    help="With --label-studio: seconds to wait for each retraining by the workers.",
)
@click.pass_obj
def simulate(
    settings: Settings,
    data: Path,
    kind: str,
    rounds: int | None,
    per_round: int,
    orders: tuple[str, ...],
    test_split: str,
    group_regex: str | None,
    tile: int,
    overlap: int,
    out_dir: Path | None,
    seed: int,
    epochs: int | None,
    imgsz: int | None,
    batch: int | None,
    model: str | None,
    train_options: tuple[str, ...],
    min_score: float | None,
    auto_promote: str | None,
    label_config: str | None,
    images: str | None,
    local_root: str | None,
    keep_models: bool,
    label_studio_url: str | None,
    api_key: str | None,
    backend_url: str | None,
    document_root: Path | None,
    timeout: float,
) -> None:
    """Replay DATA (labelled) as a specialist would annotate it with histoloop's suggestions.

    Each round: the next tasks by --order are predicted by production through the backend's predict path,
    corrected to the ground truth (the corrections counted), approved, and retrained on through the
    workers' pipeline. The held-out test split (whole patients) measures each production.
    """
    from histoloop.simulate import SimulationConfig, table
    from histoloop.simulate import simulate as run

    train: dict[str, Any] = {
        k: v
        for k, v in (("epochs", epochs), ("imgsz", imgsz), ("batch", batch), ("model", model))
        if v is not None
    }
    for option in train_options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{option!r}: expected KEY=VALUE", param_hint="--train-option")
        train[key.strip()] = _value(value.strip())
    try:
        config = SimulationConfig(
            kind=kind,
            rounds=rounds,
            per_round=per_round,
            orders=_orders(orders),
            test_split=test_split,
            seed=seed,
            tile=tile,
            overlap=overlap,
            group_regex=group_regex,
            train=train,
            min_score=min_score,
            auto_promote=auto_promote,
            label_config=label_config,
            images=images,
            local_root=local_root,
            keep_models=keep_models,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    out_dir = out_dir or Path(f"simulate-{kind}")
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in ("training", "ml_backend", "converters", "ultralytics"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if label_studio_url:
            from histoloop.simulate_labelstudio import LabelStudioTarget, simulate_in_label_studio

            if not backend_url or document_root is None:
                raise click.UsageError("--label-studio needs --backend and --document-root")
            target = LabelStudioTarget(
                label_studio_url,
                api_key or settings.label_studio_api_key.get(),
                backend_url,
                document_root,
                timeout,
            )
            rows = simulate_in_label_studio(data, config, settings, out_dir, target)
        else:
            rows = run(data, config, settings, out_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(table(rows))
    console.print(f"rows: {out_dir / 'rounds.jsonl'}  curve: {out_dir / 'curve.png'}")
