"""The one log format, and ultralytics kept quiet unless asked for."""

from __future__ import annotations

import doctest
import logging
import os

import pytest

import kernel.logs
from kernel.logs import quiet_ultralytics


def test_doctest() -> None:
    assert doctest.testmod(kernel.logs).failed == 0


@pytest.mark.parametrize(("given", "level"), [(None, logging.ERROR), ("True", logging.NOTSET)])
def test_ultralytics_is_quiet_unless_the_environment_asks(monkeypatch, given: str | None, level: int) -> None:
    monkeypatch.setenv("YOLO_VERBOSE", "x")  # restored after the test, whatever quiet_ultralytics sets
    if given is None:
        monkeypatch.delenv("YOLO_VERBOSE")
    else:
        monkeypatch.setenv("YOLO_VERBOSE", given)
    logger = logging.getLogger("ultralytics")
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    quiet_ultralytics()
    assert logger.level == level
    assert os.environ["YOLO_VERBOSE"] == (given or "False")
