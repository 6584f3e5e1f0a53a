"""The Lambda emulator itself (tests/lambda_emulator.py) is as strict as Lambda about external
extensions, shutdown, timeouts and crashes. Without the project's module: the extensions are
small Python scripts in a temporary /opt/extensions (stdlib only), the handler a module of a
temporary task root."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lambda_emulator import LambdaEmulator

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="the sandbox needs unshare (util-linux) and root",
)

HANDLER = """
import json, os, signal, sys, threading, time, urllib.error, urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
COLD = True


def register(events):
    request = urllib.request.Request(
        API + "/register",
        data=json.dumps({"events": events}).encode(),
        headers={"Lambda-Extension-Name": "internal"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers["Lambda-Extension-Identifier"]
    except urllib.error.HTTPError as error:
        return error.code, None


def wait_for_events(ext_id):
    while True:
        request = urllib.request.Request(
            API + "/event/next", headers={"Lambda-Extension-Identifier": ext_id}
        )
        urllib.request.urlopen(request).read()


INIT_DRAW = os.urandom(8).hex()  # made during INIT: a SnapStart copy has the snapshot's
if os.environ.get("FN_RESTORE_FAILS"):
    import snapshot_restore_py

    @snapshot_restore_py.register_after_restore
    def fail():
        raise RuntimeError("cannot restore")
if os.environ.get("FN_IGNORE_SIGTERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("FN_INTERNAL"):
    # An internal extension, as a thread of the runtime: SHUTDOWN is refused, INVOKE is not.
    print("internal SHUTDOWN", register(["INVOKE", "SHUTDOWN"])[0], flush=True)
    status, ext_id = register(json.loads(os.environ["FN_INTERNAL"]))
    print("internal", status, flush=True)
    threading.Thread(target=wait_for_events, args=(ext_id,), daemon=True).start()


def handler(event, context):
    global COLD
    result = {"cold": COLD, "pid": os.getpid(), "init_draw": INIT_DRAW}
    COLD = False
    action = event.get("action")
    if action == "write":
        with open(event["path"], "w") as file:
            file.write(event["text"])
    elif action == "sleep":
        time.sleep(event["seconds"])
    elif action == "exit":
        os._exit(event["status"])
    elif action == "signal":
        os.kill(os.getpid(), event["signal"])
    elif action == "allocate":
        result["blocks"] = len([b"x" * (1 << 20) for _ in range(event["mb"])])
    elif action == "register":
        result["status"] = register(["INVOKE"])[0]
    elif action == "inspect":
        import optlib

        result["optlib"] = optlib.VALUE
        result["env"] = dict(os.environ)
        try:
            open("/opt/python/new.py", "w")
        except OSError as error:
            result["opt_write_errno"] = error.errno
    return result
"""

# What every test extension starts with: its name (its file name), a line to the output per
# thing it does, and the Extensions API.
PRELUDE = """
import json, os, sys, threading, time, urllib.error, urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
NAME = os.path.basename(sys.argv[0])


def say(*words):
    print(NAME, *words, flush=True)


def note(path, text):
    with open(path, "a") as file:
        file.write(text + "\\n")


def call(path, body=None, headers=None):
    request = urllib.request.Request(API + path, data=body, headers=headers or {})
    with urllib.request.urlopen(request) as response:
        return response.headers, json.load(response)


def register(events, name=NAME):
    try:
        headers, _ = call(
            "/register", json.dumps({"events": events}).encode(), {"Lambda-Extension-Name": name}
        )
    except urllib.error.HTTPError as error:
        say("refused", error.code, error.read().decode())
        sys.exit(1)
    say("registered", os.getpid())
    return headers["Lambda-Extension-Identifier"]


def next_event(ext_id):
    _, event = call("/event/next", headers={"Lambda-Extension-Identifier": ext_id})
    event["receivedMs"] = int(time.time() * 1000)
    say("event", json.dumps(event))
    return event
"""

# The usual extension: registers for EVENTS, answers every event, exits on SHUTDOWN.
SIMPLE = """
ext_id = register({events})
while next_event(ext_id)["eventType"] != "SHUTDOWN":
    pass
"""


@pytest.fixture
def task(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "fn.py").write_text(HANDLER)
    return root


@pytest.fixture
def opt(tmp_path: Path) -> Path:
    layers = tmp_path / "opt"
    (layers / "extensions").mkdir(parents=True)
    (layers / "python").mkdir()
    return layers


def extension(opt: Path, name: str, body: str) -> Path:
    path = opt / "extensions" / name
    path.write_text(f"#!{sys.executable}\n{PRELUDE}\n{textwrap.dedent(body)}")
    path.chmod(0o755)
    return path


def events_of(lam: LambdaEmulator, name: str) -> list[dict]:
    """The events extension `name` received, as it printed them."""
    prefix = f"{name} event "
    return [
        json.loads(line[len(prefix) :])
        for line in lam.output.decode().splitlines()
        if line.startswith(prefix)
    ]


def state(pid: int) -> str:
    """A process's state letter (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_extensions_register_before_the_runtime_starts(task: Path, opt: Path) -> None:
    extension(opt, "slow", "time.sleep(0.2)\n" + SIMPLE.format(events=["INVOKE"]))
    extension(opt, "quick", SIMPLE.format(events=["INVOKE", "SHUTDOWN"]))
    extension(opt, "env", 'say("env", json.dumps(dict(os.environ)))\n' + SIMPLE.format(events=[]))
    (opt / "python" / "optlib.py").write_text("VALUE = 42\n")
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        init = lam.inits[0]
        assert init.phase == "init" and init.error is None
        assert sorted(lam.extension_names) == ["env", "quick", "slow"]
        slow, quick = lam.extension("slow"), lam.extension("quick")
        for ext in init.extensions:
            assert ext.external and ext.generation == 1
            assert ext.started_at is not None and ext.registered_at is not None
            assert init.started_at <= ext.started_at < ext.registered_at
            # The runtime starts once every extension has registered.
            assert ext.registered_at <= init.extensions_registered_at
        assert slow.startup >= 0.2 and quick.startup < slow.startup
        assert init.extensions_registered_at <= init.runtime_started_at
        assert init.runtime_started_at < init.runtime_ready_at <= init.done_at
        assert lam.init_duration == init.duration >= 0.2
        assert all(ext.ready_at <= init.done_at for ext in init.extensions)

        invocation = lam.invoke({"action": "inspect"})
        assert invocation.outcome == "response", lam.output.decode()
        # /opt/python is on the runtime's path, after the task root; /opt is read-only.
        assert invocation.body["optlib"] == 42
        assert invocation.body["opt_write_errno"] == errno.EROFS
        runtime_env = invocation.body["env"]
        assert runtime_env["PYTHONPATH"] == f"{task}:/opt/python"
        assert runtime_env["_HANDLER"] == "fn.handler"
        assert [e["eventType"] for e in events_of(lam, "slow")] == ["INVOKE"]
        assert slow.invoke_events == 1 and lam.extension("env").invoke_events == 0
        assert 5 < lam.peak_rss_mb("slow") < 128
        assert {slow.pid, quick.pid, init.runtime_pid} <= set(lam.environment_pids())
    # Extensions get the function's variables without the runtime's own.
    line = next(line for line in lam.output.decode().splitlines() if line.startswith("env env "))
    ext_env = json.loads(line[len("env env ") :])
    for name in ("AWS_EXECUTION_ENV", "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_GROUP_NAME"):
        assert name in runtime_env and name not in ext_env
    assert ext_env["AWS_LAMBDA_RUNTIME_API"] == lam.api_address
    assert ext_env["AWS_LAMBDA_FUNCTION_NAME"] == runtime_env["AWS_LAMBDA_FUNCTION_NAME"]
    # Leaving the block spun the environment down once; the extension's peak is kept.
    assert [s.reason for s in lam.shutdowns] == ["spindown"]
    assert lam.extension("slow").peak_rss_mb == lam.peak_rss_mb("slow") > 5


def test_an_extension_must_register_under_its_file_name(task: Path, opt: Path) -> None:
    extension(opt, "right-name", 'register(["INVOKE"], name="wrong-name")')
    lam = LambdaEmulator(task, "fn.handler", opt=opt)
    with pytest.raises(AssertionError, match="right-name exited with status 1"):
        lam.__enter__()
    assert [(e["name"], e["status"]) for e in lam.registration_errors] == [("wrong-name", 400)]
    assert b"right-name refused 400" in lam.output
    assert lam.inits[0].runtime_started_at is None  # the runtime never started


def test_at_most_ten_extensions(task: Path, opt: Path) -> None:
    for number in range(11):
        extension(opt, f"ext-{number:02}", SIMPLE.format(events=[]))
    lam = LambdaEmulator(task, "fn.handler", opt=opt)
    with pytest.raises(AssertionError, match="did not register"):
        lam.__enter__()
    assert [e["status"] for e in lam.registration_errors] == [400]
    assert "too many" in lam.registration_errors[0]["message"]


def test_internal_extensions_get_invoke_only_and_500_ms_after_sigterm(task: Path) -> None:
    env = {"FN_INTERNAL": '["INVOKE"]', "FN_IGNORE_SIGTERM": "1"}
    with LambdaEmulator(task, "fn.handler", env=env) as lam:
        assert b"internal SHUTDOWN 400" in lam.output and b"internal 200" in lam.output
        assert lam.registration_errors[0]["events"] == ["INVOKE", "SHUTDOWN"]
        assert lam.extension_names == ["internal"]
        (internal,) = lam.extensions
        assert not internal.external and internal.pid == lam.inits[0].runtime_pid
        # Registration is closed once INIT is over.
        invocation = lam.invoke({"action": "register"})
        assert invocation.body["status"] == 403
        assert internal.invoke_events == 1
        record = lam.shutdown()
    assert record is not None and record.sigterm_at is not None
    # The runtime ignored SIGTERM: SIGKILL 500 ms later (internal extensions only).
    assert record.runtime_killed and record.runtime_exit == -signal.SIGKILL
    assert record.runtime_killed_at is not None
    assert 0.5 <= record.runtime_killed_at - record.sigterm_at < 0.7
    assert record.sent_to == [] and record.shutdown_sent_at is None
    assert len(lam.shutdowns) == 1  # leaving the block did not shut down twice


def test_without_extensions_the_runtime_is_killed_without_sigterm(task: Path) -> None:
    with LambdaEmulator(task, "fn.handler") as lam:
        assert lam.invoke({}).outcome == "response"
    (record,) = lam.shutdowns
    assert record.sigterm_at is None
    assert record.runtime_killed and record.runtime_exit == -signal.SIGKILL


def test_kill_ends_everything_without_a_shutdown_phase(task: Path, opt: Path) -> None:
    extension(opt, "ext", SIMPLE.format(events=["SHUTDOWN"]))
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        lam.invoke({})
        lam.kill()
        assert not lam.alive
    assert lam.shutdowns == [] and events_of(lam, "ext") == []
    assert lam.extension("ext").killed and lam.extension("ext").exit_status == -signal.SIGKILL


def test_a_shutdown_only_extension_gets_no_invoke_and_is_frozen(task: Path, opt: Path) -> None:
    extension(opt, "watcher", SIMPLE.format(events=["SHUTDOWN"]))
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        watcher = lam.extension("watcher")
        for number in range(2):
            invocation = lam.invoke({"action": "sleep", "seconds": 0.05})
            assert invocation.outcome == "response" and not invocation.timed_out
            assert invocation.extensions_next_at == {}  # not waited for
            assert lam.frozen
            assert state(watcher.pid) == "T" and state(lam.inits[0].runtime_pid) == "T"
            assert [e["eventType"] for e in events_of(lam, "watcher")] == [], number
        assert watcher.invoke_events == 0
        record = lam.shutdown()
    assert [e["shutdownReason"] for e in events_of(lam, "watcher")] == ["spindown"]
    assert record is not None and record.sent_to == ["watcher"]
    assert list(record.extensions_exited_at) == ["watcher"] and record.killed == []
    assert watcher.exit_status == 0 and not watcher.killed


def test_spindown_sigterm_then_shutdown_with_the_same_tmp(task: Path, opt: Path) -> None:
    # At SHUTDOWN the extension reads what the runtime left in /tmp and leaves its own file.
    extension(
        opt,
        "saver",
        """
        ext_id = register(["INVOKE", "SHUTDOWN"])
        while (event := next_event(ext_id))["eventType"] != "SHUTDOWN":
            pass
        with open("/tmp/from-runtime") as file:
            note("/tmp/saver-saw", file.read())
        """,
    )
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        lam.invoke({"action": "write", "path": "/tmp/from-runtime", "text": "rows 1-10"})
        assert lam.tmp_files() == ["/tmp/from-runtime"]
        record = lam.shutdown("spindown")
        # The sandbox is still there after the Shutdown phase, until the block ends.
        assert lam.tmp_files() == ["/tmp/from-runtime", "/tmp/saver-saw"]
        assert lam.read_tmp("/tmp/saver-saw") == b"rows 1-10\n"
        assert lam.read_tmp("from-runtime") == b"rows 1-10"
    assert record is not None and record.reason == "spindown"
    assert record.sigterm_at is not None and record.sigterm_ms is not None
    assert record.runtime_exited_at is not None
    if record.runtime_exited_by_itself:  # its default action: it ends
        assert record.runtime_exit == -signal.SIGTERM
        assert record.runtime_exited_at - record.sigterm_at < 0.3
    else:
        assert record.runtime_exit == -signal.SIGKILL
    # SHUTDOWN after the runtime is gone, with a deadline 2 s after the SIGTERM.
    assert record.shutdown_sent_at is not None
    assert record.runtime_exited_at <= record.shutdown_sent_at < record.sigterm_at + 0.5
    assert record.deadline_ms == record.sigterm_ms + 2000
    (event,) = [e for e in events_of(lam, "saver") if e["eventType"] == "SHUTDOWN"]
    assert event["shutdownReason"] == "spindown"
    assert event["deadlineMs"] == record.deadline_ms
    assert 1500 < event["deadlineMs"] - event["receivedMs"] <= 2000
    assert record.killed == [] and "saver" in record.extensions_exited_at
    assert record.ended_at is not None and record.ended_at - record.sigterm_at < 1.5


def test_the_runtime_gets_300_ms_after_sigterm_with_an_external_extension(
    task: Path, opt: Path
) -> None:
    extension(opt, "ext", SIMPLE.format(events=["INVOKE"]))
    with LambdaEmulator(task, "fn.handler", opt=opt, env={"FN_IGNORE_SIGTERM": "1"}) as lam:
        lam.invoke({})
        record = lam.shutdown()
    assert record is not None and record.sigterm_at is not None
    assert record.runtime_killed and record.runtime_killed_at is not None
    assert 0.3 <= record.runtime_killed_at - record.sigterm_at < 0.45
    # Registered for INVOKE only: no SHUTDOWN, killed right after the runtime.
    assert record.sent_to == [] and record.killed == ["ext"]
    assert record.ended_at is not None and record.ended_at - record.sigterm_at < 0.6


def test_an_extension_that_ignores_shutdown_is_killed_at_the_deadline(
    task: Path, opt: Path
) -> None:
    extension(
        opt,
        "stubborn",
        """
        ext_id = register(["SHUTDOWN"])
        next_event(ext_id)
        blob = b"x" * (30 << 20)
        time.sleep(60)
        """,
    )
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        lam.invoke({})
        record = lam.shutdown()
    assert record is not None and record.sigterm_at is not None
    assert record.killed_at_deadline == ["stubborn"] and record.extensions_exited_at == {}
    assert record.ended_at is not None
    assert 1.95 <= record.ended_at - record.sigterm_at < 2.5
    stubborn = lam.extension("stubborn")
    assert stubborn.killed and stubborn.exit_status == -signal.SIGKILL
    assert stubborn.exited_at is not None and stubborn.exited_at >= record.sigterm_at + 1.95
    # Its peak, reported when it was reaped, includes what it held until the end.
    assert lam.peak_rss_mb("stubborn") > 30


def test_a_timeout_resets_and_the_next_invocation_initialises_again(task: Path, opt: Path) -> None:
    extension(
        opt,
        "keeper",
        """
        note("/tmp/keeper.log", f"start {os.getpid()}")
        ext_id = register(["INVOKE", "SHUTDOWN"])
        while (event := next_event(ext_id))["eventType"] != "SHUTDOWN":
            note("/tmp/keeper.log", "invoke")
        note("/tmp/keeper.log", "shutdown " + event["shutdownReason"])
        """,
    )
    with LambdaEmulator(task, "fn.handler", opt=opt, timeout=2) as lam:
        first = lam.invoke({"action": "write", "path": "/tmp/kept", "text": "spool"})
        assert first.outcome == "response" and first.body["cold"]
        started = time.monotonic()
        late = lam.invoke({"action": "sleep", "seconds": 30})
        assert time.monotonic() - started < 2.6
        assert late.timed_out and late.outcome == "timeout"
        assert late.reset is not None and late.reset.reason == "timeout"
        assert late.reset.runtime_killed and late.runtime_exit == -signal.SIGKILL
        assert late.reset.sigterm_at is None  # Lambda "shuts down the runtime"
        assert late.reset.sent_to == ["keeper"] and late.reset.killed == []
        assert late.reset.deadline_ms is not None
        assert late.reset.deadline_at is not None
        assert late.reset.runtime_killed_at is not None
        assert late.reset.deadline_at - late.reset.runtime_killed_at == pytest.approx(2, abs=0.05)
        assert lam.tmp_files() == ["/tmp/keeper.log", "/tmp/kept"]

        again = lam.invoke({})
        # INIT again, inside this invocation and within its deadline, in the same sandbox.
        assert again.outcome == "response" and again.body["cold"]
        assert again.init is not None and again.init.phase == "invoke"
        assert again.started_at <= again.init.started_at
        assert again.init.done_at is not None and again.init.done_at < again.dispatched_at
        assert again.ended_at < again.started_at + 2
        assert again.body["pid"] != first.body["pid"]
        assert lam.read_tmp("/tmp/kept") == b"spool"
        log = lam.read_tmp("/tmp/keeper.log").decode().split("\n")
        assert [line.split()[0] for line in log if line] == [
            "start",
            "invoke",
            "invoke",
            "shutdown",
            "start",
            "invoke",
        ]
        assert "shutdown timeout" in log
    keepers = [e for e in lam.extensions if e.name == "keeper"]
    assert [k.generation for k in keepers] == [1, 2] and keepers[0].pid != keepers[1].pid
    assert keepers[0].shutdown_event is not None
    assert keepers[0].shutdown_event["shutdownReason"] == "timeout"
    assert [i.phase for i in lam.inits] == ["init", "invoke"]
    assert [s.reason for s in lam.shutdowns] == ["timeout", "spindown"]


def test_a_crash_resets_with_failure(task: Path, opt: Path) -> None:
    extension(opt, "ext", SIMPLE.format(events=["INVOKE", "SHUTDOWN"]))
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        crashed = lam.invoke({"action": "exit", "status": 7})
        assert crashed.outcome == "crash" and crashed.crashed == "runtime"
        assert crashed.runtime_exit == 7 and not crashed.timed_out
        assert crashed.reset is not None and crashed.reset.reason == "failure"
        assert crashed.reset.runtime_exited_by_itself and not crashed.reset.runtime_killed
        killed = lam.invoke({"action": "signal", "signal": int(signal.SIGKILL)})
        assert killed.outcome == "crash" and killed.runtime_exit == -signal.SIGKILL
        assert killed.init is not None  # it re-initialised first
        ok = lam.invoke({})
        assert ok.outcome == "response" and ok.body["cold"]
    reasons = [e["shutdownReason"] for e in events_of(lam, "ext") if e["eventType"] == "SHUTDOWN"]
    assert reasons == ["failure", "failure", "spindown"]
    assert len(lam.inits) == 3


def test_going_over_the_memory_size_is_a_crash(task: Path, opt: Path) -> None:
    extension(opt, "ext", SIMPLE.format(events=["SHUTDOWN"]))
    with LambdaEmulator(task, "fn.handler", opt=opt, memory_mb=128) as lam:
        if lam.memory_cgroup is None:
            pytest.skip("no writable memory cgroup here")
        invocation = lam.invoke({"action": "allocate", "mb": 200})
        assert invocation.outcome == "crash" and invocation.oom_killed
        assert invocation.runtime_exit == -signal.SIGKILL
        assert lam.invoke({"action": "allocate", "mb": 10}).outcome == "response"
    shutdowns = [e["shutdownReason"] for e in events_of(lam, "ext")]
    assert shutdowns == ["failure", "spindown"]


def test_processes_start_inside_the_sandbox_from_its_init(task: Path, opt: Path) -> None:
    """As Lambda's init starts them inside the microVM: the runtime and the extensions are
    children of one process of the sandbox, in its mount namespace (not the host's) and in
    the function's memory cgroup."""
    extension(opt, "ext", SIMPLE.format(events=["SHUTDOWN"]))
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        runtime, ext = lam.inits[0].runtime_pid, lam.extension("ext").pid
        assert runtime is not None and ext is not None
        parents = {
            int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            for pid in (runtime, ext)
        }
        assert len(parents) == 1 and os.getpid() not in parents
        (init,) = parents
        namespaces = {os.readlink(f"/proc/{pid}/ns/mnt") for pid in (init, runtime, ext)}
        assert len(namespaces) == 1 and os.readlink("/proc/self/ns/mnt") not in namespaces
        if lam.memory_cgroup is not None:
            for pid in (runtime, ext):
                groups = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                memory = next(g for g in groups if ":memory:" in g)
                assert memory.endswith(f"/{lam.memory_cgroup.name}"), groups


def test_a_frozen_extension_makes_no_progress(task: Path, opt: Path) -> None:
    extension(
        opt,
        "ticker",
        """
        def tick():
            while True:
                note("/tmp/ticks", "tick")
                time.sleep(0.01)

        threading.Thread(target=tick, daemon=True).start()
        ext_id = register(["INVOKE"])
        while True:
            next_event(ext_id)
        """,
    )
    with LambdaEmulator(task, "fn.handler", opt=opt) as lam:
        lam.invoke({})
        frozen = lam.read_tmp("/tmp/ticks")
        time.sleep(0.3)
        assert lam.read_tmp("/tmp/ticks") == frozen
        assert state(lam.extension("ticker").pid) == "T"
        lam.invoke({"action": "sleep", "seconds": 0.2})
        thawed = lam.read_tmp("/tmp/ticks")
        assert thawed.count(b"tick") >= frozen.count(b"tick") + 5
        time.sleep(0.2)
        assert lam.read_tmp("/tmp/ticks") == thawed


def test_snapstart_copies_are_forked_from_the_snapshot_and_restore_errors_fail_them(
    task: Path, opt: Path
) -> None:
    extension(opt, "shut", SIMPLE.format(events=["SHUTDOWN"]))
    with LambdaEmulator(task, "fn.handler", opt=opt, snapstart=True) as snapshot:
        assert snapshot.frozen
        runtime = snapshot.inits[0].runtime_pid
        assert runtime is not None and state(runtime) == "T"
        with pytest.raises(AssertionError, match="a snapshot is not invoked"):
            snapshot.invoke({})
        with snapshot.restore() as one, snapshot.restore() as two:
            first, second = one.invoke({}).body, two.invoke({}).body
            # One INIT, cloned: what it made is the same, the processes are not.
            assert first["init_draw"] == second["init_draw"]
            assert first["pid"] != second["pid"] and runtime not in (first["pid"], second["pid"])
            assert first["cold"] and second["cold"]
            # Registration closed with the snapshot's INIT.
            assert one.invoke({"action": "register"}).body["status"] == 403
            assert one.extension("shut").pid != snapshot.extension("shut").pid
            assert one.frozen and two.frozen
    with LambdaEmulator(
        task, "fn.handler", opt=opt, snapstart=True, env={"FN_RESTORE_FAILS": "1"}
    ) as snapshot:
        copy = snapshot.restore()
        with pytest.raises(AssertionError, match="restore did not finish"):
            copy.__enter__()
        [error] = copy.restore_errors
        assert error["type"] == "Runtime.AfterRestoreError"
        assert error["body"]["errorMessage"] == "cannot restore"


def test_managed_instances_run_invocations_concurrently_and_never_freeze(
    task: Path, opt: Path
) -> None:
    extension(opt, "both", SIMPLE.format(events=["INVOKE", "SHUTDOWN"]))
    extension(opt, "shut", SIMPLE.format(events=["SHUTDOWN"]))
    env = {"FN_INTERNAL": '["INVOKE"]'}
    # Extensions get SHUTDOWN only: one that asks for INVOKE is refused (and exits).
    refusing = LambdaEmulator(task, "fn.handler", opt=opt, env=env, max_concurrency=2)
    with pytest.raises(AssertionError, match="INIT did not finish"):
        refusing.__enter__()
    assert [e["status"] for e in refusing.registration_errors] == [400]
    (opt / "extensions" / "both").unlink()
    with LambdaEmulator(
        task, "fn.handler", opt=opt, env=env, max_concurrency=2, timeout=1, memory_mb=512
    ) as lam:
        assert lam.extension_names == ["shut"]
        # The workers' internal registrations are refused.
        assert {e["status"] for e in lam.registration_errors} == {403}
        lam._wait_for(lambda: lam._idle_workers == 2, time.monotonic() + 10)
        with ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(lam.invoke, {"action": "sleep", "seconds": 0.5}) for _ in range(2)]
            time.sleep(0.2)
            throttled = lam.invoke({})
            both = [future.result() for future in slow]
        assert throttled.outcome == "throttled"
        assert [i.outcome for i in both] == ["response", "response"]
        assert len({i.body["pid"] for i in both}) == 2
        assert not lam.frozen
        # A timeout ends the invocation, not its code: the worker goes on and its result is
        # refused when it comes.
        late = lam.invoke({"action": "sleep", "seconds": 1.5})
        assert late.outcome == "timeout"
        deadline = time.monotonic() + 5
        while late.request_id not in lam.late_results and time.monotonic() < deadline:
            time.sleep(0.05)
        assert late.request_id in lam.late_results
        shutdown = lam.shutdown()
    assert shutdown is not None and shutdown.sent_to == ["shut"]
