"""`histoloop models ...` against a real registry file."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from registry_testkit import card_only_version

from histoloop.cli import main
from training.artifacts import ModelCard
from training.registry import Registry


@pytest.fixture
def env(tmp_path):
    return {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store"), "COLUMNS": "200"}


@pytest.fixture
def reg(settings, env):
    reg = Registry(env["HISTOLOOP_MODEL_STORE"] + "/registry.sqlite", env["HISTOLOOP_MODEL_STORE"])
    card = ModelCard(kind="segment", classes=["tumor"], arch={"arch": "Unet"}, input_size=64)
    for dice, ratio in ((0.61, 0.8125), (0.74, 0.9375)):
        metrics = {"dice": dice, "iou": dice - 0.1, "corrections_ratio": ratio, "served_threshold": 0.35}
        card_only_version(reg, "7", card, metrics=metrics, lineage={"annotation_count": 40})
    return reg


def run(env, *args):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_promote_list_show_diff_rollback(reg, env) -> None:
    assert run(env, "models", "promote", "7/segment/v1", "--reason", "first").exit_code == 0
    assert run(env, "models", "promote", "7/segment/v2").exit_code == 0
    listed = json.loads(run(env, "models", "list", "--project", "7", "--json").output)
    assert [(v["label"], v["status"]) for v in listed] == [
        ("segment-v1", "archived"),
        ("segment-v2", "production"),
    ]
    table = run(env, "models", "list").output
    assert "7/segment/v2" in table and "dice=0.7400" in table

    shown = json.loads(run(env, "models", "show", "7/segment/v2", "--json").output)
    assert shown["metrics"]["dice"] == 0.74 and [h["action"] for h in shown["history"]] == ["promote"]
    assert "held-out metrics" in run(env, "models", "show", "7/segment/v2").output

    diff = json.loads(run(env, "models", "diff", "7/segment/v1", "7/segment/v2", "--json").output)
    assert diff["dice"] == {"7/segment/v1": 0.61, "7/segment/v2": 0.74}
    assert "+0.1300" in run(env, "models", "diff", "7/segment/v1", "7/segment/v2").output

    result = run(env, "models", "rollback", "--project", "7", "--kind", "segment", "--reason", "regression")
    assert result.exit_code == 0 and "7/segment/v1" in result.output
    assert reg.production("7", "segment").version == 1


def test_errors_are_messages_not_tracebacks(reg, env) -> None:
    result = run(env, "models", "show", "7/segment/v9")
    assert result.exit_code != 0 and "no model version '7/segment/v9'" in result.output
    result = run(env, "models", "rollback", "--project", "7", "--kind", "segment")
    assert result.exit_code != 0 and "no earlier production version" in result.output


def test_list_and_show_print_the_corrections_ratio(reg, env) -> None:
    card = ModelCard(kind="segment", classes=["tumor"], arch={"arch": "Unet"}, input_size=64)
    card_only_version(reg, "7", card, metrics={"dice": 0.5})  # evaluated before the ratio was recorded
    table = run(env, "models", "list", "--project", "7").output
    assert "corrections" in table
    rows = {ref: line for line in table.splitlines() for ref in re.findall(r"7/segment/v\d", line)}
    assert "0.81×" in rows["7/segment/v1"] and "0.94×" in rows["7/segment/v2"]
    assert "×" not in rows["7/segment/v3"]
    shown = run(env, "models", "show", "7/segment/v2").output
    assert "corrections: 0.94× of drawing from scratch (suggestions from score 0.35)" in shown
    assert "corrections_ratio" in shown and "0.9375" in shown
    assert "corrections:" not in run(env, "models", "show", "7/segment/v3").output
    listed = json.loads(run(env, "models", "show", "7/segment/v1", "--json").output)
    assert listed["metrics"]["corrections_ratio"] == 0.8125
