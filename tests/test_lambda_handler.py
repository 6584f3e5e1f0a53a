"""`wandb_nexus.lambda_handler` called directly, as `sls invoke local` and `python handler.py`
call a handler: no Extensions API, so each run is delivered before the handler returns."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import wandb_nexus as wandb
from wandb_nexus import _core, _snapstart

from conftest import run_records
from fake_wandb import FakeWandb


class Context:
    """The attributes awslambdaric's context has."""

    aws_request_id = "0b1c2d3e-request"
    function_name = "lambda-wandb-nexus-dev-hello"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:hello"
    memory_limit_in_mb = "256"
    log_group_name = "/aws/lambda/hello"
    log_stream_name = "2026/11/25/[$LATEST]abc"

    def get_remaining_time_in_millis(self) -> int:
        return 5000


def test_return_value_passes_through_and_the_run_is_finished_with_its_context() -> None:
    result = object()

    @wandb.lambda_handler(project="p", config={"lr": 0.1})
    def handler(event: Any, context: Any) -> Any:
        assert wandb.run is not None
        wandb.log({"x": event["x"]})
        return result

    assert handler({"x": 3}, Context()) is result
    run = handler.last_run
    assert run is not None and run.finished and wandb.run is None
    assert handler.__name__ == "handler"
    assert run.config["lr"] == 0.1
    info = run.config["lambda"]
    assert info == {
        "cold_start": info["cold_start"],
        "request_id": "0b1c2d3e-request",
        "function_name": "lambda-wandb-nexus-dev-hello",
        "function_version": "$LATEST",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:hello",
        "log_group": "/aws/lambda/hello",
        "log_stream": "2026/11/25/[$LATEST]abc",
        "memory_limit_mb": 256,
        "remaining_time_ms": 5000,
    }
    handler({"x": 4}, Context())
    assert handler.last_run is not run
    assert handler.last_run.config["lambda"]["cold_start"] is False


def test_an_exception_finishes_with_exit_code_1_and_its_traceback() -> None:
    @wandb.lambda_handler(project="p")
    def handler(event: Any, context: Any) -> Any:
        wandb.log({"x": 1})
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        handler({}, None)
    run = handler.last_run
    assert run is not None and run.finished
    exit_record = next(r for r in run_records(run) if r.HasField("exit")).exit
    assert exit_record.exit_code == 1
    output = (Path(run.sync_dir) / "files" / "output.log").read_text()
    assert "Traceback (most recent call last)" in output and "KeyError: 'missing'" in output


def test_one_run_per_environment_keeps_counting_steps() -> None:
    @wandb.lambda_handler(project="p", run_per="environment")
    def handler(event: Any, context: Any) -> int:
        assert wandb.run is not None
        wandb.log({"x": 1})
        wandb.log({"x": 2})
        return wandb.run.step

    assert [handler({}, Context()) for _ in range(3)] == [2, 4, 6]
    run = handler.last_run
    assert run is not None and not run.finished and wandb.run is run
    run.finish()


def test_delivered_before_returning_without_the_extensions_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeWandb() as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.base_url)
        monkeypatch.setenv("WANDB_API_KEY", fake.api_key)

        @wandb.lambda_handler(project="p")
        def handler(event: Any, context: Any) -> str:
            for i in range(5):
                wandb.log({"i": i})
            # Nothing has been sent while the handler runs.
            assert fake.requests == []
            return "done"

        assert handler({}, Context()) == "done"
        state = fake.single_run()
        assert [row["i"] for row in state.history] == list(range(5))
        assert state.complete and state.exitcode == 0
        run = handler.last_run
        assert run is not None
        assert run.url == f"{fake.base_url}/{fake.entity}/p/runs/{run.id}"
        assert (Path(run.sync_dir) / f"run-{run.id}.wandb.synced").exists()


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(wandb.UsageError, match="run_per must be one of"):
        wandb.lambda_handler(run_per="request")
    with pytest.raises(wandb.UsageError, match="flush must be one of invocation, periodic"):
        wandb.lambda_handler(run_per="environment", flush="sometimes")
    with pytest.raises(wandb.UsageError, match='flush="periodic" needs run_per="environment"'):
        wandb.lambda_handler(flush="periodic")
    for interval in (0, -1.5, float("nan"), "60", True, None):
        with pytest.raises(wandb.UsageError, match="flush_interval must be"):
            wandb.lambda_handler(run_per="environment", flush="periodic", flush_interval=interval)


def test_a_periodic_environment_run_is_sent_only_when_due(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside Lambda a due send happens before the handler returns; one not due leaves the
    rows stored, for the next due send (or the environment's end)."""
    import time

    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])

    @wandb.lambda_handler(run_per="environment", flush="periodic", flush_interval=60)
    def handler(event: dict, context: object) -> None:
        wandb.log({"i": event["i"]})

    handler({"i": 0}, None)
    assert [row["i"] for row in fake.single_run().history] == [0]
    clock[0] += 30
    handler({"i": 1}, None)
    assert [row["i"] for row in fake.single_run().history] == [0]
    clock[0] += 31
    handler({"i": 2}, None)
    assert [row["i"] for row in fake.single_run().history] == [0, 1, 2]


def test_arguments_from_the_event_name_the_run_and_a_failing_one_is_named() -> None:
    @wandb.lambda_handler(
        id=lambda event, context: event["job"],
        name=lambda event, context: f"job {event.get('job')}",
        tags=lambda event, context: [context.function_name],
        config=lambda event, context: {"size": len(event)},
    )
    def handler(event: dict[str, Any], context: Any) -> None:
        wandb.log({"x": 1})

    handler({"job": "job-1"}, Context())
    run = handler.last_run
    assert run is not None and run.id == "job-1" and run.name == "job job-1"
    assert run.tags == (Context.function_name,) and run.config["size"] == 1
    with pytest.raises(wandb.UsageError, match=r"lambda_handler\(id=...\) failed.*KeyError"):
        handler({"other": 1}, Context())


ENVIRONMENT_RUN_SCRIPT = """
import wandb_nexus as wandb

@wandb.lambda_handler(project="p", run_per="environment")
def handler(event, context):
    wandb.log({"i": event})

for i in range(3):
    handler(i, None)
"""


def test_an_environment_run_is_finished_and_delivered_when_a_local_process_exits(
    clean_env: Path,
) -> None:
    with FakeWandb() as fake:
        env = {**os.environ, "WANDB_BASE_URL": fake.base_url, "WANDB_API_KEY": fake.api_key}
        out = subprocess.run(
            [sys.executable, "-c", ENVIRONMENT_RUN_SCRIPT],
            capture_output=True,
            text=True,
            env=env,
            cwd=clean_env,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        state = fake.single_run()
        assert [row["i"] for row in state.history] == [0, 1, 2]
        assert state.complete and state.exitcode == 0


def _delivered_before_returning(handler: Any, fake: FakeWandb) -> None:
    assert handler({}, Context()) == "done"
    state = fake.single_run()
    assert [row["i"] for row in state.history] == list(range(3))
    assert state.complete and state.exitcode == 0


def _logging_handler(**options: Any) -> Any:
    @wandb.lambda_handler(project="p", **options)
    def handler(event: Any, context: Any) -> str:
        for i in range(3):
            wandb.log({"i": i})
        return "done"

    return handler


def test_an_unparseable_max_concurrency_is_named_and_runs_go_before_returning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeWandb() as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.base_url)
        monkeypatch.setenv("WANDB_API_KEY", fake.api_key)
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")
        monkeypatch.setenv("AWS_LAMBDA_MAX_CONCURRENCY", "lots")
        handler = _logging_handler()
        said = capsys.readouterr().err
        assert 'AWS_LAMBDA_MAX_CONCURRENCY is "lots"' in said
        assert "delivered before the handler returns" in said
        _delivered_before_returning(handler, fake)


class _HookLibrary(types.ModuleType):
    """snapshot_restore_py as Lambda's runtimes have it (registering only), or one whose
    registration fails."""

    def __init__(self, fails: bool = False):
        super().__init__("snapshot_restore_py")
        self.fails = fails
        self.before: list[Any] = []
        self.after: list[Any] = []

    def register_before_snapshot(self, hook: Any) -> None:
        if self.fails:
            raise RuntimeError("the hook registry is broken")
        self.before.append(hook)

    def register_after_restore(self, hook: Any) -> None:
        self.after.append(hook)


@pytest.fixture
def snapstart(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A SnapStart INIT whose hooks are not registered yet."""
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    monkeypatch.setattr(_snapstart, "hooks_registered", False)
    monkeypatch.setattr(_snapstart, "_in_init", False)
    return monkeypatch


@pytest.mark.parametrize("library", ["missing", "failing"])
def test_snapstart_without_working_hooks_delivers_before_returning(
    snapstart: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], library: str
) -> None:
    module = None if library == "missing" else _HookLibrary(fails=True)
    snapstart.setitem(sys.modules, "snapshot_restore_py", module)  # type: ignore[arg-type]
    _snapstart.register_hooks()
    said = capsys.readouterr().err
    assert "SnapStart hooks are not registered" in said
    assert ("ModuleNotFoundError" if library == "missing" else "hook registry is broken") in said
    with FakeWandb() as fake:
        snapstart.setenv("WANDB_BASE_URL", fake.base_url)
        snapstart.setenv("WANDB_API_KEY", fake.api_key)
        snapstart.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        handler = _logging_handler()
        assert "SnapStart without its runtime hooks" in capsys.readouterr().err
        _delivered_before_returning(handler, fake)


def test_snapstart_refuses_runs_until_restored_and_its_hooks_never_raise(
    snapstart: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    library = _HookLibrary()
    snapstart.setitem(sys.modules, "snapshot_restore_py", library)
    _snapstart.register_hooks()
    assert _snapstart.hooks_registered and len(library.before) == len(library.after) == 1
    with pytest.raises(wandb.UsageError, match="during a SnapStart INIT"):
        wandb.init(mode="offline", dir=str(tmp_path))

    def broken() -> None:
        raise RuntimeError("no snapshot for you")

    snapstart.setattr(_core, "before_snapshot", broken)
    snapstart.setattr(_core, "after_restore", broken)
    library.before[0]()
    library.after[0]()
    said = capsys.readouterr().err
    assert "before the SnapStart snapshot: RuntimeError: no snapshot for you" in said
    assert "after the SnapStart restore: RuntimeError: no snapshot for you" in said
    run = wandb.init(mode="offline", dir=str(tmp_path))
    run.log({"restored": 1})
    run.finish()


def test_snapstart_imported_inside_an_invocation_refuses_nothing(
    snapstart: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The runtime sets the invocation's trace id before calling the handler.
    snapstart.setenv("_X_AMZN_TRACE_ID", "Root=1-0-0")
    snapstart.setitem(sys.modules, "snapshot_restore_py", _HookLibrary())
    _snapstart.register_hooks()
    assert _snapstart.hooks_registered
    run = wandb.init(mode="offline", dir=str(tmp_path))
    run.finish()
