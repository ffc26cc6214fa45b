"""The retrain policy is a pure function of stored counts and project settings."""

from __future__ import annotations

from kernel.settings import ProjectSettings
from workers.triggers import KindState, decide


def settings_for(thresholds: dict[str, int]):
    return lambda project: ProjectSettings(retrain_threshold=thresholds.get(project, 20))


def test_threshold_per_project() -> None:
    states = [KindState("1", "detect", 19), KindState("1", "segment", 20), KindState("2", "detect", 5)]
    got = [(t.project, t.kind) for t in decide(states, settings_for({"2": 5}))]
    assert got == [("1", "segment"), ("2", "detect")]


def test_explicit_request_triggers_with_nothing_new_and_merges_reasons() -> None:
    states = [KindState("1", "classify", 0, ("START_TRAINING", "START_TRAINING", "cli"))]
    (trigger,) = decide(states, settings_for({}))
    assert trigger.manual and trigger.reason == "START_TRAINING; cli"


def test_threshold_zero_switches_automatic_retraining_off() -> None:
    assert decide([KindState("1", "detect", 1000)], settings_for({"1": 0})) == []
    assert len(decide([KindState("1", "detect", 0, ("cli",))], settings_for({"1": 0}))) == 1
