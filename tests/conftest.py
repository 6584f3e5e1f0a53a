"""Shared fixtures: every test gets a clean W&B environment, its own working directory and a
HOME it must not write to. Also the fake W&B server for online tests, and their helpers."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import wandb_nexus

import wandb_log
from fake_wandb import FakeWandb

REPO = Path(__file__).resolve().parent.parent


def build_environment(**extra: str) -> dict[str, str]:
    """The developer's real HOME for the build tools: cargo, rustup and zig keep their caches
    there, and a different HOME per test would rebuild everything each time (the tests'
    own HOME is a read-only stand-in). No AWS or W&B settings from outside."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WANDB_"))}
    environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    environ.update(AWS_REGION="us-east-1", WANDB_NEXUS_BUILD_PYTHON=sys.executable, **extra)
    return environ


# The Lambda emulator's sandbox (tests/lambda_emulator.py) is a mount namespace.
needs_sandbox = pytest.mark.skipif(
    shutil.which("unshare") is None, reason="the sandbox needs unshare (util-linux) and root"
)

_built_layers: set[str] = set()


def build_layer_once(arch: str) -> Path:
    """Builds the layer of `arch` from the current sources, once per test session; returns
    its tree (what Lambda extracts to /opt: python/ and extensions/)."""
    if arch not in _built_layers:
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "build_layer.py"), "--arch", arch],
            check=True,
            cwd=REPO,
            env=build_environment(),
        )
        _built_layers.add(arch)
    return REPO / "build" / f"layer-{arch}"


@pytest.fixture(scope="session")
def layer() -> Path:
    """The x86_64 layer as built from the current sources."""
    return build_layer_once("x86_64")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fresh cwd, no W&B or Lambda variables, and a read-only HOME."""
    for name in list(os.environ):
        if name.startswith(("WANDB_", "AWS_LAMBDA_", "AWS_EXECUTION_ENV", "NETRC")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    while wandb_nexus.run is not None:
        wandb_nexus.run.finish()
    home.chmod(stat.S_IRWXU)


def run_records(run: wandb_nexus.Run) -> list:
    """The records of a finished run's transaction log."""
    assert run.sync_dir is not None
    return wandb_log.read_records(Path(run.sync_dir) / f"run-{run.id}.wandb")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWandb]:
    """A fake W&B server that runs (and `sync_command`) talk to."""
    with FakeWandb() as server:
        monkeypatch.setenv("WANDB_BASE_URL", server.base_url)
        monkeypatch.setenv("WANDB_API_KEY", server.api_key)
        # Quick retries keep the fault tests short; Retry-After still sets its own pause.
        monkeypatch.setenv("WANDB_NEXUS_RETRY_WAIT_MIN", "0.05")
        yield server
    assert not server.internal_errors


def log_reference_run(**init_kwargs: object) -> wandb_nexus.Run:
    run = wandb_nexus.init(project="online", config={"lr": 0.1, "nested": {"a": 1}}, **init_kwargs)
    print("hello stdout")
    print("hello stderr", file=sys.stderr)
    for step in range(10):
        run.log({"loss": 1 / (step + 1), "d": {"x": step}})
    run.summary["best"] = 3
    run.finish()
    return run


def assert_arrived_whole(fake: FakeWandb, run: wandb_nexus.Run) -> None:
    """The run of `log_reference_run` is on the server, all of it, once."""
    state = fake.single_run()
    assert state.name == run.id
    assert [row["_step"] for row in state.history] == list(range(10))
    assert [row["loss"] for row in state.history] == [1 / (s + 1) for s in range(10)]
    assert state.config_values["lr"] == 0.1 and state.config_values["nested"] == {"a": 1}
    assert "t" in state.config_values["_wandb"]
    assert state.summary["best"] == 3 and state.summary["loss"] == 0.1
    assert any(line.endswith(" hello stdout") for line in state.console)
    assert any(
        line.startswith("ERROR ") and line.endswith(" hello stderr") for line in state.console
    )
    assert state.complete and state.exitcode == 0
    assert (
        sorted(state.uploaded)
        == sorted(state.files)
        == [
            "config.yaml",
            "output.log",
            "wandb-metadata.json",
            "wandb-summary.json",
        ]
    )


def sync_command(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m wandb_nexus sync ARGS...`, which must succeed."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb_nexus", "sync", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out
