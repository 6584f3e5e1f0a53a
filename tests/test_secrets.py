"""The API key goes to the API host and nowhere else: not into any file a run writes, not into
what the process prints (warnings, tracebacks, debug switches on), not into exceptions or
reprs, and not to upload hosts. A key kept in AWS, and the AWS credentials that read it, go
nowhere either."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_serverless import Moto

import wandb_nexus as wandb

from fake_wandb import FakeWandb

# Everything a user might do with a run, including what fails: every message and repr is
# printed, so that the test sees them.
SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    import wandb_nexus as wandb

    warnings.simplefilter("always")
    run = wandb.init(project="secrets", config={"lr": 0.1})
    print(repr(run), repr(run._core), repr(run.config), repr(run.summary), run.url)
    for step in range(3):
        run.log({"loss": step})
    run.summary["best"] = 1
    try:
        run.log({"bad": object()})
    except wandb.UnsupportedValueError as e:
        print("refused:", e)
    run.flush()
    run.finish()
    try:
        run.log({"late": 1})
    except wandb.UsageError as e:
        print("refused:", e)
    print(vars(run))
    raise SystemExit(sys.argv[1])
    """
)


def secret_forms(key: str) -> list[bytes]:
    """The key as it could leak: itself, or inside an Authorization header."""
    basic = base64.b64encode(f"api:{key}".encode())
    return [key.encode(), basic, basic.decode().encode("utf-16-le")]


def assert_nowhere(forms: list[bytes], texts: list[str], roots: list[Path]) -> None:
    for text in texts:
        for form in forms:
            assert form not in text.encode(), f"the key leaked into output: {text[-300:]!r}"
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(form in data for form in forms), f"the key leaked into {path}"


def run_script(fake: FakeWandb, tmp_path: Path, exit_code: str, **env: str) -> str:
    environ = {
        **os.environ,
        "WANDB_BASE_URL": fake.base_url,
        "WANDB_API_KEY": fake.api_key,
        "TMPDIR": str(tmp_path / "tmp"),
        # Debug switches of wandb and of Rust programs change nothing here; set to prove it.
        "WANDB_DEBUG": "true",
        "WANDB_CORE_DEBUG": "true",
        "RUST_LOG": "trace",
        "RUST_BACKTRACE": "full",
        **env,
    }
    (tmp_path / "tmp").mkdir(exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, exit_code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environ,
        timeout=120,
    )
    return out.stdout + out.stderr


@pytest.mark.parametrize("exit_code", ["0", "3"])
def test_the_key_is_in_no_file_output_or_message(
    fake: FakeWandb, tmp_path: Path, exit_code: str
) -> None:
    output = run_script(fake, tmp_path, exit_code)
    assert "refused:" in output and fake.single_run().complete
    assert_nowhere(secret_forms(fake.api_key), [output], [tmp_path])
    for request in fake.requests:
        if request.kind == "upload":
            assert "authorization" not in request.headers


def test_the_key_is_in_no_message_when_delivery_fails(fake: FakeWandb, tmp_path: Path) -> None:
    # Every file_stream request fails: finish warns and keeps the run for a later sync.
    fake.inject("file_stream", [500] * 1000)
    output = run_script(fake, tmp_path, "0", WANDB_NEXUS_RETRY_SECONDS="1")
    assert "sync" in output
    assert_nowhere(secret_forms(fake.api_key), [output], [tmp_path])


def test_the_key_is_in_no_exception(fake: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "w" * 40
    monkeypatch.setenv("WANDB_API_KEY", wrong)
    with pytest.raises(wandb.AuthenticationError) as refused:
        wandb.init(project="secrets")
    messages = [str(refused.value), repr(refused.value)]
    monkeypatch.setenv("WANDB_API_KEY", fake.api_key)
    fake.inject("graphql:UpsertBucket", [403])
    with pytest.raises(wandb.CommError) as failed:
        wandb.init(project="secrets")
    messages += [str(failed.value), repr(failed.value)]
    assert_nowhere(secret_forms(wrong) + secret_forms(fake.api_key), messages, [])


def test_a_key_kept_in_aws_and_the_credentials_reading_it_are_in_no_file_output_or_message(
    fake: FakeWandb, tmp_path: Path
) -> None:
    moto = Moto()
    try:
        secret = moto.client("secretsmanager").create_secret(
            Name="wandb", SecretString=json.dumps({"WANDB_API_KEY": fake.api_key})
        )["ARN"]
        credentials = {
            "AWS_ACCESS_KEY_ID": "ASIA" + secrets.token_hex(8).upper(),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "AWS_SESSION_TOKEN": secrets.token_urlsafe(120),
        }
        output = run_script(
            fake,
            tmp_path,
            "0",
            WANDB_API_KEY="",
            WANDB_API_KEY_SECRET_ARN=secret,
            AWS_ENDPOINT_URL=moto.url,
            AWS_REGION="us-east-1",
            **credentials,
        )
    finally:
        moto.stop()
    assert "refused:" in output and fake.single_run().complete
    forms = secret_forms(fake.api_key) + [
        credentials[name].encode() for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    ]
    assert_nowhere(forms, [output], [tmp_path])
