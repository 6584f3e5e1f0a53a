"""The example Lambda function, run as a user runs it: `python handler.py hello`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from fake_wandb import FakeWandb, wandb_sync


def run_handler(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "handler.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
    )


def test_hello_offline_says_where_the_run_went_and_it_syncs(clean_env: Path) -> None:
    out = run_handler(clean_env, "hello")
    assert out.returncode == 0, out.stderr
    response = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["message"] == "Your function executed successfully!"
    assert body["run"]["mode"] == "offline" and body["run"]["project"] == "lambda-wandb-nexus"
    run_dir = Path(body["run"]["dir"])
    assert run_dir.parent == clean_env / "wandb"
    assert f"Upload it with: wandb sync {run_dir}" in out.stdout
    with FakeWandb() as fake:
        wandb_sync(run_dir, fake)
        state = fake.single_run()
        assert [row["epoch"] for row in state.history] == list(range(10))
        assert state.config_values["epochs"] == 10
        assert state.config_values["lambda"] == {"cold_start": True}
        assert "final_accuracy" in state.summary and state.exitcode == 0


def test_hello_online_arrives_whole(clean_env: Path) -> None:
    with FakeWandb() as fake:
        out = run_handler(
            clean_env, "hello", WANDB_BASE_URL=fake.base_url, WANDB_API_KEY=fake.api_key
        )
        assert out.returncode == 0, out.stderr
        state = fake.single_run()
        assert f"is at {fake.base_url}/{fake.entity}/lambda-wandb-nexus/runs/{state.name}" in (
            out.stdout
        )
        assert [row["epoch"] for row in state.history] == list(range(10))
        assert all(0 <= row["accuracy"] <= 1 for row in state.history)
        assert state.config_values["learning_rate"] == 0.01
        assert state.summary["final_accuracy"] == state.history[-1]["accuracy"]
        assert state.job_type == "local" and state.complete and state.exitcode == 0
        assert fake.api_key not in out.stdout + out.stderr


def test_unknown_function_is_a_usage_error(clean_env: Path) -> None:
    out = run_handler(clean_env, "goodbye")
    assert out.returncode == 2 and "usage: python handler.py {hello}" in out.stderr
