from pathlib import Path

import pytest

from kernel.settings import ProjectSettings, Secret, load_settings


def test_defaults_work_on_one_machine() -> None:
    s = load_settings(env={})
    assert s.model_store == Path("~/.histoloop").expanduser()
    assert s.registry_path == s.model_store / "registry.sqlite"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.project("1").auto_promote == "if_better"


def test_environment_beats_file_beats_default(tmp_path: Path) -> None:
    cfg = tmp_path / "histoloop.toml"
    cfg.write_text(
        'redis_url = "redis://file:6379/0"\nport = 9191\nretrain_threshold = 30\n'
        "[train.segment]\nepochs = 9\n"
        '[projects."4"]\nmin_score = 0.5\nlabel_map = { tumor = "Tumor" }\n'
        "train.detect = { epochs = 3, imgsz = 128 }\n"
    )
    env = {"HISTOLOOP_CONFIG": str(cfg), "HISTOLOOP_PORT": "9292", "HISTOLOOP_AUTO_PROMOTE": "never"}
    s = load_settings(env=env)
    assert s.redis_url == "redis://file:6379/0" and s.port == 9292
    assert s.project("99").retrain_threshold == 30 and s.project("99").auto_promote == "never"
    p4 = s.project("4")
    assert (p4.min_score, p4.retrain_threshold, p4.auto_promote) == (0.5, 30, "never")
    assert p4.label_map == {"tumor": "Tumor"} and p4.train["detect"] == {"epochs": 3, "imgsz": 128}
    assert p4.train["segment"] == {"epochs": 9} == s.project("99").train["segment"]


def test_secrets_never_show(tmp_path: Path) -> None:
    key = "0123456789abcdef0123456789abcdef01234567"
    s = load_settings(env={"LABEL_STUDIO_API_KEY": key, "HISTOLOOP_BASIC_AUTH_PASSWORD": "hunter2"})
    assert s.label_studio_api_key.get() == key and isinstance(s.label_studio_api_key, Secret)
    assert key not in repr(s) and "hunter2" not in repr(s)
    assert key not in str(s.redacted()) and s.redacted()["label_studio_api_key"] == "***"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = 1\n", "unknown setting"),
        ('[projects."4"]\nauto_promote = "sometimes"\n', "auto_promote must be"),
        ('[projects."4"]\nminscore = 0.3\n', "unknown project setting"),
        ("port = \n", "config file"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_settings(cfg, env={})


def test_database_url_shows_where_but_not_the_password() -> None:
    s = load_settings(env={"HISTOLOOP_DATABASE_URL": "postgresql://histoloop:s3cret@db:5432/histoloop"})
    assert s.events_target == "postgresql://histoloop:s3cret@db:5432/histoloop"
    assert s.redacted()["database_url"] == "postgresql://histoloop:***@db:5432/histoloop"
    assert "s3cret" not in repr(s)
    assert load_settings(env={}).events_target == load_settings(env={}).model_store / "events.sqlite"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HISTOLOOP_RETRAIN_THRESHOLD": "abc"}, "HISTOLOOP_RETRAIN_THRESHOLD: 'abc' is not an integer"),
        ({"HISTOLOOP_PORT": "90x"}, "HISTOLOOP_PORT: '90x' is not an integer"),
        ({"HISTOLOOP_IMAGE_TIMEOUT": "soon"}, "HISTOLOOP_IMAGE_TIMEOUT: 'soon' is not a number"),
        ({"HISTOLOOP_MIN_SCORE": "high"}, "HISTOLOOP_MIN_SCORE: 'high' is not a number"),
        ({"HISTOLOOP_PROMOTION_MARGIN": "1,5"}, "HISTOLOOP_PROMOTION_MARGIN: '1,5' is not a number"),
        ({"HISTOLOOP_WARM_START": "maybe"}, "HISTOLOOP_WARM_START: 'maybe' is not true or false"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        load_settings(env=env)
    assert str(raised.value) == message


def test_a_bad_value_in_the_config_file_names_its_key(tmp_path: Path) -> None:
    cfg = tmp_path / "histoloop.toml"
    cfg.write_text('port = "ninety"\n')
    with pytest.raises(ValueError, match=r"histoloop.toml: port: 'ninety' is not an integer"):
        load_settings(env={"HISTOLOOP_CONFIG": str(cfg)})


def test_a_misspelt_variable_is_warned_about_once_with_the_closest_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"HISTOLOOP_RETRAIN_TRESHOLD": "5", "HISTOLOOP_PORT": "9191", "HISTOLOOP_CONFIG": ""}
    with caplog.at_level("WARNING", logger="kernel.settings"):
        s = load_settings(env=env)
        load_settings(env=env)
    assert s.project("1").retrain_threshold == 20 and s.port == 9191
    warned = [r.getMessage() for r in caplog.records if r.name == "kernel.settings"]
    assert warned == [
        "HISTOLOOP_RETRAIN_TRESHOLD is not a histoloop setting: ignored; did you mean HISTOLOOP_RETRAIN_THRESHOLD?"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('retrain_threshold = "abc"\n', r"histoloop.toml: retrain_threshold: 'abc' is not an integer"),
        ('[projects."3"]\nmin_score = "high"\n', r"\[projects.3\]: min_score: 'high' is not a number"),
        (
            '[projects."3"]\nretrain_threshold = 2.5\n',
            r"\[projects.3\]: retrain_threshold: 2.5 is not an integer",
        ),
    ],
)
def test_a_bad_project_value_in_the_config_file_names_its_key(
    tmp_path: Path, text: str, message: str
) -> None:
    cfg = tmp_path / "histoloop.toml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_settings(env={"HISTOLOOP_CONFIG": str(cfg)})


def test_promotion_metric_is_a_project_setting(tmp_path: Path) -> None:
    assert load_settings(env={}).project("4").promotion_metric == "primary"
    cfg = tmp_path / "h.toml"
    cfg.write_text('promotion_metric = "corrections"\n[projects."4"]\npromotion_metric = "primary"\n')
    s = load_settings(cfg, env={})
    assert (s.project("4").promotion_metric, s.project("5").promotion_metric) == ("primary", "corrections")
    s = load_settings(cfg, env={"HISTOLOOP_PROMOTION_METRIC": "corrections"})
    assert s.project("9").promotion_metric == "corrections"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("", {"HISTOLOOP_PROMOTION_METRIC": "dice"}, "HISTOLOOP_PROMOTION_METRIC: promotion_metric must be"),
        (
            'promotion_metric = "work"\n',
            {},
            r"h.toml: promotion_metric must be primary\|corrections, not 'work'",
        ),
        (
            '[projects."4"]\npromotion_metric = "Corrections"\n',
            {},
            r"\[projects.4\]: promotion_metric must be",
        ),
        ("", {"HISTOLOOP_AUTO_PROMOTE": "sometimes"}, "HISTOLOOP_AUTO_PROMOTE: auto_promote must be"),
    ],
)
def test_bad_promotion_metric_names_the_variable(tmp_path: Path, text: str, env: dict, message: str) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_settings(cfg, env=env)


def test_warm_start_per_project_from_the_file_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "histoloop.toml"
    cfg.write_text('[projects."4"]\nwarm_start = false\n[projects."5"]\nwarm_start = true\n')
    s = load_settings(cfg, env={})
    assert s.project("4").warm_start is False and s.project("5").warm_start is True
    assert s.project("6").warm_start is ProjectSettings().warm_start
    off = load_settings(env={"HISTOLOOP_WARM_START": "false"})
    assert off.project("6").warm_start is False
    assert load_settings(env={"HISTOLOOP_WARM_START": "1"}).project("6").warm_start is True
    cfg.write_text('[projects."4"]\nwarm_start = "sometimes"\n')
    with pytest.raises(ValueError, match=r"warm_start: 'sometimes' is not true or false"):
        load_settings(cfg, env={})
