"""``histoloop settings`` masks every secret, credentials in URLs included."""

from __future__ import annotations

from click.testing import CliRunner

from histoloop.cli.main import main


def test_settings_mask_passwords_and_url_credentials(tmp_path) -> None:
    env = {
        "HISTOLOOP_MODEL_STORE": str(tmp_path),
        "HISTOLOOP_REDIS_URL": "redis://:redis-pw@redis:6379/0",
        "HISTOLOOP_LABEL_STUDIO_URL": "https://admin:ls-pw@ls.lab.example/",
        "HISTOLOOP_LABEL_STUDIO_API_KEY": "api-key",
        "HISTOLOOP_BASIC_AUTH_PASSWORD": "basic-pw",
        "HISTOLOOP_WEBHOOK_SECRET": "hook-secret",
    }
    result = CliRunner().invoke(main, ["settings"], env=env)
    assert result.exit_code == 0, result.output
    for secret in ("redis-pw", "ls-pw", "admin", "api-key", "basic-pw", "hook-secret"):
        assert secret not in result.output
    assert '"redis_url": "redis://***@redis:6379/0"' in result.output
    assert '"label_studio_url": "https://***@ls.lab.example/"' in result.output


def test_a_webhook_secret_that_no_header_can_carry_is_refused_at_load(tmp_path) -> None:
    """Non-ASCII (or control characters, or spaces at the ends: HTTP strips them) can never equal the
    X-Histoloop-Webhook-Secret header: refused at settings load, naming the variable, never the secret."""
    for secret in ("pässwört-geheim", "tab\tinside", " padded "):
        env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_WEBHOOK_SECRET": secret}
        result = CliRunner().invoke(main, ["settings"], env=env)
        assert result.exit_code == 2, result.output
        assert "HISTOLOOP_WEBHOOK_SECRET" in result.output and "never match" in result.output
        assert secret.strip() not in result.output and "geheim" not in result.output
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_WEBHOOK_SECRET": "ok secret-0123 ~!"}
    assert CliRunner().invoke(main, ["settings"], env=env).exit_code == 0
