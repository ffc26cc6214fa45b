"""`histoloop predict`: its errors without Label Studio, and one queued job per project (real Redis/RQ).

The prediction itself runs against a real Label Studio in tests/e2e/test_bulk_predict.py.
"""

from __future__ import annotations

from click.testing import CliRunner

from histoloop.cli import main


def run(env, *args):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_without_a_key_or_label_studio_it_says_so(tmp_path) -> None:
    env = {
        "HISTOLOOP_MODEL_STORE": str(tmp_path),
        "HISTOLOOP_LABEL_STUDIO_API_KEY": "",
        "LABEL_STUDIO_API_KEY": "",
    }
    out = run(env, "predict", "--project", "4")
    assert out.exit_code == 1 and "no Label Studio API key" in out.output
    env["HISTOLOOP_LABEL_STUDIO_API_KEY"] = "a" * 40
    env["HISTOLOOP_LABEL_STUDIO_URL"] = "http://127.0.0.1:9"
    out = run(env, "predict", "--project", "4")
    assert out.exit_code == 1 and "http://127.0.0.1:9/api/projects/4/: ConnectionError" in out.output
    assert "a" * 40 not in out.output


def test_queue_one_job_per_project(tmp_path, test_redis) -> None:
    from redis import Redis
    from rq.job import Job

    url = f"{test_redis}/6"
    Redis.from_url(url).flushdb()
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path), "HISTOLOOP_REDIS_URL": url, "HISTOLOOP_QUEUE": "bulk-test"}
    first = run(env, "predict", "--project", "4", "--batch", "16", "--only-missing", "--queue")
    second = run(env, "predict", "--project", "4", "--queue")
    assert first.output.strip() == second.output.strip() == "predict-4"
    job = Job.fetch("predict-4", connection=Redis.from_url(url))
    assert job.func_name == "ml_backend.bulk.predict_job"
    assert job.args == (4,) and job.kwargs == {"only_missing": True, "batch": 16}
    assert job.origin == "bulk-test"
