"""``histoloop simulate --label-studio``: the same rounds, played against a real Label Studio project.

Per ordering, a new project (the replay's label config, a local-files storage over the tiles, written
under Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``, one task per tile of the pool) is connected to the
histoloop backend. Each round:

- predictions are requested the way Label Studio requests them (the Data Manager action *Retrieve
  predictions*: Label Studio calls the backend's ``/predict`` and stores what it answers); for
  ``uncertainty`` on every remaining task, and the round takes the lowest stored prediction scores;
- the specialist's corrections are counted against the prediction Label Studio stored (of the version
  the backend serves now);
- the ground truth is submitted through Label Studio's API (``POST /api/tasks/{id}/annotations``): Label
  Studio's own webhooks reach the backend's ``/webhook``; then the project's *Train* button is pressed
  (``START_TRAINING``) so that every round ends in one retraining, whatever the project's
  ``retrain_threshold``; the round waits until the workers registered a version trained on every approved
  annotation (a retraining the threshold started may come first).

The held-out test split never enters Label Studio: it is predicted and evaluated in this process, with the
registry the workers write (``HISTOLOOP_MODEL_STORE`` must be theirs), as in the local mode.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.ground_truth import GroundTruthTask
from histoloop.simulate import Predictor, Replay, SimulationConfig, simulate
from kernel.settings import Settings


@dataclass(frozen=True)
class LabelStudioTarget:
    url: str
    api_key: str
    backend_url: str
    """The histoloop backend Label Studio connects each new project to."""
    document_root: Path
    """Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT`` (the backend's ``HISTOLOOP_LOCAL_FILES_ROOT``)."""
    timeout: float = 1800.0
    """Seconds to wait for each retraining by the workers."""

    def client(self) -> Any:
        """label_studio_sdk's client of the one Label Studio client (:mod:`converters.lsclient`)."""
        from converters.lsclient import LabelStudioClient

        return LabelStudioClient(self.url, self.api_key, timeout=600).sdk


def _dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


class LabelStudioLoop:
    """One ordering's project in Label Studio (see the module docstring)."""

    def __init__(self, replay: Replay, order: str, target: LabelStudioTarget, settings: Settings) -> None:
        self.replay, self.target, self.client = replay, target, target.client()
        root = target.document_root.resolve()
        folder = replay.document_root.resolve() / "images"
        project = self.client.projects.create(
            title=f"histoloop simulate: {replay.kind}, {order}"[:50], label_config=replay.label_config
        )
        self.project = int(project.id)
        self.client.import_storage.local.create(
            project=self.project, path=str(folder), use_blob_urls=True, title="simulate tiles"
        )
        urls = {
            t.id: f"/data/local-files/?d={t.image.resolve().relative_to(root).as_posix()}"
            for t in replay.pool
        }
        self.client.projects.import_tasks(
            self.project, request=[{"image": urls[t.id], "stem": t.stem} for t in replay.pool]
        )
        by_stem = {
            str(_dict(t)["data"].get("stem")): int(t.id) for t in self.client.tasks.list(project=self.project)
        }
        self.ids = {t.id: by_stem[t.stem] for t in replay.pool}
        backend = self.client.ml.create(
            project=self.project, url=target.backend_url, title="histoloop", is_interactive=False
        )
        self.backend = int(backend.id)
        local = dataclasses.replace(settings, local_files_root=replay.document_root)
        self.predictor = Predictor(local, replay.label_config, project=str(self.project))

    # -- the loop -------------------------------------------------------------------------------------
    def predict(self, tasks: Sequence[GroundTruthTask]) -> tuple[str, list[dict[str, Any]]]:
        """Label Studio asks the backend for predictions of ``tasks`` and stores them; those stored with the
        version served now are returned."""
        if not tasks:
            return "", []
        version = self.predictor.model_version()
        ids = [self.ids[t.id] for t in tasks]
        self.client.actions.create(
            id="retrieve_tasks_predictions",
            project=self.project,
            selected_items={"all": False, "included": ids},
        )
        stored: dict[int, dict[str, Any]] = {}
        for task in self.client.tasks.list(project=self.project, fields="all"):
            mine = [_dict(p) for p in (task.predictions or []) if _dict(p).get("model_version") == version]
            if mine:
                stored[int(task.id)] = mine[-1]
        missing = [i for i in ids if i not in stored]
        if missing:
            raise RuntimeError(
                f"Label Studio project {self.project}: no {version} prediction stored for "
                f"tasks {missing[:10]} (is the backend at {self.target.backend_url} up?)"
            )
        # what the backend answered, as Label Studio stored it (without its own bookkeeping: ids, dates)
        predictions = [
            {
                "result": stored[i].get("result") or [],
                "score": float(stored[i].get("score") or 0.0),
                "model_version": version,
            }
            for i in ids
        ]
        return version, predictions

    def approve(
        self, chosen: list[GroundTruthTask], approved: list[GroundTruthTask], label: str
    ) -> dict[str, Any]:
        from histoloop.stack import wait_for

        registry = self.predictor.registry
        kind, project = self.replay.kind, str(self.project)
        for task in chosen:
            self.client.annotations.create(id=self.ids[task.id], result=task.truth, was_cancelled=False)
        self.client.ml.train(id=self.backend)  # START_TRAINING: one retraining per round

        def trained() -> Any:
            done = [
                v
                for v in registry.list(project=project, kind=kind)
                if (v.lineage or {}).get("annotation_count", 0) >= len(approved)
            ]
            return done[-1] if done else None

        version = wait_for(
            trained,
            timeout=self.target.timeout,
            interval=2.0,
            what=f"a {kind} version of project {project} trained on {len(approved)} annotations",
        )
        time.sleep(1.0)  # the promotion follows the registration in the same job
        version = registry.get(version.id)
        if version.status == "failed":
            return {"error": version.reason or "failed", "version": version.ref}
        return {
            "version": version.ref,
            "promoted": version.status == "production",
            "job_id": version.lineage.get("job_id"),
            "val": {k: v for k, v in (version.metrics or {}).items() if isinstance(v, int | float)},
        }

    def close(self) -> None:
        pass


def simulate_in_label_studio(
    data: Path,
    config: SimulationConfig,
    settings: Settings,
    out_dir: Path,
    target: LabelStudioTarget,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """:func:`histoloop.simulate.simulate` with each ordering played in a Label Studio project of its own.
    The tiles are written under ``target.document_root`` (``histoloop-simulate/<out folder name>-<time>``)."""
    work = Path(target.document_root) / "histoloop-simulate" / f"{Path(out_dir).name}-{int(time.time())}"
    return simulate(
        data,
        config,
        settings,
        out_dir,
        progress=progress,
        work=work,
        make_loop=lambda replay, order: LabelStudioLoop(replay, order, target, settings),
    )


__all__ = ["LabelStudioLoop", "LabelStudioTarget", "simulate_in_label_studio"]
