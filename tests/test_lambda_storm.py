"""A storm: many execution environments (each a runtime process and the layer's extension)
take invocations at once against a W&B that rate-limits (429 with Retry-After) and goes
through a slow phase. Every row arrives exactly once, no invocation runs past its deadline,
no client comes back sooner than Retry-After said, and the whole storm ends by itself."""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import build_layer_once
from fake_wandb import FakeWandb
from lambda_emulator import Invocation, LambdaEmulator

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"
ENVIRONMENTS = 20
INVOCATIONS = 3
ROWS = 5
# The storm must end well inside this, or something waits that should not.
BOUND_SECONDS = 240

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None, reason="the sandbox needs unshare (util-linux) and root"
)


def test_a_storm_of_environments_against_a_rate_limited_wandb() -> None:
    layer = build_layer_once("x86_64")
    started = time.monotonic()
    with FakeWandb() as fake, ExitStack() as stack:
        env = {
            "WANDB_BASE_URL": fake.base_url,
            "WANDB_API_KEY": fake.api_key,
            "WANDB_NEXUS_RETRY_WAIT_MIN": "0.1",
            "WANDB_NEXUS_RETRY_WAIT_MAX": "0.5",
        }
        # Cold starts on a small machine: INIT may take longer than Lambda's 10 s here.
        environments = [
            stack.enter_context(
                LambdaEmulator(
                    FUNCTIONS,
                    "shutdown_functions.per_invocation",
                    env=env,
                    timeout=6,
                    opt=layer,
                    init_timeout=120,
                )
            )
            for _ in range(ENVIRONMENTS)
        ]
        fake.rate_limit(20, retry_after=1, burst=10)
        fake.slow_phase(3, 0.4)
        invocations: list[Invocation] = []
        failures: list[BaseException] = []
        lock = threading.Lock()

        def storm(lam: LambdaEmulator, number: int) -> None:
            try:
                for round_ in range(INVOCATIONS):
                    invocation = lam.invoke(
                        {"invocation": number * 100 + round_, "rows": ROWS}, pause=0.05
                    )
                    with lock:
                        invocations.append(invocation)
            except BaseException as err:  # reported below, with the others
                with lock:
                    failures.append(err)

        threads = [
            threading.Thread(target=storm, args=(lam, number))
            for number, lam in enumerate(environments)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND_SECONDS)
        assert not failures, failures
        assert fake.rejected > 0, "the storm never hit the rate limit"
        # The storm is over; runs its invocations could not deliver in time are delivered
        # by the extensions as Lambda retires the environments.
        fake.rate_limit(None)
        shutdowns = [lam.shutdown("spindown") for lam in environments]
        assert len(invocations) == ENVIRONMENTS * INVOCATIONS
        for invocation in invocations:
            assert invocation.outcome == "response" and not invocation.timed_out, invocation
        assert all(s is not None and not s.killed_at_deadline for s in shutdowns)
        by_invocation = {
            run.config_values["lambda"]["request_id"]: run
            for run in fake.runs()
            if "lambda" in run.config_values
        }
        assert len(fake.runs()) == len(invocations)
        for invocation in invocations:
            run = by_invocation[invocation.request_id]
            assert [row["i"] for row in run.history] == list(range(ROWS))
            assert run.complete and run.exitcode == 0
        violations = fake.retry_after_violations(include_shared=False)
        assert violations == [], "\n".join(map(str, violations))
    assert time.monotonic() - started < BOUND_SECONDS
