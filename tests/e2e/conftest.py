"""A real Label Studio, Redis, backend and worker for the end-to-end tests (started once per test session)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from histoloop.demo import bootstrap, connect_backend, create_projects, training_config_toml, write_tiles
from histoloop.labelstudio import LabelStudioServer
from histoloop.stack import Stack, settings_env
from kernel.net import free_port
from kernel.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 4
TINY = {
    "detect": {"epochs": 2, "batch": 4, "imgsz": 128},
    "segment": {"epochs": 2, "batch": 4, "imgsz": 64, "model": "resnet18"},
    "classify": {"epochs": 4, "batch": 4, "imgsz": 64, "model": "resnet18"},
}


@pytest.fixture
def browser():
    """Headless Debian Chromium under Selenium (skips without chromium and chromium-driver)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip(
            "Debian chromium + chromium-driver are not installed: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1300",
    ):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(300)
    yield driver
    driver.quit()


@dataclass
class Loop:
    client: Any
    settings: Any
    redis: Any
    projects: dict[str, int]
    images: list[Path]
    labelled: list
    threshold: int
    label_studio: LabelStudioServer
    stack: Stack
    document_root: Path
    backend_url: str


@pytest.fixture(scope="session")
def loop(tmp_path_factory: pytest.TempPathFactory, test_redis: str):
    from redis import Redis

    base = tmp_path_factory.mktemp("e2e")
    redis_url = f"{test_redis}/15"
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    document_root = base / "files"
    shown = write_tiles(document_root / "images", 6, size=256, seed=500)
    config = base / "histoloop.toml"  # tiny retrainings: seconds on a CPU
    config.write_text(training_config_toml(TINY))
    env = {
        "HISTOLOOP_CONFIG": str(config),
        "HISTOLOOP_MODEL_STORE": str(base / "store"),
        "HISTOLOOP_REDIS_URL": redis_url,
        "HISTOLOOP_LOCAL_FILES_ROOT": str(document_root),
        "HISTOLOOP_RETRAIN_THRESHOLD": str(THRESHOLD),  # the promotion gate is the default, if_better
        "HISTOLOOP_DEVICE": "cpu",
        # the seconds-long trainings make weak models, whose own thresholds (chosen to minimise corrections)
        # would serve nothing: these tests are about the protocol and the rendering, so a fixed floor
        "HISTOLOOP_MIN_SCORE": "0.05",
    }
    settings = load_settings(env=env)
    label_studio = LabelStudioServer(
        venv=Path(os.environ.get("HISTOLOOP_LABEL_STUDIO_VENV", ROOT / ".venv-label-studio")),
        data_dir=base / "label-studio",
        document_root=document_root,
        port=free_port(),
    )
    stack = Stack(
        env=settings_env(
            {
                **env,
                "HISTOLOOP_LABEL_STUDIO_URL": label_studio.url,
                "HISTOLOOP_LABEL_STUDIO_API_KEY": label_studio.token,
            }
        ),
        log_dir=base / "logs",
    )
    try:
        label_studio.start()
        client = label_studio.client()
        projects = create_projects(
            client, document_root, [p for p, _ in shown], ("detect", "segment", "classify")
        )
        train_root = base / "train"
        train_tiles = write_tiles(train_root / "images", 8, size=256, seed=900)
        for kind, pid in projects.items():
            bootstrap(settings, str(pid), kind, train_tiles, train_root)
        port = free_port()
        stack.backend("127.0.0.1", port)
        stack.worker(device="cpu")
        for pid in projects.values():
            connect_backend(client, pid, f"http://127.0.0.1:{port}")
        yield Loop(
            client,
            settings,
            redis,
            projects,
            [p for p, _ in shown],
            shown,
            THRESHOLD,
            label_studio,
            stack,
            document_root,
            f"http://127.0.0.1:{port}",
        )
    finally:
        stack.stop()
        label_studio.stop()
