"""The Lambda layer and the Serverless flow, without AWS: manylinux2014 abi3 wheels, layer
zips within budget, `sls package` / `deploy` / `info` / `invoke` / `remove` against a moto
server that enforces the shipped deploy policy, and `sls invoke local` with the built layer."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wandb_log
from conftest import REPO, build_environment, build_layer_once
from fake_extensions_api import FakeExtensionsApi
from fake_wandb import FakeWandb

sys.path.insert(0, str(REPO / "scripts"))
import build_layer

MOTO_ACCOUNT = "123456789012"
# Lambda starts each file in /opt/extensions; this one registers under its file name.
EXTENSION = f"extensions/{build_layer.EXTENSION}"
LAYER_BUDGET = 5_000_000  # bytes, zipped, per architecture
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}


def arm64_available() -> bool:
    return build_layer.RUST_TARGETS["arm64"] in build_layer.installed_rust_targets()


@pytest.fixture(scope="session")
def built_arches() -> list[str]:
    """Builds the layers once for the session (cargo makes later builds quick)."""
    arches = ["x86_64", "arm64"] if arm64_available() else ["x86_64"]
    for arch in arches:
        build_layer_once(arch)
    return arches


def test_missing_aarch64_target_is_said_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_layer, "installed_rust_targets", lambda: {"x86_64-unknown-linux-gnu"})
    with pytest.raises(build_layer.BuildError, match=r"rustup target add aarch64-unknown-linux"):
        build_layer.build_wheel("arm64", REPO / "dist" / "unused")


def highest_glibc(shared_object: Path) -> tuple[int, ...]:
    out = subprocess.run(
        ["objdump", "-T", str(shared_object)], capture_output=True, text=True, check=True
    ).stdout
    versions = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([0-9.]+)", out)}
    assert versions, f"no GLIBC symbols found in {shared_object}"
    return max(versions)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_wheels_are_abi3_manylinux2014(built_arches: list[str], arch: str, tmp_path: Path) -> None:
    if arch not in built_arches:
        pytest.skip("the aarch64 Rust target is not installed here")
    machine = ARCHES[arch]
    (wheel,) = (REPO / "dist" / "wheels" / arch).glob("*.whl")
    assert wheel.name.endswith(
        f"-cp310-abi3-manylinux2014_{machine}.manylinux_2_17_{machine}.whl"
    ), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path)
    tags = (next(tmp_path.glob("*.dist-info")) / "WHEEL").read_text()
    assert f"Tag: cp310-abi3-manylinux_2_17_{machine}" in tags
    so = tmp_path / "wandb_nexus" / "_core.abi3.so"
    elf_machine = subprocess.run(["file", "-b", str(so)], capture_output=True, text=True).stdout
    assert ("x86-64" if arch == "x86_64" else "aarch64") in elf_machine
    assert highest_glibc(so) <= (2, 17)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_layer_zip_layout_and_budget(built_arches: list[str], arch: str) -> None:
    if arch not in built_arches:
        pytest.skip("the aarch64 Rust target is not installed here")
    layer = REPO / "dist" / f"layer-{arch}.zip"
    assert layer.stat().st_size <= LAYER_BUDGET
    with zipfile.ZipFile(layer) as zf:
        names = zf.namelist()
    # The package, and the external extension beside it: nothing else.
    assert all(name.startswith("python/") for name in names if name != EXTENSION)
    assert EXTENSION in names
    for needed in ("__init__.py", "_core.abi3.so", "_run.py", "py.typed"):
        assert f"python/wandb_nexus/{needed}" in names
    # Bytecode for (at least) the Python running this, so imports on Lambda need no compiling.
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    assert f"python/wandb_nexus/__pycache__/_run.{tag}.pyc" in names
    assert not any(name.endswith(("direct_url.json", "RECORD")) for name in names)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_layer_extension_is_an_executable_for_lambda(
    built_arches: list[str], arch: str, tmp_path: Path
) -> None:
    if arch not in built_arches:
        pytest.skip("the aarch64 Rust target is not installed here")
    with zipfile.ZipFile(REPO / "dist" / f"layer-{arch}.zip") as zf:
        info = zf.getinfo(EXTENSION)
        binary = Path(zf.extract(info, tmp_path))
    # Unix mode bits in the zip: Lambda unzips the layer with them, and runs the file.
    assert info.create_system == 3
    assert (info.external_attr >> 16) & 0o777 == 0o755
    elf = subprocess.run(["file", "-b", str(binary)], capture_output=True, text=True).stdout
    assert "ELF 64-bit" in elf and "executable" in elf, elf
    assert ("x86-64" if arch == "x86_64" else "aarch64") in elf, elf
    assert highest_glibc(binary) <= (2, 17)
    # Built without Python: it must start where no libpython exists.
    needed = subprocess.run(
        ["objdump", "-p", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    assert "libpython" not in needed


def test_layer_extension_runs_and_refuses_to_start_outside_lambda(built_arches: list[str]) -> None:
    binary = REPO / "build" / "layer-x86_64" / EXTENSION
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(binary)], capture_output=True, text=True, env=env, timeout=10)
    assert out.returncode == 1
    assert out.stderr == (
        "wandb-nexus extension: AWS_LAMBDA_RUNTIME_API is not set: "
        "this is a Lambda extension, run by Lambda\n"
    )


# A runtime that logs rows to an online run and dies (SIGKILL, as at a timeout) before its end.
KILLED_RUNTIME = """
import os, signal, time, wandb_nexus
run = wandb_nexus.init(project="killed")
for step in range(50):
    run.log({"loss": 1 / (step + 1)})
time.sleep(0.5)  # the writer thread puts the rows in the log
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_killed_runtime(env: dict[str, str]) -> None:
    runtime = subprocess.run([sys.executable, "-c", KILLED_RUNTIME], env=env, timeout=60)
    assert runtime.returncode == -9


def extension_env(fake: FakeWandb, root: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "AWS_LAMBDA_FUNCTION_NAME": "f",
        "WANDB_API_KEY": fake.api_key,
        "WANDB_BASE_URL": fake.base_url,
        "WANDB_DIR": str(root),
        # Nothing streamed while the run is open: all its rows are left to deliver.
        "WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL": "3600",
        **extra,
    }


def test_layer_extension_delivers_at_shutdown_what_a_killed_runtime_left(
    built_arches: list[str], fake: FakeWandb, tmp_path: Path
) -> None:
    api = FakeExtensionsApi()
    env = extension_env(fake, tmp_path)
    proc = api.start(REPO / "build" / "layer-x86_64" / EXTENSION, env)
    assert api.registration == {"name": "wandb-nexus", "events": ["SHUTDOWN"]}
    run_killed_runtime(env)
    assert all(not run.history for run in fake.runs())
    assert api.waiting.wait(10)
    api.shutdown("TIMEOUT")
    assert proc.wait(5) == 0
    # One line for the function's log: what SHUTDOWN cost; nothing went wrong.
    assert re.fullmatch(
        r"wandb-nexus extension: SHUTDOWN handled in \d+ ms; peak memory [0-9.]+ MiB\n",
        proc.communicate()[1],
    )
    api.close()
    run = fake.single_run()
    assert [row["loss"] for row in run.history] == [1 / (step + 1) for step in range(50)]
    assert run.exitcode == 1  # it died: W&B marks the run failed
    (log,) = (tmp_path / "wandb").glob("run-*/run-*.wandb")
    assert log.with_name(log.name + ".synced").exists()


def test_layer_extension_turned_off_registers_and_delivers_nothing(
    built_arches: list[str], fake: FakeWandb, tmp_path: Path
) -> None:
    api = FakeExtensionsApi()
    env = extension_env(fake, tmp_path, WANDB_NEXUS_EXTENSION="off")
    # Registered all the same: an extension that exits during init fails the environment.
    proc = api.start(REPO / "build" / "layer-x86_64" / EXTENSION, env)
    run_killed_runtime(env)
    assert api.waiting.wait(10)
    api.shutdown("SPINDOWN")
    assert proc.wait(5) == 0
    assert proc.communicate()[1] == (
        "wandb-nexus extension: turned off by WANDB_NEXUS_EXTENSION=off; it delivers nothing\n"
    )
    api.close()
    assert all(not run.history for run in fake.runs())


# ---------------------------------------------------------------------------- moto and sls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A moto server on loopback. With `enforce_after`, requests after that many are checked
    against IAM policies, as AWS does."""

    def __init__(self, enforce_after: int | None = None) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = dict(os.environ)
        if enforce_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(enforce_after)
        moto_server = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", self.url.rsplit(":", 1)[1]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", int(self.url.rsplit(":", 1)[1]))):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto server did not start")
        import requests

        # No docker here: Lambda invoke echoes its payload instead of running code.
        requests.post(f"{self.url}/moto-api/config", json={"lambda": {"use_docker": False}})

    def client(self, service: str, key: str = "test", secret: str = "test"):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def role_credentials(self, name: str, allow: dict[str, Any]) -> dict[str, str]:
        """The credentials a Lambda function gets of its role `name` (with a session token):
        a role whose one policy allows `allow` (its Action and Resource)."""
        iam = self.client("iam")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **allow}]}
        iam.put_role_policy(RoleName=name, PolicyName="allow", PolicyDocument=json.dumps(policy))
        assumed = self.client("sts").assume_role(
            RoleArn=role["Role"]["Arn"], RoleSessionName="function"
        )
        return credentials_of(assumed["Credentials"])

    def check_auth(self, enforced: bool = True) -> None:
        """From now on every request is authenticated and authorised, as AWS does (or, with
        `enforced` false, none is)."""
        import requests

        limit = b"0" if enforced else b"inf"
        requests.post(f"{self.url}/moto-api/reset-auth", data=limit).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def credentials_of(key: dict[str, Any]) -> dict[str, str]:
    """The environment of AWS credentials as IAM or STS gave them."""
    found = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
    if "SessionToken" in key:
        found["AWS_SESSION_TOKEN"] = key["SessionToken"]
    return found


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto()
    yield server
    server.stop()


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """The service as a user has it, in a directory of its own (so a developer's .env or
    .serverless/ never leaks in); sources and build outputs are the repository's."""
    root = tmp_path / "service"
    root.mkdir()
    for name in ("serverless.yml", "handler.py"):
        shutil.copy(REPO / name, root / name)
    for name in ("serverless", "scripts", "dist", "build", "node_modules"):
        (REPO / name).mkdir(exist_ok=True)
        (root / name).symlink_to(REPO / name)
    return root


def sls(service: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environ = build_environment()
    environ.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", **(env or {})})
    out = subprocess.run(
        ["npx", "sls", *args],
        cwd=service,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"sls {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def template(service: Path) -> dict:
    return json.loads(
        (service / ".serverless" / "cloudformation-template-update-stack.json").read_text()
    )


def test_package_makes_a_valid_template_with_the_layer(
    built_arches: list[str], moto: Moto, service: Path
) -> None:
    (service / ".env").write_text("WANDB_PROJECT=from-dotenv\nWANDB_ENTITY=team\n")
    sls(service, "package", env={"AWS_ENDPOINT_URL": moto.url})
    resources = template(service)["Resources"]
    layer = resources["WandbNexusLambdaLayer"]
    assert layer["Type"] == "AWS::Lambda::LayerVersion"
    props = layer["Properties"]
    assert props["LayerName"] == "lambda-wandb-nexus-dev-x86_64"
    assert props["CompatibleArchitectures"] == ["x86_64"]
    assert props["CompatibleRuntimes"] == [f"python3.{minor}" for minor in range(10, 15)]
    assert props["Content"]["S3Key"].endswith("/layer-x86_64.zip")
    function = resources["HelloLambdaFunction"]["Properties"]
    assert function["Layers"] == [{"Ref": "WandbNexusLambdaLayer"}]
    assert function["Architectures"] == ["x86_64"]
    assert function["Handler"] == "handler.hello" and function["Runtime"] == "python3.13"
    assert function["Timeout"] == 30 and function["MemorySize"] == 256
    variables = function["Environment"]["Variables"]
    assert variables["WANDB_PROJECT"] == "from-dotenv" and variables["WANDB_ENTITY"] == "team"
    with zipfile.ZipFile(service / ".serverless" / "lambda-wandb-nexus.zip") as zf:
        assert zf.namelist() == ["handler.py"]
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")),
         str(service / ".serverless" / "cloudformation-template-update-stack.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("variable", "name", "action", "arn"),
    [
        (
            "WANDB_API_KEY_SECRET_ARN",
            "wandb/api-key",
            "secretsmanager:GetSecretValue",
            "secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:wandb/api-key-??????",
        ),
        (
            "WANDB_API_KEY_SSM_NAME",
            "/wandb/api-key",
            "ssm:GetParameter",
            "ssm:${AWS::Region}:${AWS::AccountId}:parameter/wandb/api-key",
        ),
    ],
)
def test_a_key_kept_in_aws_is_named_not_passed_and_only_it_may_be_read(
    built_arches: list[str],
    moto: Moto,
    service: Path,
    variable: str,
    name: str,
    action: str,
    arn: str,
) -> None:
    (service / ".env").write_text(f"WANDB_API_KEY=must-not-be-deployed\n{variable}={name}\n")
    sls(service, "package", env={"AWS_ENDPOINT_URL": moto.url})
    resources = template(service)["Resources"]
    variables = resources["HelloLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert variables[variable] == name and "WANDB_API_KEY" not in variables
    assert "must-not-be-deployed" not in json.dumps(template(service))
    (policy,) = resources["IamRoleLambdaExecution"]["Properties"]["Policies"]
    granted = [
        st for st in policy["PolicyDocument"]["Statement"] if action in as_list(st["Action"])
    ]
    assert granted == [
        {
            "Effect": "Allow",
            "Action": [action],
            "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:{arn}"},
        }
    ]
    # Nothing else of Secrets Manager, SSM or KMS, except SSM's own use of KMS.
    others = [
        st
        for st in policy["PolicyDocument"]["Statement"]
        if st not in granted
        and any(a.split(":")[0] in ("secretsmanager", "ssm", "kms") for a in as_list(st["Action"]))
    ]
    if variable == "WANDB_API_KEY_SSM_NAME":
        (decrypt,) = others
        assert decrypt["Action"] == ["kms:Decrypt"]
        assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == {
            "Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"
        }
    else:
        assert others == []


def test_the_env_example_documents_a_working_env(
    built_arches: list[str], moto: Moto, service: Path
) -> None:
    """`.env.example` copied to `.env` with its secret's line uncommented, as it says."""
    example = (REPO / ".env.example").read_text()
    assert "# WANDB_API_KEY_SECRET_ARN=" in example and "# WANDB_API_KEY_SSM_NAME=" in example
    (service / ".env").write_text(
        example.replace("# WANDB_API_KEY_SECRET_ARN=", "WANDB_API_KEY_SECRET_ARN=")
    )
    sls(service, "package", env={"AWS_ENDPOINT_URL": moto.url})
    function = template(service)["Resources"]["HelloLambdaFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["WANDB_API_KEY_SECRET_ARN"] == "wandb/api-key"
    assert "WANDB_API_KEY" not in variables and "WANDB_API_KEY_SSM_NAME" not in variables
    assert variables["WANDB_PROJECT"] == "lambda-wandb-nexus"


def test_arm64_is_one_setting(built_arches: list[str], moto: Moto, service: Path) -> None:
    if "arm64" not in built_arches:
        pytest.skip("the aarch64 Rust target is not installed here")
    sls(service, "package", env={"AWS_ENDPOINT_URL": moto.url, "LAMBDA_ARCHITECTURE": "arm64"})
    resources = template(service)["Resources"]
    assert resources["HelloLambdaFunction"]["Properties"]["Architectures"] == ["arm64"]
    props = resources["WandbNexusLambdaLayer"]["Properties"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert props["Content"]["S3Key"].endswith("/layer-arm64.zip")


def deploy_policy() -> dict:
    text = (REPO / "aws" / "deploy-policy.json").read_text()
    assert "{account_id}" in text
    return json.loads(text.replace("{account_id}", MOTO_ACCOUNT))


# moto checks API operation names where IAM has other action names, and authorises most
# services against resource "*"; this is the translation into its vocabulary.
MOTO_ACTION_NAMES = {"s3:ListBucket": ["s3:HeadBucket"], "lambda:InvokeFunction": ["lambda:Invoke"]}


def as_list(resource: str | list[str]) -> list[str]:
    return resource if isinstance(resource, list) else [resource]


def as_moto_policy(policy: dict) -> dict:
    statements = []
    for st in policy["Statement"]:
        actions = st["Action"] + [a for x in st["Action"] for a in MOTO_ACTION_NAMES.get(x, [])]
        resources = as_list(st["Resource"])
        if not all(a.startswith("s3:") for a in actions):
            resources = ["*"]  # moto checks only S3 against real ARNs
        else:  # moto authorises a multi-object delete against the bucket, not each object
            resources += [r[:-2] for r in resources if r.endswith("/*")]
        statements.append({**st, "Action": actions, "Resource": resources})
    return {**policy, "Statement": statements}


def deployer(moto: Moto, policy: dict) -> dict[str, str]:
    iam = moto.client("iam")
    iam.create_user(UserName="deployer")
    iam.put_user_policy(UserName="deployer", PolicyName="deploy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    return {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


@pytest.mark.parametrize("key_in", ["environment", "secret"])
def test_deploy_info_invoke_remove_under_the_deploy_policy(
    built_arches: list[str], service: Path, key_in: str
) -> None:
    # The deploy policy covers a function that reads its key from a secret as well.
    if key_in == "secret":
        (service / ".env").write_text("WANDB_API_KEY_SECRET_ARN=wandb/api-key\n")
    # moto lets 4 requests through unchecked: its config call and the 3 that create the user.
    moto = Moto(enforce_after=4)
    try:
        env = deployer(moto, as_moto_policy(deploy_policy()))
        assert "Service deployed" in sls(service, "deploy", env=env)
        cf = moto.client("cloudformation", env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        stack_resources = cf.list_stack_resources(StackName="lambda-wandb-nexus-dev")
        kinds = {r["ResourceType"] for r in stack_resources["StackResourceSummaries"]}
        assert {"AWS::Lambda::LayerVersion", "AWS::Lambda::Function"} <= kinds
        assert "stack: lambda-wandb-nexus-dev" in sls(service, "info", env=env)
        # moto echoes the payload: the invoke round trip works, no code runs.
        assert '"ping": 1' in sls(
            service, "invoke", "-f", "hello", "-l", "-d", '{"ping": 1}', env=env
        )
        assert "successfully removed" in sls(service, "remove", env=env)
    finally:
        moto.stop()


def test_policy_enforcement_is_real(built_arches: list[str], service: Path) -> None:
    """The same deploy fails when the policy lacks an action it needs."""
    moto = Moto(enforce_after=4)
    try:
        policy = as_moto_policy(deploy_policy())
        for st in policy["Statement"]:
            st["Action"] = [a for a in st["Action"] if a != "cloudformation:DescribeStacks"]
        env = deployer(moto, policy)
        out = subprocess.run(
            ["npx", "sls", "deploy"],
            cwd=service,
            env=build_environment(**env),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode != 0
        assert "not authorized to perform: cloudformation:DescribeStacks" in out.stdout + out.stderr
    finally:
        moto.stop()


def joined(value: str | dict) -> str:
    """A template string, with an `Fn::Join` resolved (`AWS::Region` as us-east-1)."""
    if isinstance(value, str):
        return value
    separator, parts = value["Fn::Join"]
    regions = {"Ref": "AWS::Region"}
    return separator.join("us-east-1" if part == regions else joined(part) for part in parts)


def test_policy_scopes_resources_to_the_stack(
    built_arches: list[str], moto: Moto, service: Path
) -> None:
    policy = deploy_policy()
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    for needed in (
        "lambda:PublishLayerVersion",
        "lambda:GetLayerVersion",
        "lambda:DeleteLayerVersion",
    ):
        assert needed in actions
    unscoped = {a for st in policy["Statement"] if st["Resource"] == "*" for a in st["Action"]}
    assert unscoped == {"cloudformation:ValidateTemplate", "logs:DescribeLogGroups"}
    layer_resources = next(st["Resource"] for st in policy["Statement"] if st["Sid"] == "Layer")
    assert f"arn:aws:lambda:*:{MOTO_ACCOUNT}:layer:lambda-wandb*" in layer_resources
    # The names the template gives its resources fall inside the policy's patterns.
    sls(service, "package", env={"AWS_ENDPOINT_URL": moto.url})
    resources = template(service)["Resources"]
    names = {
        "layer": f"arn:aws:lambda:us-east-1:{MOTO_ACCOUNT}:layer:"
        + resources["WandbNexusLambdaLayer"]["Properties"]["LayerName"],
        "function": f"arn:aws:lambda:us-east-1:{MOTO_ACCOUNT}:function:"
        + resources["HelloLambdaFunction"]["Properties"]["FunctionName"],
        "role": f"arn:aws:iam::{MOTO_ACCOUNT}:role/"
        + joined(resources["IamRoleLambdaExecution"]["Properties"]["RoleName"]),
        "logs": f"arn:aws:logs:us-east-1:{MOTO_ACCOUNT}:log-group:"
        + resources["HelloLogGroup"]["Properties"]["LogGroupName"],
        "stack": f"arn:aws:cloudformation:us-east-1:{MOTO_ACCOUNT}:stack/lambda-wandb-nexus-dev/x",
    }
    patterns = [r for st in policy["Statement"] for r in as_list(st["Resource"])]
    for what, arn in names.items():
        assert any(p != "*" and fnmatch.fnmatchcase(arn, p) for p in patterns), (what, arn)


def test_invoke_local_runs_the_handler_with_the_built_layer(
    built_arches: list[str], service: Path, tmp_path: Path
) -> None:
    # A bare virtualenv: wandb_nexus can only come from the layer on PYTHONPATH.
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    lambda_tmp = tmp_path / "lambda-tmp"
    lambda_tmp.mkdir()
    out = sls(
        service,
        "invoke", "local", "-f", "hello", "-d", '{"x": 1}',
        env={
            "VIRTUAL_ENV": str(bare),
            "PATH": f"{bare / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "TMPDIR": str(lambda_tmp),
        },
    )  # fmt: skip
    response = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["input"] == {"x": 1} and body["run"]["mode"] == "offline"
    run_dir = Path(body["run"]["dir"])
    assert run_dir.parent == lambda_tmp / "wandb"  # invoke local looks like Lambda: /tmp
    assert (run_dir / f"run-{body['run']['id']}.wandb").exists()


ARM64_ROOT = REPO / "build" / "arm64-root"


def test_arm64_layer_logs_a_run_under_qemu(built_arches: list[str], tmp_path: Path) -> None:
    qemu = shutil.which("qemu-aarch64-static")
    python = ARM64_ROOT / "usr" / "bin" / "python3.11"
    if "arm64" not in built_arches or qemu is None or not python.exists():
        pytest.skip("needs the arm64 layer, qemu-user-static and scripts/arm64_python_root")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import platform, wandb_nexus as wandb\n"
        "assert platform.machine() == 'aarch64', platform.machine()\n"
        "run = wandb.init(project='arm', dir=sys.argv[2], config={'arch': 'arm64'})\n"
        "for i in range(3): run.log({'i': i})\n"
        "run.finish(); print(run.sync_dir)\n"
    )
    layer = REPO / "build" / "layer-arm64" / "python"
    out = subprocess.run(
        [qemu, "-L", str(ARM64_ROOT), str(python), "-c", script, str(layer), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]},
    )
    assert out.returncode == 0, out.stderr
    sync_dir = Path(out.stdout.strip().splitlines()[-1])
    records = wandb_log.read_records(next(sync_dir.glob("*.wandb")))
    assert [row["i"] for row in wandb_log.history_rows(records)] == [0, 1, 2]
