"""Switch off every network side effect of ultralytics (and the Hugging Face hub) before it is imported.

Importing ultralytics reads its settings from ``YOLO_CONFIG_DIR`` (else ``~/.config/Ultralytics``), may
probe the network, check for updates, send analytics and pip-install missing packages at run time; its
trainer downloads ``Arial.ttf`` even with ``plots=False``, and its AMP check downloads a model on a GPU.
:func:`ensure_offline` sets the switches (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=0``, ``HF_HUB_OFFLINE=1``),
points ``YOLO_CONFIG_DIR`` at a directory of ours and puts matplotlib's DejaVuSans there under the font
names ultralytics looks for. :func:`ultralytics` does that and returns the imported package.
Its import also sets ``OMP_NUM_THREADS=1`` where unset; :func:`ultralytics` removes it again, so the
trainers' CPU thread choice (:func:`training.runtime.choose_threads`) sees only what the user set.
The other two rules (build models from YAML or a local ``.pt``, never a hub name; ``amp=False`` unless a
local AMP check model exists; no ``download:`` key in data.yaml) are kept by training/kinds/detect.py.

>>> import tempfile
>>> d = ensure_offline(Path(tempfile.mkdtemp()))
>>> os.environ["YOLO_OFFLINE"], (d / "Ultralytics" / "Arial.ttf").is_file()
('1', True)
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
AMP_CHECK_MODEL = "yolo26n.pt"
"""What ultralytics' ``check_amp`` loads from its WEIGHTS_DIR (downloading it when absent); AMP is used only
when that file is already local."""


def default_config_dir() -> Path:
    """A per-user directory under the system temp dir (used when no model store is given)."""
    return Path(tempfile.gettempdir()) / f"histoloop-ultralytics-{os.getuid()}"


def _copy_fonts(directory: Path) -> None:
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    directory.mkdir(parents=True, exist_ok=True)
    for name in FONTS:
        target = directory / name
        if not target.is_file():
            tmp = directory / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


def ensure_offline(config_dir: Path | None = None) -> Path:
    """Set the offline switches and the ultralytics config dir; return that dir.

    ``config_dir`` should be under the model store (the CLI and workers pass
    ``settings.model_store / "ultralytics"``); without it an existing ``YOLO_CONFIG_DIR`` is kept, else
    :func:`default_config_dir`. Once ultralytics is imported its config dir is fixed: a later call with a
    different directory only gets the fonts copied there too (and a debug log line).
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    # the user's own switch, for a project that allows the hub (training/pretrained.py), kept across processes
    os.environ.setdefault("HISTOLOOP_USER_HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", ""))
    os.environ["HF_HUB_OFFLINE"] = "1"
    if "ultralytics" in sys.modules:
        from ultralytics.utils import USER_CONFIG_DIR

        current = Path(USER_CONFIG_DIR).parent
        if config_dir is not None and Path(config_dir) != current:
            log.debug("ultralytics already imported with config dir %s (asked for %s)", current, config_dir)
        _copy_fonts(Path(USER_CONFIG_DIR))
        return current
    if config_dir is None:
        config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or default_config_dir())
    config_dir = Path(config_dir)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    if "matplotlib" not in sys.modules:  # its font cache goes beside ultralytics' settings, not into ~
        os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))
    # ultralytics uses <YOLO_CONFIG_DIR>/Ultralytics; copy to both so either spelling finds a font.
    _copy_fonts(config_dir / "Ultralytics")
    _copy_fonts(config_dir)
    return config_dir


def ultralytics(config_dir: Path | None = None) -> ModuleType:
    """Import ultralytics with every network side effect off (see the module docstring)."""
    ensure_offline(config_dir)
    threads_unset = "ultralytics" not in sys.modules and not os.environ.get("OMP_NUM_THREADS")
    import ultralytics as ul
    from ultralytics.utils import SETTINGS

    if threads_unset:
        # Its import sets OMP_NUM_THREADS=1 where unset. Undo that: a 1 there would read as the user's choice
        # to training.runtime.choose_threads here and in every process started from here (the workers).
        os.environ.pop("OMP_NUM_THREADS", None)

    # Nothing persisted by an earlier online run may switch anything back on, and nothing lands in the
    # working directory (ultralytics' default weights/runs/datasets dirs are relative to it).
    home = Path(os.environ["YOLO_CONFIG_DIR"])
    wanted = {
        "sync": False,
        "weights_dir": str(home / "weights"),
        "runs_dir": str(home / "runs"),
        "datasets_dir": str(home / "datasets"),
    }
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)
    return ul


def amp_allowed(device: str) -> bool:
    """AMP on CUDA only, and only where ultralytics' AMP check model is already on disk (no download)."""
    if not str(device).startswith("cuda"):
        return False
    from ultralytics.utils import WEIGHTS_DIR

    return (Path(WEIGHTS_DIR) / AMP_CHECK_MODEL).is_file()
