"""The one log line format of every histoloop process (the CLI, the backend's gunicorn and its app, workers).

>>> import logging
>>> record = logging.LogRecord("histoloop.x", logging.INFO, "", 0, "ready", None, None)
>>> logging.Formatter(LOG_FORMAT).format(record).endswith(" INFO histoloop.x: ready")
True
"""

from __future__ import annotations

import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_ultralytics() -> None:
    """Keep ultralytics' own log (epoch tables, banners, settings notices) out of this process and the ones it
    starts, unless ``YOLO_VERBOSE`` asks for it; the CLI calls it unless ``-v``. ultralytics reads
    ``YOLO_VERBOSE`` once, at import (false: its logger at ERROR, its progress bars off)."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if os.environ["YOLO_VERBOSE"].strip().lower() not in ("1", "true", "yes", "on", "y", "t"):
        logging.getLogger("ultralytics").setLevel(logging.ERROR)  # in case it is imported already
