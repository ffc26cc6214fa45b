"""``histoloop models``: list, show, promote, roll back and compare model versions."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from typing import Any

import click
from rich.table import Table

from histoloop.cli import options, output
from histoloop.cli.stores import NoRegistry, read_registry
from kernel.settings import Settings
from training.registry import ModelVersion, Registry, RegistryError

console = output.console()


def _registry(settings: Settings) -> Registry:
    """The registry, created or migrated first when needed (for the commands that write)."""
    return Registry.from_settings(settings)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _scalar_metrics(v: ModelVersion) -> dict[str, Any]:
    return {k: m for k, m in v.metrics.items() if isinstance(m, int | float | str)}


def _primary(v: ModelVersion) -> str:
    from kernel.kinds import PRIMARY_METRIC

    name = PRIMARY_METRIC.get(v.kind, "")
    return f"{name}={_fmt(v.metrics[name])}" if name in v.metrics else ""


def _corrections(v: ModelVersion) -> str:
    """The version's corrections ratio (a specialist's corrections to its suggestions over drawing from
    scratch, on its held-out split); empty for versions evaluated before it was recorded."""
    from kernel.kinds import CORRECTIONS_RATIO

    value = v.metrics.get(CORRECTIONS_RATIO)
    return f"{value:.2f}×" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def _pretrained(v: ModelVersion) -> dict[str, Any] | None:
    """Where the version's starting weights came from (its card's provenance); None when unknown."""
    from training.artifacts import ArtifactError, ModelCard

    try:
        got = ModelCard.load(v.artifact_dir).extra.get("pretrained") if v.artifact_dir else None
    except ArtifactError:
        return None
    return got if isinstance(got, dict) else None


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@click.group()
def models() -> None:
    """Model versions in the registry: list, show, promote, rollback, diff."""


@models.command("list")
@options.project(required=False)
@options.kind(required=False)
@click.option("--status", type=click.Choice(["candidate", "production", "archived", "failed"]))
@options.json_output
@click.pass_obj
def list_(
    settings: Settings, project: str | None, kind: str | None, status: str | None, as_json: bool
) -> None:
    """List versions (newest last). The corrections column: a specialist's corrections to the version's
    suggestions over drawing from scratch, on its held-out split (lower saves more work)."""
    try:
        registry = read_registry(settings)
    except NoRegistry as exc:
        click.echo("[]" if as_json else f"no model versions yet ({exc.message})")
        return
    versions = registry.list(project=project, kind=kind, status=status)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    from kernel.database import safe_url

    table = Table(title=f"model versions ({registry.path or safe_url(registry.db.url)})")
    columns = ("id", "version", "status", "primary metric", "corrections", "trained on", "created", "note")
    for col in columns:
        table.add_column(col)
    style = {"production": "bold green", "failed": "red", "archived": "dim"}
    for v in versions:
        table.add_row(
            str(v.id),
            v.ref,
            v.status,
            _primary(v),
            _corrections(v),
            str(v.lineage.get("annotation_count", "")),
            _when(v.created_at),
            v.reason or "",
            style=style.get(v.status),
        )
    console.print(table if versions else "no model versions yet")


@models.command()
@click.argument("version")
@options.json_output
@click.pass_obj
def show(settings: Settings, version: str, as_json: bool) -> None:
    """Metrics, lineage, history and plots of VERSION (an id or PROJECT/KIND/vN)."""
    reg = read_registry(settings)
    try:
        v = reg.get(version)
    except RegistryError as exc:
        _fail(exc)
    plots = sorted(str(p) for p in v.artifact_dir.glob("*.png")) if v.artifact_dir else []
    history = [h for h in reg.history(v.project, v.kind) if v.id in (h["version_id"], h["previous_id"])]
    start = _pretrained(v)
    if as_json:
        shown = {**v.to_dict(), "pretrained": start, "plots": plots, "history": history}
        click.echo(json.dumps(shown, indent=2, default=str))
        return
    console.print(f"[bold]{v.ref}[/bold]  id={v.id}  status={v.status}  created {_when(v.created_at)}")
    if v.reason and v.status == "failed":
        console.print(f"[red]reason:[/red] {v.reason}")
    elif v.reason:  # the promotion gate's decision when it was trained
        console.print(f"promotion gate: {v.reason}", soft_wrap=True, markup=False)
    console.print(f"artifacts: {v.artifact_dir}", soft_wrap=True, markup=False)
    if start:
        where = [f"{k}={start[k]}" for k in ("name", "file", "sha256") if start.get(k)]
        console.print(
            "pretrained: " + "  ".join([str(start.get("source")), *where]), soft_wrap=True, markup=False
        )
    if _corrections(v):
        at = v.metrics.get("served_threshold")
        console.print(
            f"corrections: {_corrections(v)} of drawing from scratch"
            + (f" (suggestions from score {at:.2f})" if isinstance(at, int | float) else "")
        )
    metrics = Table(title="held-out metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in sorted(_scalar_metrics(v).items()):
        metrics.add_row(name, _fmt(value))
    console.print(metrics)
    lineage = Table(title="lineage")
    lineage.add_column("key")
    lineage.add_column("value")
    for name, value in sorted(v.lineage.items()):
        text = _fmt(value)
        lineage.add_row(name, text if len(text) < 80 else text[:77] + "...")
    lineage.add_row("parent", str(v.parent_id or ""))
    console.print(lineage)
    for h in history:
        console.print(f"{_when(h['at'])} {h['action']} v{h['version']} by {h['by']}: {h['reason']}")
    for p in plots:
        console.print(f"plot: {p}")


@models.command()
@click.argument("version")
@click.option("--reason", default="", help="Why (kept in the history).")
@click.pass_obj
def promote(settings: Settings, version: str, reason: str) -> None:
    """Make VERSION the production model of its project and kind."""
    try:
        v = _registry(settings).promote(version, by=getpass.getuser(), reason=reason)
    except (RegistryError, ValueError) as exc:
        _fail(exc)
    console.print(f"{v.ref} is now in production")


@models.command()
@options.project()
@options.kind()
@click.option("--reason", default="")
@click.pass_obj
def rollback(settings: Settings, project: str, kind: str, reason: str) -> None:
    """Put the previous production version back."""
    try:
        v = _registry(settings).rollback(project, kind, by=getpass.getuser(), reason=reason)
    except (RegistryError, ValueError) as exc:
        _fail(exc)
    console.print(f"rolled back: {v.ref} is now in production")


@models.command()
@click.argument("a")
@click.argument("b")
@options.json_output
@click.pass_obj
def diff(settings: Settings, a: str, b: str, as_json: bool) -> None:
    """Metrics of two versions side by side."""
    reg = read_registry(settings)
    try:
        va, vb = reg.get(a), reg.get(b)
    except RegistryError as exc:
        _fail(exc)
    ma, mb = _scalar_metrics(va), _scalar_metrics(vb)
    names = sorted(set(ma) | set(mb))
    if as_json:
        click.echo(json.dumps({n: {va.ref: ma.get(n), vb.ref: mb.get(n)} for n in names}, indent=2))
        return
    table = Table(title=f"{va.ref} vs {vb.ref}")
    for col in ("metric", va.ref, vb.ref, "Δ (b − a)"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for n in names:
        x, y = ma.get(n), mb.get(n)
        delta = f"{y - x:+.4f}" if isinstance(x, int | float) and isinstance(y, int | float) else ""
        table.add_row(n, _fmt(x) if x is not None else "—", _fmt(y) if y is not None else "—", delta)
    console.print(table)
