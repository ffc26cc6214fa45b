"""Which Label Studio address and token the backend fetches task images with."""

from __future__ import annotations

import pytest

from ml_backend.projects import Projects
from ml_backend.task_images import choose_base_url


@pytest.mark.parametrize(
    ("setup", "configured", "allow", "expected"),
    [
        (None, "http://ls:8080", (), "http://ls:8080"),
        ("http://localhost:8080", "http://label-studio:8080", (), "http://label-studio:8080"),
        ("http://127.0.0.1:8080", "http://localhost:8080", (), "http://localhost:8080"),
        ("http://localhost:8080", "http://localhost:8080/", (), "http://localhost:8080"),
        ("HTTP://LOCALHOST:8080/", "http://localhost:8080", (), "HTTP://LOCALHOST:8080"),
        # a /setup cannot point the backend at a host that is neither configured nor allow-listed
        ("https://ls.lab.example", "http://localhost:8080", (), "http://localhost:8080"),
        ("http://127.1:9999", "http://localhost:8080", (), "http://localhost:8080"),
        (
            "https://ls.lab.example",
            "http://localhost:8080",
            ("https://ls.lab.example/",),
            "https://ls.lab.example",
        ),
        ("javascript:alert(1)", "http://localhost:8080", (), "http://localhost:8080"),
    ],
)
def test_choose_base_url(setup, configured, allow, expected) -> None:
    assert choose_base_url(setup, configured, allow) == expected


def test_a_token_does_not_follow_a_hostname_change() -> None:
    projects = Projects()
    projects.setup("4", "<View/>", "http://ls:8080", "tok")
    assert projects.setup("4", None, None, None).token.get() == "tok"  # nothing changed
    assert projects.setup("4", None, "http://ls:8080", None).token.get() == "tok"  # same host
    moved = projects.setup("4", None, "http://elsewhere:8080", None, trusted=True)
    assert moved.hostname == "http://elsewhere:8080" and moved.token.get() == ""
    back = projects.setup("4", None, "http://ls:8080", None, trusted=True)
    assert back.token.get() == ""  # not back either
