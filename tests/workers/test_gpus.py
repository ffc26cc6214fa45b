"""``histoloop worker --gpus 0,1``: every GPU visible to the horse and every kind's training on all of them
(``train.<kind>.devices`` overrides); no GPU needed to check the wiring."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from histoloop.cli.main import main
from kernel.settings import load_settings
from training.lifecycle import train_config
from workers.worker import prepare_environment


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # prepare_environment writes these into os.environ: setenv first, so that monkeypatch restores them to
    # what they were (absent) after the test — a bare delenv of an absent name records nothing, and the
    # values leaked into every later test's worker processes (trainings on two "GPUs" that failed)
    for name in ("CUDA_VISIBLE_DEVICES", "HISTOLOOP_DEVICE", "HISTOLOOP_TRAIN_DEVICES", "HISTOLOOP_CONFIG"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_gpus_reach_every_kind(clean_env, tmp_path) -> None:
    config = tmp_path / "histoloop.toml"
    config.write_text("[train]\nsegment = { devices = [1] }\n")
    device = prepare_environment(load_settings(env={}), None, None, str(config), gpus=[2, 3])
    assert (device, os.environ["CUDA_VISIBLE_DEVICES"], os.environ["HISTOLOOP_TRAIN_DEVICES"]) == (
        "cuda",
        "2,3",
        "2",
    )
    settings = load_settings(env={**os.environ, "HISTOLOOP_MODEL_STORE": str(tmp_path)})
    assert train_config(settings, "4", "classify").devices == 2  # cuda:0 and cuda:1 = GPUs 2 and 3
    assert train_config(settings, "4", "classify").device == "cuda"
    assert train_config(settings, "4", "segment").devices == [1]  # the kind's own option wins


def test_one_gpu_stays_one(clean_env) -> None:
    assert prepare_environment(load_settings(env={}), None, None, None, gpus=[1]) == "cuda:0"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1" and "HISTOLOOP_TRAIN_DEVICES" not in os.environ
    assert train_config(load_settings(env={}), "4", "detect").devices is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "0,x"], "GPU numbers"),
        (["--gpus", "1,1"], "distinct"),
        (["--gpus", "0,1", "--gpu", "0"], "not both"),
        (["--gpus", "0,1", "--device", "cpu"], "exclude"),
    ],
)
def test_bad_gpus_are_usage_errors(clean_env, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["worker", *args])
    assert result.exit_code == 2 and message in result.output


def test_a_container_gpu_is_numbered_from_zero(clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose reserves host GPU 3 for a worker: inside the container it is GPU 0, and --gpu 3 is refused."""
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "3")
    result = CliRunner().invoke(main, ["worker", "--gpu", "3"])
    assert result.exit_code == 2 and "give --gpu 0" in result.output
    result = CliRunner().invoke(main, ["worker", "--gpus", "0,1"])
    assert result.exit_code == 2 and "1 GPU(s)" in result.output
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")  # a host or a container with every GPU: no check
    from histoloop.cli.worker import _check_container_gpus

    _check_container_gpus([3])
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "2,3")
    _check_container_gpus([1])
