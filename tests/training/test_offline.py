"""ultralytics imported through training.offline: no write to the home directory, no download switch on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from waits import LONG

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
from pathlib import Path
from training.offline import amp_allowed, ultralytics
ul = ultralytics(Path(sys.argv[1]))
from ultralytics.utils import SETTINGS, USER_CONFIG_DIR
from ultralytics.utils.checks import check_font
print(json.dumps({
    "env": {k: os.environ[k] for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "HF_HUB_OFFLINE", "YOLO_CONFIG_DIR")},
    "user_config_dir": str(USER_CONFIG_DIR),
    "font": str(check_font("Arial.ttf")),
    "unicode_font": str(check_font("Arial.Unicode.ttf")),
    "settings": {k: SETTINGS[k] for k in ("sync", "weights_dir", "runs_dir")},
    "amp_cpu": amp_allowed("cpu"), "amp_cuda": amp_allowed("cuda:0"),
    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
}))
"""


def test_ultralytics_import_is_offline_and_stays_out_of_home(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "store" / "ultralytics"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "XDG_", "OMP_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=LONG,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["env"] == {
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        "HF_HUB_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(config),
    }
    assert got["user_config_dir"] == str(config / "Ultralytics")
    # The trainer's font check finds our copy instead of going to github.com.
    assert got["font"] == str(config / "Ultralytics" / "Arial.ttf")
    assert got["unicode_font"] == str(config / "Ultralytics" / "Arial.Unicode.ttf")
    assert got["settings"]["sync"] is False
    assert got["settings"]["weights_dir"].startswith(str(config))
    assert got["amp_cpu"] is False and got["amp_cuda"] is False  # no local AMP check model: AMP off
    # Its import sets OMP_NUM_THREADS=1; left there, the trainers would read it as the user's choice of
    # one torch thread (and so would every worker process started from this one).
    assert got["omp_num_threads"] is None
    assert not any(home.iterdir()), "nothing may be written to the home directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "store"], "nothing in the working directory"


TRAIN_SCRIPT = """
import socket, sys
from pathlib import Path
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError("network disabled by the test")
socket.getaddrinfo = refuse
socket.socket.connect = refuse
socket.create_connection = refuse
sys.path.insert(0, sys.argv[3])
from conftest import write_detect
from training.offline import ensure_offline
ensure_offline(Path(sys.argv[2]))
from training.base import TrainConfig
from training.trainer import get_trainer
data = write_detect(Path(sys.argv[1]) / "data", n=8, n_val=2)
get_trainer("detect").train(data, TrainConfig(epochs=1, batch=4, imgsz=64), Path(sys.argv[1]) / "out")
print("ATTEMPTS", len(attempts), attempts[:3])
"""


def test_detect_training_makes_no_network_call(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "XDG_", "MPLCONFIGDIR"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            TRAIN_SCRIPT,
            str(tmp_path),
            str(tmp_path / "cfg"),
            str(ROOT / "tests" / "training"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ATTEMPTS 0 []" in out.stdout, out.stdout[-1000:]
    assert (tmp_path / "out" / "weights.safetensors").is_file()


def test_a_users_omp_num_threads_is_kept(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "XDG_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="3")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "cfg")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=LONG,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1])["omp_num_threads"] == "3"
