"""The WSGI entry point for gunicorn: ``gunicorn 'ml_backend.wsgi:app'``.

Settings come from the environment / config file (:func:`kernel.settings.load_settings`).
"""

from __future__ import annotations

import logging

from kernel.logs import LOG_FORMAT
from kernel.settings import load_settings
from ml_backend.app import create_app

settings = load_settings()
logging.basicConfig(
    level=getattr(logging, settings.log_level.upper(), logging.INFO),
    format=LOG_FORMAT,
)
app = create_app(settings)
