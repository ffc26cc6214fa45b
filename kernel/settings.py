"""All of histoloop's settings, in one place.

Every value comes from, in order of precedence: an environment variable ``HISTOLOOP_<NAME>``, the
config file (TOML; ``HISTOLOOP_CONFIG`` or ``<model store>/histoloop.toml`` when it exists), the
default below. Other modules never read the environment themselves: they receive a :class:`Settings`
(or the few values they need) as arguments.

Per-project overrides live in the config file only::

    [projects."3"]
    min_score = 0.4
    retrain_threshold = 50
    auto_promote = "never"
    promotion_metric = "corrections"      # promote by the work saved, not the primary metric
    label_map = { "tumor" = "Tumor" }     # model class -> label-config label
    train.detect = { epochs = 50, imgsz = 640, weights = "/models/yolo11s-pretrained.pt" }
    train.segment = { pretrained = "/models/pathology-encoder.safetensors" }   # default: "imagenet"

>>> s = load_settings(env={"HISTOLOOP_MODEL_STORE": "/tmp/store"})
>>> str(s.registry_path)
'/tmp/store/registry.sqlite'
>>> s.project("3").retrain_threshold
20
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

AutoPromote = Literal["never", "if_better", "always"]
PromotionMetric = Literal["primary", "corrections"]
PROMOTION_METRICS: tuple[PromotionMetric, ...] = ("primary", "corrections")
DEFAULT_MIN_SCORE = 0.25
"""The score floor of a version that has no threshold of its own, when the project sets none."""
Approval = Literal["submitted", "ground_truth", "reviewed"]
Uncertainty = Literal["confidence", "entropy", "margin", "boundary", "tta"]
UNCERTAINTY_MEASURES: tuple[Uncertainty, ...] = ("confidence", "entropy", "margin", "boundary", "tta")


class Secret(str):
    """A string that never shows itself in ``repr``/logs; ``str(secret)`` or ``.get()`` to use it."""

    def __repr__(self) -> str:
        return "'***'" if self else "''"

    def get(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class ProjectSettings:
    """Settings of one Label Studio project (defaults come from :class:`Settings`)."""

    min_score: float | None = None
    """Regions below this score are not sent to Label Studio. None (the default): each version's own
    threshold (``score_threshold`` in its model card, chosen on its validation split to minimise a
    specialist's corrections), else :data:`DEFAULT_MIN_SCORE`. A number here overrides the versions."""
    retrain_threshold: int = 20
    """Retrain when this many newly approved annotations arrived since production's data."""
    auto_promote: AutoPromote = "if_better"
    promotion_metric: PromotionMetric = "primary"
    """What ``auto_promote = "if_better"`` compares: ``primary`` (the kind's primary metric, higher is
    better: mAP@0.5, Dice, balanced accuracy) or ``corrections`` (the corrections ratio: a specialist's
    corrections to the version's suggestions at its served threshold over drawing from scratch, lower is
    better). Both are measured on the same validation split for the candidate and production."""
    promotion_margin: float = 0.0
    """A candidate must beat production's promotion metric by more than this to be promoted."""
    warm_start: bool = True
    """A retraining starts from production's weights (fine-tunes it) when production exists, has the same
    classes and model and the project's ``train.<kind>`` sets no ``weights``; false: from ``pretrained``
    alone, as the first version did. The version's card records the version it started from."""
    approval: Approval = "submitted"
    """Which annotations count as approved (see docs/retraining.md, "Which annotations count")."""
    label_map: dict[str, str] = field(default_factory=dict)
    """Model class name -> label-config label name, where they differ."""
    uncertainty: Uncertainty = "confidence"
    """What a prediction's task ``score`` measures (lower = review first): ``confidence`` (the regions' mean
    score), ``entropy`` or ``margin`` of the class probabilities, ``boundary`` (a mask's mean uncertainty
    along its edges), ``tta`` (disagreement with the outputs on flipped images: three forward passes per
    task); see ml_backend/uncertainty.py."""
    val_fraction: float = 0.2
    split_group_regex: str | None = None
    """Group items for the train/val split by this regex's first group (default: TCGA patient)."""
    train: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per model kind, training options for retraining (``training.base.TrainConfig`` fields), e.g.
    ``{"detect": {"epochs": 50, "imgsz": 640, "weights": "/models/yolo11s-pretrained.pt"}}``; segment and
    classify start from ``pretrained`` (``imagenet``: the packaged EfficientNet-Lite0, the default; a local
    state dict file; ``hub:<name>`` only with ``allow_hub = true``; ``none``)."""


_PROJECT_FIELDS = {f.name for f in fields(ProjectSettings)}
_PROJECT_NUMBERS: dict[str, type[int] | type[float]] = {
    "min_score": float,
    "retrain_threshold": int,
    "promotion_margin": float,
    "val_fraction": float,
}


@dataclass(frozen=True)
class Settings:
    model_store: Path = Path("~/.histoloop").expanduser()
    """Where model versions, the registry and the event store live."""
    registry_path: Path | None = None
    """SQLite registry file; default ``<model_store>/registry.sqlite``."""
    database_url: Secret = Secret("")
    """``postgresql://user[:password]@host[:port]/db``: the registry and the event store in PostgreSQL
    (several hosts); empty: SQLite files in the model store (one host)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    label_studio_url: str = "http://localhost:8080"
    label_studio_api_key: Secret = Secret("")
    local_files_root: Path | None = None
    """Label Studio's LOCAL_FILES_DOCUMENT_ROOT, when it is on this machine."""
    host: str = "127.0.0.1"
    port: int = 9090
    basic_auth_user: str = ""
    basic_auth_password: Secret = Secret("")
    device: str = "auto"
    """Training/inference device: auto (CUDA when present), cpu, cuda, cuda:N."""
    train_devices: int = 0
    """How many GPUs one training uses together (DDP) when its kind's ``devices`` option is not set; 0 or 1:
    one. ``histoloop worker --gpus 0,1`` sets it to the number of GPUs it is given."""
    queue: str = "histoloop-training"
    job_timeout: int = 6 * 3600
    heartbeat: int = 30
    """Seconds between a worker's heartbeats for its running job; a job without one for 3x this (its worker
    killed, its machine lost) is failed as abandoned by another worker, on any host."""
    max_image_pixels: int = 16_384 * 16_384
    max_image_bytes: int = 512 * 1024 * 1024
    image_timeout: float = 30.0
    """Seconds one image fetch may take in all (connecting and every byte), not per byte."""
    request_read_timeout: float = 30.0
    """Seconds a client may take to send one whole request to ``histoloop serve`` (headers and body);
    requests are read in gunicorn's event loop (``ml_backend.gworker``), so a slow one holds no thread."""
    image_allow: tuple[str, ...] = ()
    """What the backend and workers may read besides Label Studio's URLs and the local-files root: URL
    prefixes (``https://slides.lab.example/``) and directories (``/srv/slides``); comma-separated in
    the environment, a list in the config file."""
    webhook_secret: Secret = Secret("")
    """When set, ``/webhook`` answers 401 unless the request carries it in ``X-Histoloop-Webhook-Secret``."""
    event_retention_days: float = 30.0
    """Webhook events older than this are deleted from the event store (the counts they made stay)."""
    event_batch: int = 256
    """At most this many webhook events committed in one transaction of the event store (group commit:
    the webhooks arriving while one commit runs are committed together by the next); 1: one each."""
    predict_slots: int = 0
    """At most this many ``/predict`` at once per process (0: no limit); ``histoloop serve`` sets it to
    its threads minus one, so that ``/health`` and ``/webhook`` always find a free thread."""
    predict_timeout: float = 90.0
    """Seconds one ``/predict`` may take in all (Label Studio waits 100 s): tasks whose images are not
    fetched, or that are not predicted, by then get an ``error`` saying so (``histoloop predict``, outside
    HTTP, has no such deadline)."""
    predict_max_pixels: int = 128 * 1024 * 1024
    """Pixels of task images one ``/predict`` decodes in all (apart from ``max_image_pixels``, the limit
    per image); the tasks past it get an ``error`` saying so (``histoloop predict`` has no such budget)."""
    predict_queue: int = 64
    """With every predict slot taken, at most this many more ``/predict`` wait for one (each on a thread
    ``histoloop serve`` adds for waiting); one more is a ``503`` at once."""
    predict_queue_timeout: float = 30.0
    """Seconds a ``/predict`` waits for a slot before it is a ``503`` (Label Studio does not retry one)."""
    log_level: str = "INFO"
    project_defaults: ProjectSettings = field(default_factory=ProjectSettings)
    projects: dict[str, ProjectSettings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.registry_path is None:
            object.__setattr__(self, "registry_path", self.model_store / "registry.sqlite")
        _check_header_value("HISTOLOOP_WEBHOOK_SECRET", self.webhook_secret.get())

    @property
    def events_path(self) -> Path:
        """The durable store of webhook events and approval counts (SQLite, without ``database_url``)."""
        return self.model_store / "events.sqlite"

    @property
    def events_target(self) -> str | Path:
        """Where the event store lives: ``database_url``, else :attr:`events_path`."""
        return self.database_url.get() if self.database_url else self.events_path

    def project(self, project: str | int) -> ProjectSettings:
        return self.projects.get(str(project), self.project_defaults)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to print or log (secrets masked)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret) and f.name == "database_url":
                value = _mask_password(value.get())
            elif isinstance(value, Secret):
                value = "***" if value else ""
            elif f.name.endswith("_url") and isinstance(value, str):
                value = mask_url(value)
            elif isinstance(value, ProjectSettings):
                value = dataclasses.asdict(value)
            elif isinstance(value, dict):
                value = {k: dataclasses.asdict(v) for k, v in value.items()}
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _check_header_value(name: str, value: str) -> None:
    """A ValueError when ``value`` cannot travel in an HTTP header as it is (printable ASCII, no spaces at
    either end): a secret compared with a header would then never match. The message never shows it.

    >>> _check_header_value("HISTOLOOP_WEBHOOK_SECRET", "geheim-ß")
    Traceback (most recent call last):
    ...
    ValueError: HISTOLOOP_WEBHOOK_SECRET: character 8 of 8 is not printable ASCII: the secret is compared with the X-Histoloop-Webhook-Secret header, which carries printable ASCII only, so it could never match (generate one with python -c "import secrets; print(secrets.token_hex(32))")
    """
    bad = next((i for i, c in enumerate(value) if not " " <= c <= "~"), None)
    if bad is None and value == value.strip():
        return
    where = (
        f"character {bad + 1} of {len(value)} is not printable ASCII"
        if bad is not None
        else ("it begins or ends with a space")
    )
    raise ValueError(
        f"{name}: {where}: the secret is compared with the X-Histoloop-Webhook-Secret header, which carries "
        "printable ASCII only, so it could never match (generate one with "
        'python -c "import secrets; print(secrets.token_hex(32))")'
    )


def _mask_password(url: str) -> str:
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@", 1) if password else url


def mask_url(url: str) -> str:
    """``url`` with the credentials in it (``user:password@``) masked, for printing and logs.

    >>> mask_url("redis://:s3cret@redis:6379/0"), mask_url("https://admin:pw@ls.lab/"), mask_url("http://ls:8080")
    ('redis://***@redis:6379/0', 'https://***@ls.lab/', 'http://ls:8080')
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return url
    return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{path}"


_ALIASES = {
    # Label Studio's own names, so one .env serves both
    "label_studio_api_key": ("LABEL_STUDIO_API_KEY",),
    "local_files_root": ("LOCAL_FILES_DOCUMENT_ROOT",),
}


OTHER_VARIABLES = frozenset(
    {
        "HISTOLOOP_CONFIG",
        "HISTOLOOP_USER_HF_HUB_OFFLINE",  # training/offline.py keeps the user's HF_HUB_OFFLINE in it
        "HISTOLOOP_IMAGES",  # docker-compose.yml: the images folder it mounts
        # the tests' and benchmarks' own
        "HISTOLOOP_LABEL_STUDIO_VENV",
        "HISTOLOOP_SHARED",
        "HISTOLOOP_SHARED_DATA",
        "HISTOLOOP_BENCH_REDIS",
        "HISTOLOOP_TEST_POSTGRES",
        "HISTOLOOP_HYPOTHESIS_EXAMPLES",
    }
)
"""``HISTOLOOP_*`` variables that are not settings but are read by name elsewhere (never warned about)."""

_warned: set[str] = set()


def known_variables() -> frozenset[str]:
    """Every ``HISTOLOOP_*`` variable histoloop reads: one per setting, and :data:`OTHER_VARIABLES`."""
    names = {f.name for f in fields(Settings)} - {"project_defaults", "projects"}
    names |= _PROJECT_FIELDS - {"label_map", "train"}
    return frozenset({f"HISTOLOOP_{n.upper()}" for n in names} | OTHER_VARIABLES)


def _warn_unknown_variables(env: Mapping[str, str]) -> None:
    """Log a warning, once per process and name, for each ``HISTOLOOP_*`` variable that is no setting
    (a misspelt one would otherwise be silently ignored), naming the closest known one."""
    import difflib
    import logging

    known = known_variables()
    for var in sorted(v for v in env if v.startswith("HISTOLOOP_") and v not in known and v not in _warned):
        _warned.add(var)
        close = difflib.get_close_matches(var, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        logging.getLogger(__name__).warning("%s is not a histoloop setting: ignored%s", var, hint)


def _bool(source: str, raw: Any) -> bool:
    """``raw`` (a TOML boolean, or a variable's ``true``/``false``/``1``/``0``/``yes``/``no``) as a bool."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{source}: {raw!r} is not true or false")


def _number(source: str, raw: Any, typ: type[int] | type[float]) -> int | float:
    """``raw`` as an int or a float; otherwise a ValueError that names where it came from (``source``:
    the variable, or the config file's key)."""
    if isinstance(raw, bool) or (typ is int and isinstance(raw, float) and not raw.is_integer()):
        raise ValueError(f"{source}: {raw!r} is not an integer")
    try:
        return typ(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {raw!r} is not {'an integer' if typ is int else 'a number'}") from None


def _convert(source: str, raw: Any, typ: Any) -> Any:
    typ = str(typ)
    if raw is None:
        return None
    if "Path" in typ:
        return Path(str(raw)).expanduser() if str(raw) else None
    if "Secret" in typ:
        return Secret(str(raw))
    if typ == "int":
        return _number(source, raw, int)
    if typ == "float":
        return _number(source, raw, float)
    if typ.startswith("tuple"):
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(str(i).strip() for i in items if str(i).strip())
    return raw


def _project_settings(raw: Mapping[str, Any], base: ProjectSettings, where: str) -> ProjectSettings:
    unknown = set(raw) - _PROJECT_FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown project setting(s) {sorted(unknown)}")
    if "train" in raw:  # per kind: a project's options add to (and override) the defaults' kinds
        raw = {**raw, "train": {**base.train, **raw["train"]}}
    raw = {
        k: _number(f"{where}: {k}", v, _PROJECT_NUMBERS[k]) if k in _PROJECT_NUMBERS and v is not None else v
        for k, v in raw.items()
    }
    if "warm_start" in raw:
        raw = {**raw, "warm_start": _bool(f"{where}: warm_start", raw["warm_start"])}
    settings = dataclasses.replace(base, **raw)
    for name in _CHOICES:
        _check_choice(where, name, getattr(settings, name))
    return settings


_CHOICES: dict[str, tuple[str, ...]] = {
    "auto_promote": ("never", "if_better", "always"),
    "promotion_metric": PROMOTION_METRICS,
    "approval": ("submitted", "ground_truth", "reviewed"),
    "uncertainty": UNCERTAINTY_MEASURES,
}
"""The project settings that take one of a few words, and those words."""


def _check_choice(where: str, name: str, value: Any) -> None:
    if value not in _CHOICES[name]:
        raise ValueError(f"{where}: {name} must be {'|'.join(_CHOICES[name])}, not {value!r}")


def _project_variable(var: str, raw: str, name: str, current: Any) -> Any:
    """A project setting's value from its variable ``var``, of the type of its default ``current``."""
    if name == "min_score":
        return _number(var, raw, float) if raw.strip() else None
    if isinstance(current, bool):
        return _bool(var, raw)
    if isinstance(current, int | float):
        return _number(var, raw, type(current))
    return raw


def load_settings(config_file: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from the environment and an optional TOML file."""
    env = os.environ if env is None else env
    file_values: dict[str, Any] = {}
    store = Path(env.get("HISTOLOOP_MODEL_STORE", "~/.histoloop")).expanduser()
    path = config_file or env.get("HISTOLOOP_CONFIG")
    if path is None and (store / "histoloop.toml").is_file():
        path = store / "histoloop.toml"
    if path:
        path = Path(path).expanduser()
        try:
            file_values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config file {path}: {exc}") from exc

    _warn_unknown_variables(env)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name in ("project_defaults", "projects"):
            continue
        raw, source = file_values.get(f.name), f"config file {path}: {f.name}"
        for var in (f"HISTOLOOP_{f.name.upper()}", *_ALIASES.get(f.name, ())):
            if var in env:
                raw, source = env[var], var
                break
        if raw is not None:
            values[f.name] = _convert(source, raw, f.type)

    defaults = ProjectSettings()
    default_overrides = {k: file_values[k] for k in _PROJECT_FIELDS if k in file_values}
    for k in _PROJECT_FIELDS - {"label_map", "train"}:
        var = f"HISTOLOOP_{k.upper()}"
        if var in env:
            default_overrides[k] = _project_variable(var, env[var], k, getattr(defaults, k))
            if k in _CHOICES:  # the message names the variable that holds the bad word
                _check_choice(var, k, default_overrides[k])
    defaults = _project_settings(default_overrides, defaults, f"config file {path}" if path else "settings")
    projects = {
        str(pid): _project_settings(raw, defaults, f"[projects.{pid}]")
        for pid, raw in (file_values.get("projects") or {}).items()
    }
    unknown = set(file_values) - {f.name for f in fields(Settings)} - _PROJECT_FIELDS - {"projects"}
    if unknown:
        raise ValueError(f"config file {path}: unknown setting(s) {sorted(unknown)}")
    return Settings(**values, project_defaults=defaults, projects=projects)
