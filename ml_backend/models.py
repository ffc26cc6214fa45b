"""The model cache: per (project, kind) the registry's production version, loaded once per process.

Every request asks :meth:`ModelCache.serving` for the models of the kinds its label config needs. That
costs one ``SELECT`` of the registry's revision counter; only when the counter changed (a version was
registered, promoted or rolled back, by any process) are the production versions looked up again, and
a model is loaded only when its (project, kind) now points at a different version. So a promotion is
served on the next request, without a restart and without a reload per request.

Thread-safe: lookups and loads are serialised per (project, kind) (two threads never load the same
model twice), and each loaded model runs one prediction at a time (ultralytics' predictor and a
torch module are not re-entrant); different models run in parallel.

A version that fails to load (missing or corrupt artifacts, truncated weights) is logged and is never
served under its name: it leaves ``versions`` (so ``model_version`` does not name it) and is listed in
``failed`` with the reason until the registry changes (a promotion, a rollback, a new version); ``/health``
then says ``DEGRADED`` and ``/predict`` refuses a batch for which no model is left (see
:mod:`ml_backend.routes.predict`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml_backend.telemetry import count_model_load
from training.registry import ArtifactsNotVisible, ModelVersion, Registry
from training.runtime import resolve_device

log = logging.getLogger(__name__)

UNTRAINED = "histoloop-untrained"
"""The ``model_version`` of a project none of whose kinds has a production version."""


@dataclass
class LoadedModel:
    """A production version loaded in this process."""

    version: ModelVersion
    predictor: Any
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict(self, image: np.ndarray) -> Any:
        with self.lock:
            return self.predictor.predict(image)

    def predict_many(
        self, images: Sequence[np.ndarray], timings: dict[str, float] | None = None
    ) -> list[Any]:
        """One output per image (batched forward passes); adds to ``timings`` the seconds spent waiting
        for another request's call (``queue``) and in the model (``model``)."""
        t0 = time.perf_counter()
        with self.lock:
            t1 = time.perf_counter()
            try:
                return list(self.predictor.predict_many(images))
            finally:
                if timings is not None:
                    timings["queue"] = timings.get("queue", 0.0) + t1 - t0
                    timings["model"] = timings.get("model", 0.0) + time.perf_counter() - t1


@dataclass(frozen=True)
class Serving:
    """The models one request uses.

    ``versions``: kind -> the production version served (what ``model_version`` names); ``models``: kind
    -> the loaded model; ``missing``: kind -> why it has none (no production version, or it failed to
    load); ``failed``: kind -> the reason, for the kinds whose production version failed to load.
    """

    project: str
    versions: dict[str, ModelVersion]
    models: dict[str, LoadedModel]
    missing: dict[str, str]
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        """Production labels of the kinds in use joined by ``+`` (``detect-v3+classify-v1``)."""
        return model_version_of(self.versions.values())


def model_version_of(versions: Iterable[ModelVersion]) -> str:
    labels = [v.label for v in versions]
    return "+".join(labels) if labels else UNTRAINED


class ModelCache:
    """Production models per (project, kind), refreshed when the registry's revision changes."""

    def __init__(self, registry: Registry, device: str = "cpu") -> None:
        self.registry = registry
        self.device = resolve_device(device)
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._revision: int | None = None
        self._production: dict[tuple[str, str], ModelVersion | None] = {}
        self._failed: dict[int, str] = {}
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    def versions(self, project: str, kinds: Iterable[str]) -> Serving:
        """The production versions of ``project`` for ``kinds``, without loading any model.

        One ``SELECT`` of the registry's revision; the versions are looked up again only after it changed.
        """
        project = str(project)
        revision = self.registry.revision()
        versions: dict[str, ModelVersion] = {}
        missing: dict[str, str] = {}
        failed: dict[str, str] = {}
        with self._lock:
            if revision != self._revision:
                self._production.clear()
                self._failed.clear()
                self._revision = revision
        for kind in kinds:
            key = (project, kind)
            with self._lock:
                known = key in self._production
                version = self._production.get(key)
            if not known:
                version = self.registry.production(project, kind)
                with self._lock:
                    if self._revision == revision:
                        self._production[key] = version
            with self._lock:
                failure = self._failed.get(version.id) if version is not None else None
            if version is None:
                missing[kind] = "no production version"
            elif failure is not None:
                missing[kind] = failed[kind] = failure
            else:
                versions[kind] = version
        return Serving(project, versions, {}, missing, failed)

    def serving(self, project: str, kinds: Iterable[str]) -> Serving:
        """The production models of ``project`` for ``kinds``, loaded (once) where needed."""
        found = self.versions(project, kinds)
        models: dict[str, LoadedModel] = {}
        versions = dict(found.versions)
        missing, failed = dict(found.missing), dict(found.failed)
        for kind, version in found.versions.items():
            got = self._load(found.project, kind, version)
            if isinstance(got, LoadedModel):
                models[kind] = got
            else:  # never served under its name
                del versions[kind]
                missing[kind] = failed[kind] = got
        return Serving(found.project, versions, models, missing, failed)

    def status(self, project: str, kinds: Iterable[str]) -> Serving:
        """Like :meth:`versions`, plus the load failures already seen (loads nothing)."""
        found = self.versions(project, kinds)
        ids = {v.id for v in found.versions.values()}
        with self._lock:
            models = {
                k: m for (p, k), m in self._loaded.items() if p == found.project and m.version.id in ids
            }
        return Serving(found.project, found.versions, models, found.missing, found.failed)

    def warm(self, project: str, kinds: Iterable[str]) -> threading.Thread | None:
        """Load the production models of ``project`` in a background thread, if any is not loaded yet.

        ``/setup`` calls it so that the first ``/predict`` does not pay for loading (Label Studio gives
        ``/setup`` only 3 s).
        """
        kinds = tuple(kinds)
        now = self.status(project, kinds)
        if set(now.versions) <= set(now.models) | set(now.missing):
            return None
        thread = threading.Thread(
            target=self.serving, args=(project, kinds), name="histoloop-warm", daemon=True
        )
        thread.start()
        return thread

    def refuse(self, project: str, kind: str, version: ModelVersion, reason: str) -> None:
        """Stop serving a loaded ``version`` that misbehaves (non-finite outputs): it is a failure from now
        on, as if it had not loaded, until the registry changes (a new promotion is loaded afresh)."""
        log.error("project %s: %s", project, reason)
        with self._lock:
            self._failed[version.id] = reason
            current = self._loaded.get((str(project), kind))
            if current is not None and current.version.id == version.id:
                del self._loaded[(str(project), kind)]

    # -- internals -----------------------------------------------------------------------------
    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _load(self, project: str, kind: str, version: ModelVersion) -> LoadedModel | str:
        key = (project, kind)
        with self._lock:
            current = self._loaded.get(key)
            if current is not None and current.version.id == version.id:
                return current
            if version.id in self._failed:
                return self._failed[version.id]
        with self._key_lock(key):
            with self._lock:
                current = self._loaded.get(key)
                if current is not None and current.version.id == version.id:
                    return current
            try:
                predictor = self._load_model(version)
            except ArtifactsNotVisible as exc:  # another host's files, not visible here yet: try again later
                log.warning("project %s: %s", project, exc)
                return str(exc)
            except Exception as exc:  # a corrupt version must not take the backend down
                reason = f"{version.label} failed to load: {exc}"
                log.error(
                    "project %s: cannot load %s from %s: %s", project, version.ref, version.artifact_dir, exc
                )
                with self._lock:
                    self._failed[version.id] = reason
                count_model_load(kind, ok=False)
                return reason
            loaded = LoadedModel(version, predictor)
            count_model_load(kind, ok=True)
            with self._lock:
                self._loaded[key] = loaded
            log.info(
                "project %s: serving %s (%s) on %s", project, version.label, version.artifact_dir, self.device
            )
            return loaded

    def _load_model(self, version: ModelVersion) -> Any:
        if version.artifact_dir is None:
            raise ValueError("the version has no artifact directory")
        from training.versions import load_model

        return load_model(self.registry.artifacts(version), self.device)
