"""Which Label Studio address and token the backend fetches task images with."""

from __future__ import annotations

import pytest

from ml_backend.task_images import choose_base_url


@pytest.mark.parametrize(
    ("setup", "configured", "expected"),
    [
        (None, "http://ls:8080", "http://ls:8080"),
        ("http://localhost:8080", "http://label-studio:8080", "http://label-studio:8080"),
        ("http://127.0.0.1:8080", "http://localhost:8080", "http://localhost:8080"),
        ("http://localhost:8080", "http://localhost:8080/", "http://localhost:8080"),
        ("https://ls.lab.example", "http://localhost:8080", "https://ls.lab.example"),
    ],
)
def test_choose_base_url(setup, configured, expected) -> None:
    assert choose_base_url(setup, configured) == expected
