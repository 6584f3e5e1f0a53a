"""Start-up and SHUTDOWN delivery of the external Lambda extension (`extensions/wandb-nexus`).

Plays Lambda's Extensions API on loopback (register answers at once; event/next blocks until
the bench sends SHUTDOWN) and runs the extension executable from the built layer:

  * start: from spawning the process until its register request arrives (Runtime init
    waits for it), and its peak resident memory (VmHWM) while it waits in event/next;
  * shutdown: a runtime logs rows to a run and is killed (SIGKILL, as at a timeout); the
    extension gets SHUTDOWN(timeout) with Lambda's 2 s budget and delivers the run to the
    fake W&B server of the tests. Prints how long that took and what arrived.

    python bench/extension.py [--binary PATH] [--starts N]

The runtime side needs wandb_nexus importable (the module of the current checkout).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fake_extensions_api import FakeExtensionsApi  # noqa: E402
from fake_wandb import FakeWandb  # noqa: E402

DEFAULT_BINARY = REPO / "build" / "layer-x86_64" / "extensions" / "wandb-nexus"


def vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1])


def measure_start(binary: Path, starts: int) -> None:
    to_register, peaks = [], []
    env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_FUNCTION_NAME": "f", "WANDB_API_KEY": "k" * 40}
    for _ in range(starts):
        api = FakeExtensionsApi()
        spawned = time.perf_counter()
        proc = api.start(binary, env)
        to_register.append((api.registered_at - spawned) * 1000)
        assert api.registration == {"name": "wandb-nexus", "events": ["SHUTDOWN"]}
        api.waiting.wait(5)
        time.sleep(0.05)
        peaks.append(vm_hwm_kib(proc.pid) / 1024)
        api.shutdown("SPINDOWN")
        assert proc.wait(5) == 0, proc.communicate()[1]
        api.close()
    # What spawning costs this (Python) process, whatever it runs: the spawn of a program
    # that does nothing, until it has exited.
    baseline = []
    for _ in range(starts):
        spawned = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        baseline.append((time.perf_counter() - spawned) * 1000)
    print(
        f"spawn -> register: median {statistics.median(to_register):.2f} ms "
        f"({min(to_register):.2f}-{max(to_register):.2f}) over {starts} starts; "
        f"spawning /bin/true until it exits takes {statistics.median(baseline):.2f} ms here"
    )
    print(
        f"peak RSS waiting in event/next: median {statistics.median(peaks):.2f} MiB "
        f"(max {max(peaks):.2f})"
    )


RUNTIME = """
import os, signal, time, wandb_nexus
run = wandb_nexus.init(project="extension-bench")
for step in range(50):
    run.log({"loss": 1 / (step + 1)})
print("runtime: logged 50 rows; killed now", flush=True)
time.sleep(1)  # the writer thread puts the rows in the log
os.kill(os.getpid(), signal.SIGKILL)
"""


def measure_shutdown(binary: Path) -> None:
    with FakeWandb() as fake, tempfile.TemporaryDirectory() as root:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": root,
            "AWS_LAMBDA_FUNCTION_NAME": "f",
            "WANDB_API_KEY": fake.api_key,
            "WANDB_BASE_URL": fake.base_url,
            "WANDB_DIR": root,
            # Live streaming off for the runtime: the extension has all 50 rows to send.
            "WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL": "3600",
        }
        api = FakeExtensionsApi()
        proc = api.start(binary, env)
        runtime = subprocess.run([sys.executable, "-c", RUNTIME], env=env)
        assert runtime.returncode == -9, runtime.returncode
        before = [len(run.history) for run in fake.runs()]
        api.waiting.wait(5)
        sent = time.perf_counter()
        api.shutdown("TIMEOUT")
        code = proc.wait(5)
        took = (time.perf_counter() - sent) * 1000
        stderr = proc.communicate()[1]
        runs = fake.runs()
        print(
            f"SHUTDOWN(timeout) -> exit {code} in {took:.0f} ms; rows on the server before: "
            f"{before}, after: {[len(run.history) for run in runs]}, "
            f"exit codes {[run.exitcode for run in runs]}"
        )
        if stderr.strip():
            print("extension stderr:\n" + stderr.rstrip())
        api.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=DEFAULT_BINARY)
    parser.add_argument("--starts", type=int, default=20)
    args = parser.parse_args()
    measure_start(args.binary, args.starts)
    measure_shutdown(args.binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
