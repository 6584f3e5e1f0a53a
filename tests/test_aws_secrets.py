"""The API key read from AWS Secrets Manager or SSM Parameter Store (WANDB_API_KEY_SECRET_ARN,
WANDB_API_KEY_SSM_NAME) when a run is created, against moto server checking every request's
signature and the caller's IAM policy, as AWS does: a request signed wrongly, or by a role that
may not read the secret, is refused."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from test_serverless import Moto, credentials_of, extension_env, run_killed_runtime

import wandb_nexus as wandb

from conftest import REPO, needs_sandbox
from fake_extensions_api import FakeExtensionsApi
from fake_wandb import FakeWandb
from lambda_emulator import LambdaEmulator

# What each secret holds, by name; "{key}" is the fake W&B's API key.
SECRETS = {
    "wandb-plain": "{key}",
    "wandb-json": '{{"WANDB_API_KEY": "{key}", "note": "rotated monthly"}}',
    "wandb-json-api-key": '{{"api_key": "{key}"}}',
    "wandb-json-without": '{{"token": "{key}"}}',
    "wandb-blank": "   ",
    "wandb-rotating": "{key}",
    "wandb-init": "{key}",
    "wandb-provisioned": "{key}",
    "wandb-expiring": "{key}",
}
PARAMETER = "/wandb/api-key"


@dataclass
class Aws:
    moto: Moto
    fake: FakeWandb
    arns: dict[str, str]
    reader: dict[str, str]  # a role that may read the secrets and the parameter (with a token)
    stranger: dict[str, str]  # a user with no policy
    admin: dict[str, str]  # a user who may do anything (the one who rotates the key)


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    moto = Moto()
    with FakeWandb() as fake:
        try:
            secrets = moto.client("secretsmanager")
            arns = {
                name: secrets.create_secret(Name=name, SecretString=value.format(key=fake.api_key))[
                    "ARN"
                ]
                for name, value in SECRETS.items()
            }
            moto.client("ssm").put_parameter(
                Name=PARAMETER, Value=fake.api_key, Type="SecureString"
            )
            reader = moto.role_credentials(
                "reader",
                {"Action": ["secretsmanager:GetSecretValue", "ssm:GetParameter"], "Resource": "*"},
            )
            iam = moto.client("iam")
            iam.create_user(UserName="stranger")
            stranger = iam.create_access_key(UserName="stranger")["AccessKey"]
            iam.create_user(UserName="admin")
            everything = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
            iam.put_user_policy(
                UserName="admin", PolicyName="all", PolicyDocument=json.dumps(everything)
            )
            admin = iam.create_access_key(UserName="admin")["AccessKey"]
            moto.check_auth()
            yield Aws(
                moto,
                fake,
                arns,
                reader,
                credentials_of(stranger),
                credentials_of(admin),
            )
        finally:
            moto.stop()


@pytest.fixture
def function_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A Lambda function's environment: the role's credentials, the region, the endpoint,
    W&B's address, and no key."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.moto.url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("WANDB_BASE_URL", aws.fake.base_url)
    for name, value in aws.reader.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def log_a_run(aws: Aws, tmp_path: Path) -> None:
    before = len(aws.fake.runs())
    run = wandb.init(project="secrets", dir=str(tmp_path))
    run.log({"loss": 0.5})
    run.finish()
    assert len(aws.fake.runs()) == before + 1
    assert aws.fake.runs()[-1].complete
    # The key is in memory only: no file the run wrote holds it.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert aws.fake.api_key.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "secret", ["wandb-plain", "wandb-json", "wandb-json-api-key", "arn:wandb-plain"]
)
def test_the_key_from_a_secret_by_name_or_arn_plain_or_json(
    aws: Aws, function_env: pytest.MonkeyPatch, tmp_path: Path, secret: str
) -> None:
    name = secret.removeprefix("arn:")
    function_env.setenv("WANDB_API_KEY_SECRET_ARN", aws.arns[name] if secret != name else name)
    log_a_run(aws, tmp_path)


def test_the_key_from_an_ssm_securestring(
    aws: Aws, function_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # moto keeps a SecureString's value behind a "kms:" prefix unless it is read decrypted.
    function_env.setenv("WANDB_API_KEY_SSM_NAME", PARAMETER)
    log_a_run(aws, tmp_path)


class _CredentialsEndpoint(BaseHTTPRequestHandler):
    """The container credentials endpoint: the role's credentials for the right token, as
    many times as it is asked."""

    credentials: ClassVar[dict[str, str]] = {}
    asked: ClassVar[int] = 0

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "container-token":
            self.send_response(403)
            self.end_headers()
            return
        type(self).asked += 1
        body = json.dumps(
            {
                "AccessKeyId": self.credentials["AWS_ACCESS_KEY_ID"],
                "SecretAccessKey": self.credentials["AWS_SECRET_ACCESS_KEY"],
                "Token": self.credentials.get("AWS_SESSION_TOKEN"),
                "Expiration": "2099-01-01T00:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def credentials_endpoint(
    aws: Aws, function_env: pytest.MonkeyPatch
) -> Iterator[type[_CredentialsEndpoint]]:
    """The function's credentials from the container endpoint only (as under SnapStart),
    serving the reading role's until a test changes them."""
    _CredentialsEndpoint.credentials = aws.reader
    _CredentialsEndpoint.asked = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CredentialsEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name in aws.reader:
        function_env.delenv(name)
    port = server.server_address[1]
    function_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}/creds")
    function_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-token")
    yield _CredentialsEndpoint
    server.shutdown()


def test_under_snapstart_the_credentials_come_from_the_container_endpoint(
    aws: Aws,
    function_env: pytest.MonkeyPatch,
    credentials_endpoint: type[_CredentialsEndpoint],
    tmp_path: Path,
) -> None:
    # Fetched anew (the process keeps a key per secret): this secret by its ARN is no other
    # test's.
    function_env.setenv("WANDB_API_KEY_SECRET_ARN", aws.arns["wandb-json-api-key"])
    log_a_run(aws, tmp_path)
    assert credentials_endpoint.asked == 1


def test_credentials_that_expired_are_not_used_again(
    aws: Aws,
    function_env: pytest.MonkeyPatch,
    credentials_endpoint: type[_CredentialsEndpoint],
    tmp_path: Path,
) -> None:
    """The endpoint is asked at every fetch: after the key is rotated, the credentials the
    first fetch used are no longer valid, and the endpoint serves new ones."""
    admin = {"key": aws.admin["AWS_ACCESS_KEY_ID"], "secret": aws.admin["AWS_SECRET_ACCESS_KEY"]}
    iam = aws.moto.client("iam", **admin)
    iam.create_user(UserName="expiring")
    read = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
        ],
    }
    iam.put_user_policy(UserName="expiring", PolicyName="read", PolicyDocument=json.dumps(read))
    first = iam.create_access_key(UserName="expiring")["AccessKey"]
    credentials_endpoint.credentials = credentials_of(first)
    function_env.setenv("WANDB_API_KEY_SECRET_ARN", "wandb-expiring")
    log_a_run(aws, tmp_path)
    iam.delete_access_key(UserName="expiring", AccessKeyId=first["AccessKeyId"])
    second = iam.create_access_key(UserName="expiring")["AccessKey"]
    credentials_endpoint.credentials = credentials_of(second)
    old, new = aws.fake.api_key, "rotated-" + "e" * 32
    aws.moto.client("secretsmanager", **admin).put_secret_value(
        SecretId="wandb-expiring", SecretString=new
    )
    aws.fake.rotate_key(new)
    try:
        log_a_run(aws, tmp_path)
    finally:
        aws.fake.rotate_key(old)
    assert credentials_endpoint.asked == 2


@pytest.mark.parametrize(
    ("initialization", "secret", "asked_in_init"),
    [("on-demand", "wandb-init", 1), ("provisioned-concurrency", "wandb-provisioned", 0)],
)
def test_a_decorated_handler_fetches_the_key_during_init_unless_provisioned(
    aws: Aws,
    function_env: pytest.MonkeyPatch,
    credentials_endpoint: type[_CredentialsEndpoint],
    tmp_path: Path,
    initialization: str,
    secret: str,
    asked_in_init: int,
) -> None:
    """On demand, INIT is followed by the first invocation: the fetch runs during INIT, off
    the response's path. A provisioned environment may be frozen for hours after its INIT,
    which would cut the request: it fetches at the first invocation."""
    function_env.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", initialization)
    function_env.setenv("WANDB_API_KEY_SECRET_ARN", secret)

    def handler(event: dict, context: object) -> str:
        assert wandb.run is not None
        wandb.run.log({"loss": event["loss"]})
        return "ok"

    decorated = wandb.lambda_handler(handler, project="secrets", dir=str(tmp_path))
    deadline = time.monotonic() + 5
    while credentials_endpoint.asked < asked_in_init and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # long enough for a fetch that should not start to show
    assert credentials_endpoint.asked == asked_in_init
    before = len(aws.fake.runs())
    assert decorated({"loss": 0.5}, None) == "ok"
    assert credentials_endpoint.asked == 1
    assert len(aws.fake.runs()) == before + 1 and aws.fake.runs()[-1].complete


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        ("wandb-missing", "does not exist"),
        ("wandb-json-without", "without a string under WANDB_API_KEY or api_key"),
        ("wandb-blank", "its value is empty"),
    ],
)
def test_a_secret_that_cannot_serve_is_named_with_what_to_fix(
    aws: Aws, function_env: pytest.MonkeyPatch, tmp_path: Path, secret: str, words: str
) -> None:
    function_env.setenv("WANDB_API_KEY_SECRET_ARN", secret)
    with pytest.raises(wandb.AuthenticationError) as raised:
        wandb.init(project="secrets", dir=str(tmp_path))
    message = str(raised.value)
    assert f"Secrets Manager secret {secret}" in message and words in message, message
    assert aws.fake.api_key not in message


def test_refused_credentials_and_roles_are_told_apart(
    aws: Aws, function_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    function_env.setenv("WANDB_API_KEY_SSM_NAME", "/wandb/not-for-strangers")
    for name, value in aws.stranger.items():
        function_env.setenv(name, value)
    function_env.delenv("AWS_SESSION_TOKEN")
    with pytest.raises(wandb.AuthenticationError, match="grant it ssm:GetParameter"):
        wandb.init(project="secrets", dir=str(tmp_path))
    function_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-key")
    with pytest.raises(wandb.AuthenticationError, match="wrong or expired") as raised:
        wandb.init(project="secrets", dir=str(tmp_path))
    assert "not-the-secret-key" not in str(raised.value)


def test_an_unreachable_endpoint_is_named_and_offline_runs_need_no_secret(
    aws: Aws, function_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    function_env.setenv("WANDB_API_KEY_SECRET_ARN", "wandb-unreachable")
    function_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(wandb.CommError, match=r"127\.0\.0\.1:9/ cannot be reached"):
        wandb.init(project="secrets", dir=str(tmp_path))
    run = wandb.init(project="secrets", dir=str(tmp_path), mode="offline")
    run.log({"loss": 1})
    run.finish()
    assert run.mode == "offline"


def test_the_layer_extension_fetches_the_key_at_shutdown_and_delivers(
    aws: Aws, layer: Path, tmp_path: Path
) -> None:
    env = extension_env(aws.fake, tmp_path)
    del env["WANDB_API_KEY"]
    env.update(
        aws.reader,
        AWS_ENDPOINT_URL=aws.moto.url,
        AWS_REGION="us-east-1",
        WANDB_API_KEY_SECRET_ARN=aws.arns["wandb-json"],
    )
    api = FakeExtensionsApi()
    proc = api.start(layer / "extensions" / "wandb-nexus", env)
    run_killed_runtime(env)  # its run needed the key too: it read it from the secret
    before = len(aws.fake.runs())
    assert api.waiting.wait(10)
    api.shutdown("TIMEOUT")
    assert proc.wait(5) == 0
    said = proc.communicate()[1]
    api.close()
    assert "delivers nothing" not in said, said
    run = aws.fake.runs()[-1]
    assert len(aws.fake.runs()) == before
    assert [row["loss"] for row in run.history] == [1 / (step + 1) for step in range(50)]
    assert run.exitcode == 1
    assert aws.fake.api_key not in said
    assert aws.reader["AWS_SECRET_ACCESS_KEY"] not in said


def test_a_rotated_key_is_fetched_again_when_wandb_refuses_the_kept_one(
    aws: Aws, function_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    function_env.setenv("WANDB_API_KEY_SECRET_ARN", "wandb-rotating")
    log_a_run(aws, tmp_path)  # the key is fetched, and kept for the process
    old, new = aws.fake.api_key, "rotated-" + "k" * 32
    admin = aws.moto.client(
        "secretsmanager", aws.admin["AWS_ACCESS_KEY_ID"], aws.admin["AWS_SECRET_ACCESS_KEY"]
    )
    admin.put_secret_value(SecretId="wandb-rotating", SecretString=new)
    aws.fake.rotate_key(new)
    asked_before = len(aws.fake.requests)
    try:
        # W&B refuses the kept key: the secret is read again, once, and the run starts.
        log_a_run(aws, tmp_path)
        refused = [r for r in aws.fake.requests[asked_before:] if r.status == 401]
        assert len(refused) == 1
    finally:
        aws.fake.rotate_key(old)


@needs_sandbox
def test_a_function_deployed_with_the_secret_and_no_key_logs_to_wandb(
    aws: Aws, layer: Path
) -> None:
    """`hello` with the layer under the emulated Lambda lifecycle, its environment as the
    deployment makes it: the secret's ARN, the role's credentials, no key."""
    env = {
        **aws.reader,
        "AWS_ENDPOINT_URL": aws.moto.url,
        "WANDB_BASE_URL": aws.fake.base_url,
        "WANDB_API_KEY_SECRET_ARN": aws.arns["wandb-json"],
    }
    before = len(aws.fake.runs())
    with LambdaEmulator(REPO, "handler.hello", env=env, opt=layer, timeout=20) as lam:
        for number in range(2):
            invocation = lam.invoke({"n": number})
            assert invocation.outcome == "response", lam.output.decode()
            # Frozen now: delivered within the invocation, with the key from the secret.
            run = aws.fake.runs()[-1]
            assert run.complete and len(run.history) == 10
        files = b""
        for path in lam.tmp_files():
            try:
                files += lam.read_tmp(path)
            except IsADirectoryError:
                pass
    assert len(aws.fake.runs()) == before + 2
    for secret in (aws.fake.api_key, aws.reader["AWS_SECRET_ACCESS_KEY"]):
        assert secret.encode() not in lam.output
        assert secret.encode() not in files
