"""One Flask blueprint per resource: health, setup, predict, versions, webhook, metrics."""

from ml_backend.routes.health import blueprint as health
from ml_backend.routes.metrics import blueprint as metrics
from ml_backend.routes.predict import blueprint as predict
from ml_backend.routes.setup import blueprint as setup
from ml_backend.routes.versions import blueprint as versions
from ml_backend.routes.webhook import blueprint as webhook

BLUEPRINTS = (health, setup, predict, versions, webhook, metrics)
