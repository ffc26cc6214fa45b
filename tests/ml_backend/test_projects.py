"""Project keys and what /setup remembers."""

from __future__ import annotations

import pytest

from kernel.labelstudio import project_key
from ml_backend.projects import Projects


@pytest.mark.parametrize(("raw", "key"), [("4.1795424387", "4"), (4, "4"), ("12", "12"), ("007", "7")])
def test_project_key(raw, key) -> None:
    assert project_key(raw) == key


@pytest.mark.parametrize("raw", [None, "", "abc", "../4", "4/5", True])
def test_bad_project_key(raw) -> None:
    with pytest.raises(ValueError):
        project_key(raw)


def test_setup_keeps_earlier_values_and_masks_the_token() -> None:
    projects = Projects()
    projects.setup("4", "<View/>", "http://ls:8080", "tok-123")
    state = projects.setup("4", None, None, None)
    assert state.label_config == "<View/>" and state.hostname == "http://ls:8080"
    assert state.token.get() == "tok-123" and "tok-123" not in repr(state)
    assert projects.get("5").token.get() == "" and projects.keys() == ["4"]
