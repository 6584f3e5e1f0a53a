"""The layer as built, on every Lambda Python runtime: each Lambda Python version (3.10 to
3.14) on x86_64 and on arm64 (under qemu-user), with the real runtime interface client built
for that interpreter (tests/lambda_runtimes.py, prepared by scripts/lambda_runtimes), under
the emulated Lambda lifecycle (tests/lambda_emulator.py) against the fake W&B. A runtime this
machine cannot have is skipped, saying what is missing.

As in tests/test_lambda_runtime.py, every check of what W&B holds is made while the
environment is frozen or gone, so whatever the server holds was delivered before."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_lambda_runtime import run_of
from test_serverless import arm64_available

from conftest import build_layer_once, needs_sandbox
from fake_wandb import FakeWandb, RunState
from lambda_emulator import LambdaEmulator
from lambda_runtimes import Runtime, runtimes

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"
RUNTIMES = runtimes()
# Asked now: the tests' own HOME hides rustup's.
ARM64_LAYER = arm64_available()
# qemu-user runs arm64 code several times slower than the machine runs its own: starting
# Python and importing the runtime client and the layer take seconds there.
SLOWER = {"x86_64": 1, "arm64": 3}

pytestmark = needs_sandbox


@pytest.fixture(params=RUNTIMES, ids=[runtime.name for runtime in RUNTIMES])
def runtime(request: pytest.FixtureRequest) -> Runtime:
    runtime: Runtime = request.param
    if runtime.missing is not None:
        pytest.skip(runtime.missing)
    if runtime.arch == "arm64" and not ARM64_LAYER:
        pytest.skip("the arm64 layer needs Rust's aarch64-unknown-linux-gnu target")
    return runtime


def environment(
    runtime: Runtime, fake: FakeWandb, timeout: float, **options: Any
) -> LambdaEmulator:
    wandb = {"WANDB_BASE_URL": fake.base_url, "WANDB_API_KEY": fake.api_key}
    return LambdaEmulator(
        FUNCTIONS,
        "version_functions.log_rows",
        env=wandb,
        timeout=timeout * SLOWER[runtime.arch],
        init_timeout=10.0 * SLOWER[runtime.arch],
        opt=build_layer_once(runtime.arch),
        runtime=runtime,
        **options,
    )


def offered_from(runtime: Runtime, version: str, model: str) -> None:
    """Skips a model on runtimes Lambda does not offer it on."""
    if tuple(map(int, runtime.version.split("."))) < tuple(map(int, version.split("."))):
        pytest.skip(f"Lambda offers {model} from python{version}")


def assert_rows(run: RunState, rows: int, invocation: int) -> None:
    """Each of the invocation's rows once, in order."""
    assert [row["i"] for row in run.history] == list(range(rows)), run.history
    assert {row["invocation"] for row in run.history} == {invocation}


def test_the_layer_runs_on_the_runtime_and_delivers_before_the_freeze(
    runtime: Runtime, fake: FakeWandb
) -> None:
    # The layer carries the runtime's bytecode: /opt is read-only, so without it every cold
    # start would compile the package.
    tag = "cpython-" + runtime.version.replace(".", "")
    cache = build_layer_once(runtime.arch) / "python" / "wandb_nexus" / "__pycache__"
    assert (cache / f"__init__.{tag}.pyc").exists()
    with environment(runtime, fake, timeout=5) as lam:
        # INIT: the layer's external extension, then ours inside the runtime process.
        assert lam.extension_names == ["wandb-nexus", "wandb-nexus-internal"]
        assert lam.extension("wandb-nexus").events == ["SHUTDOWN"]
        runs = set()
        for number in range(3):
            invocation = lam.invoke({"invocation": number, "rows": 4})
            assert invocation.outcome == "response", lam.output.decode()
            assert invocation.body["version"] == [int(n) for n in runtime.version.split(".")]
            assert invocation.body["machine"] == runtime.machine
            assert invocation.body["execution_env"] == f"AWS_Lambda_python{runtime.version}"
            assert invocation.body["package"] == "/opt/python/wandb_nexus/__init__.py"
            assert lam.frozen
            run = run_of(fake, invocation)
            assert_rows(run, 4, number)
            assert run.complete and run.exitcode == 0
            assert run.console[0].endswith("logged 4 rows")
            runs.add(run.name)
    assert len(runs) == 3


def test_an_exception_finishes_the_run_as_failed(runtime: Runtime, fake: FakeWandb) -> None:
    with environment(runtime, fake, timeout=5) as lam:
        failed = lam.invoke({"invocation": 0, "rows": 3, "end": "raise"})
        assert failed.outcome == "error"
        assert failed.body["errorType"] == "ValueError"
        assert lam.frozen
        run = run_of(fake, failed)
    assert_rows(run, 3, 0)
    assert run.complete and run.exitcode == 1
    assert any(line.endswith("Traceback (most recent call last):") for line in run.console)
    assert any("ValueError: invocation 0 failed on purpose" in line for line in run.console)


def test_a_timed_out_run_is_delivered_by_the_extension_at_shutdown(
    runtime: Runtime, fake: FakeWandb
) -> None:
    with environment(runtime, fake, timeout=1) as lam:
        timed_out = lam.invoke({"invocation": 0, "rows": 3, "end": "timeout"})
        reset = timed_out.reset
        assert timed_out.outcome == "timeout" and reset is not None
        assert reset.reason == "timeout" and reset.runtime_killed
        assert reset.sent_to == ["wandb-nexus"] and not reset.killed_at_deadline
        # The runtime was killed before SHUTDOWN was sent: the extension sent all of it.
        assert reset.shutdown_sent_at is not None
        assert all(request.received_at > reset.shutdown_sent_at for request in fake.requests)
        run = run_of(fake, timed_out)
    assert_rows(run, 3, 0)
    assert run.complete and run.exitcode == 1
    assert any("timed out" in line for line in run.console), run.console


def test_snapstart_copies_of_one_snapshot_deliver_distinct_runs(
    runtime: Runtime, fake: FakeWandb
) -> None:
    offered_from(runtime, "3.12", "SnapStart")
    with environment(runtime, fake, timeout=5, snapstart=True) as snapshot:
        assert snapshot.tmp_files() == []
        bodies = []
        with snapshot.restore() as one, snapshot.restore() as two:
            for number, copy in enumerate([one, two]):
                invocation = copy.invoke({"invocation": number, "rows": 4})
                assert invocation.outcome == "response", snapshot.output.decode()
                assert copy.frozen
                run = run_of(fake, invocation)
                assert_rows(run, 4, number)
                assert run.complete and run.exitcode == 0
                bodies.append(invocation.body)
    assert bodies[0]["run"] != bodies[1]["run"] and bodies[0]["pid"] != bodies[1]["pid"]
    assert bodies[0]["version"] == [int(n) for n in runtime.version.split(".")]
    assert len(fake.runs()) == 2


def test_managed_instances_workers_deliver_every_row_once(
    runtime: Runtime, fake: FakeWandb
) -> None:
    offered_from(runtime, "3.13", "Managed Instances")
    options = {"max_concurrency": 4, "memory_mb": 2048}
    with environment(runtime, fake, timeout=10, **options) as lam:
        assert lam.extension_names == ["wandb-nexus"]

        def invoke(number: int) -> Any:
            while True:
                invocation = lam.invoke({"invocation": number, "rows": 4})
                if invocation.outcome != "throttled":
                    return invocation
                time.sleep(0.01)

        with ThreadPoolExecutor(4) as pool:
            invocations = list(pool.map(invoke, range(12)))
        assert {invocation.outcome for invocation in invocations} == {"response"}
        end = time.monotonic() + 30 * SLOWER[runtime.arch]
        while sum(run.complete for run in fake.runs()) < 12:
            assert time.monotonic() < end, "the workers did not deliver"
            time.sleep(0.05)
    for number, invocation in enumerate(invocations):
        run = run_of(fake, invocation)
        assert_rows(run, 4, number)
        assert run.complete and run.exitcode == 0
    assert len(fake.runs()) == 12
