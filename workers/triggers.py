"""The retrain policy: a pure function of stored counts and project settings.

For each (project, kind) the event store (:mod:`workers.events`) reports a :class:`KindState`: how many
annotations became approved (or changed while approved) since the snapshot the last training run of that
kind was trained on, and the explicit requests (Label Studio's Train button = ``START_TRAINING``,
``histoloop retrain``) not yet handed to a job. :func:`decide` turns those into :class:`Trigger` s:

- an explicit request always triggers;
- otherwise ``new_approved >= retrain_threshold`` triggers (``retrain_threshold <= 0`` switches the
  automatic trigger off for that project).

The counter starts from the snapshot of the newest run (trained, failed on bad data or on an error,
cancelled by an admin) — not only from production's data: a candidate that was not good enough to be
promoted, or a failure that would fail again, must not cause a retraining on every following webhook.
A run whose worker or horse was killed (SIGKILL, OOM, machine lost) does not move the counter, so the
next webhook retrains. Bursts are debounced by the queue, not here: every
trigger for a (project, kind) lands on the one queued job (:func:`workers.jobs.enqueue_retrain`), which
exports whatever is approved when it starts.

>>> from kernel.settings import ProjectSettings
>>> states = [KindState("4", "detect", new_approved=25), KindState("4", "classify", new_approved=3)]
>>> [(t.project, t.kind, t.reason) for t in decide(states, lambda p: ProjectSettings(retrain_threshold=20))]
[('4', 'detect', '25 newly approved annotations (threshold 20)')]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kernel.settings import ProjectSettings


@dataclass(frozen=True)
class KindState:
    """What the event store knows about one (project, kind)."""

    project: str
    kind: str
    new_approved: int = 0
    """Approved annotations that arrived or changed since the last run's snapshot."""
    requests: tuple[str, ...] = field(default_factory=tuple)
    """Reasons of explicit retrain requests not yet handed to a job."""


@dataclass(frozen=True)
class Trigger:
    project: str
    kind: str
    reason: str
    manual: bool = False


def decide(states: Iterable[KindState], project_settings: Callable[[str], ProjectSettings]) -> list[Trigger]:
    """The (project, kind) pairs that should retrain now, each with the reason."""
    triggers = []
    for state in states:
        threshold = project_settings(state.project).retrain_threshold
        if state.requests:
            reason = "; ".join(dict.fromkeys(state.requests))
            triggers.append(Trigger(state.project, state.kind, reason, manual=True))
        elif threshold > 0 and state.new_approved >= threshold:
            reason = f"{state.new_approved} newly approved annotations (threshold {threshold})"
            triggers.append(Trigger(state.project, state.kind, reason))
    return triggers
