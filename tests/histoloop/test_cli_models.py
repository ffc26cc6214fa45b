"""`histoloop models ...` against a real registry file."""

from __future__ import annotations

import json

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
    for dice in (0.61, 0.74):
        card_only_version(
            reg, "7", card, metrics={"dice": dice, "iou": dice - 0.1}, lineage={"annotation_count": 40}
        )
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
