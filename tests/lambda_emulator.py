"""A Lambda execution environment for tests: the Runtime API and the Extensions API on
127.0.0.1, the real runtime interface client (`python -m awslambdaric`) as the runtime,
optional external extensions (`<opt>/extensions/*`, as from layers), and Lambda's lifecycle
around them.

What it enforces, as Lambda does:
  * INIT: every executable in `/opt/extensions/` is started first, in parallel; the runtime
    starts only after each of them has registered; INIT ends when the runtime and every
    registered extension wait for their next event. Extensions may register only before the
    runtime asks for its first event (later registrations are refused, 403); at most 10.
  * An external extension's `Lambda-Extension-Name` must be its executable's file name; it
    may register for INVOKE and/or SHUTDOWN. Any other registration is an internal extension
    (ours runs inside the runtime process): INVOKE only, a request for SHUTDOWN is refused.
  * An invocation ends when the runtime has posted its response (or error) and asked for the
    next event, and every extension registered for INVOKE has asked for its next event
    (extensions registered for SHUTDOWN only get no INVOKE events and are not waited for).
    Then the whole environment is frozen (SIGSTOP to every process: runtime, extensions and
    anything they started) until the next invocation thaws it (SIGCONT).
  * The function timeout is enforced: an invocation not ended by its deadline is a timeout.
    The runtime is killed, external extensions registered for SHUTDOWN get
    `SHUTDOWN(timeout)` and up to 2 s, then everything left is SIGKILLed, and the next
    invocation re-initialises the environment inside its own deadline, in the same sandbox
    (its /tmp kept). A process of the environment dying during an invocation (os._exit, a
    signal, the memory cgroup's OOM kill) does the same with `SHUTDOWN(failure)`.
  * Spin-down (`shutdown()`, and leaving the `with` block): SIGTERM to the runtime if any
    extension registered (else SIGKILL at once), up to 300 ms for it to exit (500 ms if an
    internal extension registered), then SIGKILL; then `SHUTDOWN(spindown)` to the external
    extensions registered for it, with a deadline 2000 ms after the SIGTERM, then SIGKILL.
  * The function's memory size is a hard limit: every process of the environment runs in a
    memory cgroup of that size (where cgroup v1 memory control is writable, as for root
    here), so going over it gets a process killed, as on Lambda.

Everything runs in a Lambda-like sandbox, one mount namespace (`unshare`) whose first process
stays as the sandbox's init and starts the runtime and each extension there, as Lambda's init
starts them inside the microVM: every mount
read-only, `<opt>` (if given) bound read-only at /opt, a writable /tmp shared by all processes
and kept across re-initialisations, a /dev with only null, zero, random and urandom (so no
/dev/shm), and a HOME that does not exist. The emulator stays outside, on the host's network
namespace, and can look into the sandbox's /tmp (`tmp_files()`, `read_tmp()`).

By default /tmp is a 512 MB tmpfs: its files are memory, charged to the function's memory
cgroup. With `ephemeral_storage_mb` it is disk-backed, as Lambda's ephemeral storage (512 MB to
10240 MB, not counted against the function's memory): an ext4 filesystem in an image file of
that size on the host's disk, loop-mounted, so a full /tmp is ENOSPC; what the function writes
there only passes through the page cache, which the cgroup reclaims. The image is removed at
exit. Where no loop device can be mounted, entering raises `EphemeralStorageUnavailable`.

Two more execution models, as the runtime client runs them:
  * SnapStart (`snapstart=True`, AWS_LAMBDA_INITIALIZATION_TYPE=snap-start): INIT ends when
    the runtime, its before-snapshot hooks run, asks `restore/next`; the environment is then
    the snapshot, frozen, never invoked. `restore()` makes an environment from it: a copy of
    the runtime process forked where it waits in `restore/next` (SNAPSHOT_RUNTIME), which
    gets `restore/next` from its own Runtime API, runs its after-restore hooks and must wait
    for its first event within 10 s (else the restore fails, as SnapStartTimeoutException).
    A hook's failure is `restore/error`. Registrations made during INIT carry over; none are
    taken after it. After a timeout or crash a copy is restored again from the snapshot.
    What the approximation does not cover: fork copies memory, ids and clocks but not
    threads (a copy has only the thread that forked; Lambda's snapshot of the machine keeps
    them all, so a copy here is the harder case), copies share the sandbox's /tmp (Lambda
    gives each its own copy of the snapshot's /tmp; sharing makes a clash of names between
    copies visible, and tests check that the snapshot leaves nothing there to copy), and
    external extensions are started anew in each copy instead of being cloned. Copies write
    their output into the snapshot's.
  * Managed Instances (`max_concurrency=N`, AWS_LAMBDA_MAX_CONCURRENCY): the runtime client
    starts N worker processes; INIT ends when one of them asks for an event. Invocations run
    concurrently (`invoke()` from several threads), one per waiting worker; one that finds
    every worker busy is throttled. Nothing is frozen. A timeout is per invocation and ends
    only the invocation, not its code, which goes on running (its late result is refused).
    Extensions may register for SHUTDOWN only, and internal extensions not at all (what
    several workers registering one would mean is not defined). Shutdown sends SIGTERM to
    the runtime and its workers.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from lambda_runtimes import Runtime

MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")
RUNTIME_PREFIX = "/2018-06-01/runtime/"
EXTENSION_PREFIX = "/2020-01-01/extension/"
ACCOUNT = "123456789012"
MAX_EXTENSIONS = 10
# The Shutdown phase (lambda-lifecycle.md §1.4): how long the runtime has after SIGTERM, and
# how long the whole phase lasts when an external extension is registered.
RUNTIME_SHUTDOWN_EXTERNAL = 0.3
RUNTIME_SHUTDOWN_INTERNAL = 0.5
SHUTDOWN_EXTERNAL = 2.0
# Variables Lambda gives the runtime only, not extensions.
RUNTIME_ONLY_VARIABLES = (
    "AWS_EXECUTION_ENV",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "_X_AMZN_TRACE_ID",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
)

# Make every mount read-only, then give the environment what Lambda gives it: the layers
# read-only at /opt, a writable /tmp and a minimal /dev. "$0" is the working directory (the
# task root), "$1" the directory to bind at /opt (or ""), "$2" the ephemeral storage's directory
# (or "" for a tmpfs /tmp): its image `disk.ext4` is loop-mounted on its `mnt` before /dev is
# replaced (mount needs the host's loop devices), and exit status 3 says that failed. The
# arguments up to "--" are host paths under /tmp that must stay visible (a checkout or
# virtualenv there): the new /tmp is assembled under the new /dev with those paths bound into
# it read-only, then moved over /tmp. It prints "ready" once done and runs the command after
# "--" (the sandbox's init) silently.
SANDBOX = r"""
set -e
opt="$1"
storage="$2"
shift 2
keep=""
while [ "$1" != "--" ]; do keep="$keep $1"; shift; done
shift
mount --make-rprivate /
if [ -n "$opt" ]; then
  [ -d /opt ] || mkdir /opt
  mount --bind "$opt" /opt
fi
if [ -n "$storage" ]; then
  # While its image is still on a writable mount (else the loop device is read-only).
  mount -o loop "$storage/disk.ext4" "$storage/mnt" || exit 3
fi
for target in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$target" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$target" 2>/dev/null || true
done
mount -t tmpfs -o mode=755 none /dev
mkdir /dev/.tmp
if [ -n "$storage" ]; then
  mount --move "$storage/mnt" /dev/.tmp
  mount -o remount,bind,rw /dev/.tmp  # made read-only with the rest above
  # As the tmpfs: empty, and writable by everyone (sticky).
  rmdir /dev/.tmp/lost+found
  chmod 1777 /dev/.tmp
else
  mount -t tmpfs -o size=512m tmpfs /dev/.tmp
fi
for path in $keep; do
  mkdir -p "/dev/.tmp${path#/tmp}"
  mount --bind "$path" "/dev/.tmp${path#/tmp}"
  mount -o remount,bind,ro "/dev/.tmp${path#/tmp}"
done
mount -n --move /dev/.tmp /tmp
rmdir /dev/.tmp
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 444 /dev/random c 1 8
mknod -m 444 /dev/urandom c 1 9
cd "$0"
echo ready
exec "$@" </dev/null >/dev/null 2>&1
"""


# The sandbox's init (the process SANDBOX runs last, in the sandbox and its memory cgroup):
# starts the environment's processes with posix_spawn on request and reports their ends.
# Requests and replies are JSON datagrams on the socket whose fd is argv[1]; a request brings
# the write end of the process's output pipe. Starting them here, rather than from the
# emulator, spares each start a fork of the emulator (a large threaded process), a cgroup
# migration and a setns: together 3-35 ms a process on this machine, which INIT would count.
SPAWNER = r"""
import json, os, select, socket, sys
fd = int(sys.argv[1])
os.set_inheritable(fd, False)
channel = socket.socket(fileno=fd)
children = {}
channel.send(b'{"ready": true}')
while True:
    for ready in select.select([channel, *children], [], [])[0]:
        if ready is channel:
            data, fds, _, _ = socket.recv_fds(channel, 1 << 20, 1)
            if not data:
                sys.exit(0)
            request, output = json.loads(data), fds[0]
            actions = [(os.POSIX_SPAWN_DUP2, output, 1), (os.POSIX_SPAWN_DUP2, output, 2)]
            try:
                pid = os.posix_spawn(request["argv"][0], request["argv"], request["env"],
                                     file_actions=actions + [(os.POSIX_SPAWN_CLOSE, output)])
            except OSError as error:
                reply = {"error": f"{request['argv'][0]}: {error}"}
            else:
                children[os.pidfd_open(pid)] = pid
                reply = {"pid": pid}
            os.close(output)
            channel.send(json.dumps(reply).encode())
        else:
            pid = children.pop(ready)
            os.close(ready)
            _, status, usage = os.wait4(pid, 0)
            channel.send(json.dumps({"exited": pid, "status": status,
                                     "maxrss_kb": usage.ru_maxrss}).encode())
"""

# The runtime of a SnapStart function: the runtime client as it is, except that where it asks
# for restore/next the process stays as the snapshot. Each answer names a restored copy's
# Runtime API; the process forks, reports the copy's pid and asks again, while the copy goes
# on from the same call against its own API. The client's native part keeps the address it
# read at load, so a copy's calls for events and results go through `RuntimeApi`, the same
# calls in Python. argv[1] is the handler.
SNAPSHOT_RUNTIME = r"""
import http.client, json, os, sys
from awslambdaric import __main__ as main, lambda_runtime_client as client

restore_next = client.BaseLambdaRuntimeClient.restore_next

def call(address, method, path, body=None, headers={}):
    connection = http.client.HTTPConnection(address)
    connection.request(method, "/2018-06-01/runtime/" + path, body, headers)
    answer = connection.getresponse()
    return answer.status, answer.getheaders(), answer.read()

class RuntimeApi:
    def __init__(self, address):
        self.address = address

    def next(self):
        status, headers, body = call(self.address, "GET", "invocation/next")
        if status != 200:
            raise RuntimeError(f"invocation/next: {status} {body!r}")
        headers = dict(headers)
        headers["Lambda-Runtime-Deadline-Ms"] = int(headers["Lambda-Runtime-Deadline-Ms"])
        return body, headers

    def post_invocation_result(self, request_id, data, content_type, invocation_id=None):
        call(self.address, "POST", f"invocation/{request_id}/response", data,
             {"Content-Type": content_type})

    def post_error(self, request_id, data, xray_fault, invocation_id=None):
        call(self.address, "POST", f"invocation/{request_id}/error", data,
             {"Content-Type": "application/json"})

def snapshot(self):
    while True:
        status, _, body = call(self.lambda_runtime_address, "GET", "restore/next")
        if status != 200:
            raise RuntimeError(f"restore/next: {status} {body!r}")
        api = json.loads(body)["api"]
        pid = os.fork()
        if pid == 0:
            os.environ["AWS_LAMBDA_RUNTIME_API"] = api
            client.runtime_client = RuntimeApi(api)
            self.lambda_runtime_address = api
            return restore_next(self)
        call(self.lambda_runtime_address, "POST", "restore/forked", json.dumps({"pid": pid}))

client.BaseLambdaRuntimeClient.restore_next = snapshot
main.main(sys.argv)
"""
# Lambda's limit on a restore: the runtime, its after-restore hooks run, waits for its first
# event within this many seconds.
RESTORE_LIMIT = 10.0


class EphemeralStorageUnavailable(RuntimeError):
    """A disk-backed /tmp (`ephemeral_storage_mb`) cannot be made here: no mkfs.ext4, or no
    loop mount."""


def _ephemeral_storage(size_mb: int) -> Path:
    """A directory on the host's disk holding `disk.ext4`, an empty ext4 filesystem image of
    `size_mb` MiB (sparse), and `mnt`, where the sandbox mounts it."""
    storage = Path(tempfile.mkdtemp(prefix="lambda-ephemeral-storage-"))
    (storage / "mnt").mkdir()
    image = storage / "disk.ext4"
    with image.open("wb") as file:
        file.truncate(size_mb << 20)
    try:
        # No blocks reserved for root: the function may fill all of it.
        made = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True, text=True
        )
    except OSError as error:
        shutil.rmtree(storage)
        raise EphemeralStorageUnavailable(f"cannot run mkfs.ext4: {error}") from None
    if made.returncode != 0:
        shutil.rmtree(storage)
        raise EphemeralStorageUnavailable(f"mkfs.ext4 failed: {made.stderr.strip()}")
    return storage


def _under_tmp(paths: list[Path]) -> list[str]:
    """The outermost of `paths` that lie under /tmp (which the sandbox replaces)."""
    tmp = Path("/tmp")
    inside = sorted({p.resolve() for p in paths if tmp in p.resolve().parents})
    outermost: list[Path] = []
    for path in inside:
        if not any(kept in path.parents for kept in outermost):
            outermost.append(path)
    return [str(p) for p in outermost]


def _epoch_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Invocation:
    """How one invocation went. Times are time.monotonic() seconds."""

    request_id: str
    dispatched_at: float
    deadline_ms: int
    # "response" or "error" (posted by the runtime), "timeout" (no result by the deadline) or
    # "crash" (a process of the environment died first). A result posted before a timeout or
    # crash is kept: then `timed_out` / `crashed` tell.
    outcome: str | None = None
    body: Any = None
    responded_at: float | None = None
    runtime_next_at: float | None = None
    extensions_next_at: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False
    started_at: float = 0.0  # invoke() was called (the deadline counts from here)
    init: Init | None = None  # the re-initialisation this invocation ran first, if any
    reset: Shutdown | None = None  # the reset it caused (timeout or crash), if any
    crashed: str | None = None  # "runtime" or the extension whose process died
    runtime_exit: int | None = None  # after a reset: the runtime's status (-N: signal N)
    oom_killed: bool = False  # the memory cgroup killed a process during the invocation

    @property
    def response_latency(self) -> float:
        assert self.responded_at is not None
        return self.responded_at - self.dispatched_at

    @property
    def ended_at(self) -> float:
        """When Lambda would freeze the environment: the last of the next-event calls."""
        assert self.runtime_next_at is not None
        return max([self.runtime_next_at, *self.extensions_next_at.values()])


@dataclass
class Extension:
    """One extension of one INIT: an external one (a process started from /opt/extensions)
    or an internal one (a registration from inside the runtime). Times are monotonic."""

    name: str
    external: bool
    generation: int  # the INIT it belongs to (1 = the cold start, 2 = the first re-init ...)
    path: str | None = None  # external: the executable, as seen in the sandbox
    pid: int | None = None  # external: its process; internal: the runtime's
    started_at: float | None = None  # external: its process was started
    registered_at: float | None = None
    events: list[str] = field(default_factory=list)
    id: str | None = None  # Lambda-Extension-Identifier
    ready_at: float | None = None  # its first event/next (done with its INIT)
    invoke_events: int = 0  # INVOKE events it has received
    shutdown_event: dict[str, Any] | None = None  # the SHUTDOWN event it was sent
    shutdown_sent_at: float | None = None
    exited_at: float | None = None  # external: its process ended
    exit_status: int | None = None  # external: as Popen.returncode (-N: killed by signal N)
    killed: bool = False  # external: SIGKILLed by the emulator
    peak_rss_mb: float | None = None  # external: peak resident memory, once it has ended

    @property
    def startup(self) -> float:
        """From starting the process until it registered (external extensions)."""
        assert self.started_at is not None and self.registered_at is not None
        return self.registered_at - self.started_at


@dataclass
class Init:
    """One INIT phase. Times are monotonic."""

    phase: str  # "init" (cold start, on entry) or "invoke" (re-init inside an invocation)
    generation: int
    started_at: float  # the first process was started
    extensions: list[Extension] = field(default_factory=list)
    extensions_registered_at: float | None = None  # every external extension had registered
    runtime_started_at: float | None = None
    runtime_pid: int | None = None
    runtime_ready_at: float | None = None  # the runtime's first invocation/next
    done_at: float | None = None  # the runtime and every extension wait in next
    error: str | None = None  # why INIT failed ("timeout", or which process died)

    @property
    def duration(self) -> float:
        assert self.done_at is not None, self.error
        return self.done_at - self.started_at


@dataclass
class Shutdown:
    """One Shutdown phase: spin-down (`shutdown()`) or a reset after a timeout or crash.
    Times are monotonic seconds, `*_ms` are epoch milliseconds."""

    reason: str  # "spindown", "timeout" or "failure"
    started_at: float
    sigterm_at: float | None = None  # the runtime was sent SIGTERM (spin-down with extensions)
    sigterm_ms: int | None = None
    runtime_pid: int | None = None
    runtime_exited_by_itself: bool | None = None  # (it may have died before the phase)
    runtime_exit: int | None = None  # as Popen.returncode: -15 SIGTERM, -9 SIGKILL
    runtime_exited_at: float | None = None
    runtime_killed: bool = False  # SIGKILLed by the emulator
    runtime_killed_at: float | None = None
    shutdown_sent_at: float | None = None  # SHUTDOWN events were sent
    deadline_ms: int | None = None  # their deadlineMs
    deadline_at: float | None = None
    sent_to: list[str] = field(default_factory=list)  # extensions that got SHUTDOWN
    extensions_exited_at: dict[str, float] = field(default_factory=dict)  # exited by itself
    killed_at_deadline: list[str] = field(default_factory=list)  # got SHUTDOWN, SIGKILLed
    killed: list[str] = field(default_factory=list)  # every extension SIGKILLed
    ended_at: float | None = None


@dataclass
class _Started:
    """A process just started: its pid, the read end of its output (stdout and stderr), and
    how to wait for its end (returns its wait status and peak RSS in KiB)."""

    pid: int
    output: IO[bytes]
    wait: Callable[[], tuple[int, int]]


def _popen(
    command: list[str], *, cwd: Path, env: dict[str, str], preexec_fn: Callable[[], None]
) -> _Started:
    """Starts a process as a child of the emulator (no sandbox)."""
    popen = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )

    def wait() -> tuple[int, int]:
        _, status, usage = os.wait4(popen.pid, 0)
        popen.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits itself
        return status, usage.ru_maxrss

    assert popen.stdout is not None
    return _Started(popen.pid, popen.stdout, wait)


def _adopted(pid: int) -> _Started:
    """A process the emulator did not start (a SnapStart copy, forked by the snapshot): it
    writes into its parent's output, and its end is seen through a pidfd; its status is read
    from /proc while it is a zombie (its parent, the snapshot, never reaps it)."""
    read, write = os.pipe()
    os.close(write)  # its output is its parent's
    pidfd = os.pidfd_open(pid)

    def wait() -> tuple[int, int]:
        select.select([pidfd], [], [])
        os.close(pidfd)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = int(stat.rsplit(")", 1)[1].split()[49])  # exit_code, field 52
        except (OSError, IndexError, ValueError):
            status = signal.SIGKILL  # reaped already: its status is lost
        return status, 0

    return _Started(pid, os.fdopen(read, "rb"), wait)


class _Spawner:
    """The emulator's end of the sandbox's init (SPAWNER): one start request at a time, and a
    thread that takes the replies and the processes' ends."""

    def __init__(self, channel: socket.socket, timeout: float):
        self._channel = channel
        channel.settimeout(timeout)
        try:
            hello = channel.recv(64)
        except OSError:
            hello = b""
        channel.settimeout(None)
        if hello != b'{"ready": true}':
            raise AssertionError("the sandbox's init did not start")
        self._requests = threading.Lock()
        self._cond = threading.Condition()
        self._reply: dict[str, Any] | None = None
        self._ended: dict[int, tuple[int, int]] = {}
        self._closed = False
        threading.Thread(target=self._receive, daemon=True).start()

    def start(self, argv: list[str], env: dict[str, str]) -> _Started:
        read, write = os.pipe()
        request = json.dumps({"argv": argv, "env": env}).encode()
        with self._requests:
            try:
                socket.send_fds(self._channel, [request], [write])
            finally:
                os.close(write)
            with self._cond:
                while self._reply is None and not self._closed:
                    self._cond.wait()
                reply, self._reply = self._reply, None
        if reply is None or "error" in reply:
            os.close(read)
            raise OSError(reply["error"] if reply else "the sandbox's init is gone")
        pid = reply["pid"]
        return _Started(pid, os.fdopen(read, "rb"), lambda: self._wait(pid))

    def _wait(self, pid: int) -> tuple[int, int]:
        with self._cond:
            while pid not in self._ended and not self._closed:
                self._cond.wait()
            # Without its init (gone only after every process was killed) a status is lost.
            return self._ended.pop(pid, (signal.SIGKILL, 0))

    def _receive(self) -> None:
        while True:
            try:
                data = self._channel.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._closed = True
                    self._cond.notify_all()
                    return
                message = json.loads(data)
                if "exited" in message:
                    self._ended[message["exited"]] = (message["status"], message["maxrss_kb"])
                else:
                    self._reply = message
                self._cond.notify_all()

    def close(self) -> None:
        self._channel.close()


class _Process:
    """A process of the environment: its output goes to the emulator's, and a thread waits
    for its end (its exit status and peak RSS, also when it is SIGKILLed)."""

    def __init__(
        self,
        name: str,
        start: Callable[[], _Started],
        *,
        on_output: Callable[[bytes], None],
        on_exit: Callable[[], None],
    ):
        self.name = name
        self.started_at = time.monotonic()
        started = start()
        self.pid = started.pid
        self._output = started.output
        self._wait = started.wait
        self.exited = threading.Event()
        self.status: int | None = None
        self.exited_at: float | None = None
        self.maxrss_kb: int | None = None
        self.sampled_hwm_kb = 0
        self.killed = False
        self._on_output = on_output
        self._on_exit = on_exit
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._reap, daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    def _read(self) -> None:
        output = self._output
        for chunk in iter(lambda: output.read1(65536), b""):  # type: ignore[attr-defined]
            self._on_output(chunk)
        output.close()

    def _reap(self) -> None:
        status, self.maxrss_kb = self._wait()
        self.status = os.waitstatus_to_exitcode(status)
        self.exited_at = time.monotonic()
        self.exited.set()
        self._on_exit()

    def signal(self, sig: int) -> None:
        if self.alive:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.alive:
            self.sample_hwm()
            self.killed = True
            self.signal(signal.SIGKILL)

    def hwm_kb(self) -> int | None:
        """VmHWM now (None once it has ended)."""
        return _number_after(Path(f"/proc/{self.pid}/status"), "VmHWM:")

    def sample_hwm(self) -> None:
        if self.alive:
            self.sampled_hwm_kb = max(self.sampled_hwm_kb, self.hwm_kb() or 0)

    def peak_rss_mb(self) -> float:
        if self.alive:
            now = self.hwm_kb()
            if now is not None:
                return max(now, self.sampled_hwm_kb) / 1024
        self.exited.wait(5)
        return max(self.maxrss_kb or 0, self.sampled_hwm_kb) / 1024

    def join_output(self, timeout: float = 5.0) -> None:
        self._reader.join(timeout)


class LambdaEmulator:
    """One execution environment running `handler` (module.function) from `task_root`, with
    the layers in `opt` (its `python/` on the runtime's path, its `extensions/*` started as
    external extensions).

    Use as a context manager: INIT runs on entry (extensions start and register, then the
    runtime imports the handler module), `invoke()` runs one invocation and freezes the
    environment after it (or resets it after a timeout or crash; the next invoke()
    re-initialises it), and exit shuts it down as Lambda spins an environment down
    (`shutdown("spindown")`) unless that was done already.
    """

    def __init__(
        self,
        task_root: Path,
        handler: str,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 10.0,
        memory_mb: int = 128,
        function_name: str = "lambda-wandb-nexus-dev-hello",
        sandbox: bool = True,
        opt: Path | None = None,
        init_timeout: float = 10.0,
        runtime: Runtime | None = None,
        snapstart: bool = False,
        max_concurrency: int | None = None,
        ephemeral_storage_mb: int | None = None,
        _snapshot: LambdaEmulator | None = None,
    ):
        self.task_root = task_root
        self.handler = handler
        self.timeout = timeout
        self.init_timeout = init_timeout  # Lambda's on-demand INIT limit
        self.memory_mb = memory_mb
        self.function_name = function_name
        self.sandbox = sandbox
        self.opt = opt.resolve() if opt is not None else None
        self.runtime = runtime  # None: the runtime runs on this interpreter
        # What starts the layer's executables: qemu-user when the runtime is arm64.
        self._emulation = runtime.emulation if runtime is not None else []
        self.extra_env = env or {}
        self.snapstart = snapstart
        self.max_concurrency = max_concurrency
        self.ephemeral_storage_mb = ephemeral_storage_mb  # None: /tmp is a 512 MB tmpfs
        # A SnapStart copy: the snapshot it is restored from (its sandbox is the snapshot's).
        self.snapshot = _snapshot
        self.invocations: list[Invocation] = []
        self.init_errors: list[Any] = []  # bodies the runtime posted to init/error
        self.extension_errors: list[dict[str, Any]] = []  # extensions' init/error, exit/error
        self.registration_errors: list[dict[str, Any]] = []  # refused registrations
        self.restore_errors: list[dict[str, Any]] = []  # a copy's restore/error: type, body
        self.late_results: list[str] = []  # Managed Instances: results after a timeout
        self.extensions: list[Extension] = []  # every extension of every INIT
        self.inits: list[Init] = []
        self.shutdowns: list[Shutdown] = []  # spin-down and resets, in order
        self.output = b""
        self._output_lock = threading.Lock()
        self._cond = threading.Condition()
        self._generation = 0
        self._init: Init | None = None
        self._runtime: _Process | None = None
        self._runtime_started = False  # registrations from now on are internal extensions
        self._runtime_ready = False  # the runtime has asked for its first event
        self._runtime_waiting = False
        self._runtime_event: Invocation | None = None
        self._launched: dict[str, Extension] = {}  # external extensions of this INIT, by name
        self._ext_processes: dict[str, _Process] = {}  # by name, this INIT
        self._extensions: dict[str, Extension] = {}  # registered, by id, this INIT
        self._extension_waiting: dict[str, bool] = {}
        self._extension_events: dict[str, dict[str, Any]] = {}
        self._current: Invocation | None = None
        self._restores: list[LambdaEmulator] = []  # the snapshot's: copies waiting for a fork
        self._forked: int | None = None  # the snapshot's: the pid of the latest copy
        self._queued: list[Invocation] = []  # Managed Instances: waiting for a worker
        self._idle_workers = 0  # Managed Instances: workers waiting in next
        self._running: dict[str, Invocation] = {}  # Managed Instances: by request id
        self._frozen: set[int] = set()
        self._alive = False  # between INIT on entry and spin-down (or kill)
        self._needs_init = False  # reset: the next invocation re-initialises
        self._holder: subprocess.Popen[bytes] | None = None  # the sandbox's init
        self._spawner: _Spawner | None = None
        self._kept: list[str] = []  # host paths bound into the sandbox's /tmp
        self._storage: Path | None = None  # the ephemeral storage's image and mount point
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.emulator = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.memory_cgroup = _memory_cgroup(memory_mb)
        if _snapshot is not None:
            self._holder, self._spawner = _snapshot._holder, _snapshot._spawner
            self._kept = _snapshot._kept

    @property
    def managed(self) -> bool:
        """Lambda Managed Instances: concurrent workers, never frozen."""
        return self.max_concurrency is not None

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def alive(self) -> bool:
        """INIT has run and the environment has not been shut down or killed."""
        return self._alive

    @property
    def init_duration(self) -> float:
        """The cold start's INIT: from starting the first process (the first extension, or
        the runtime) until the runtime and every extension waited for their next event."""
        return self.inits[0].duration

    @property
    def extension_names(self) -> list[str]:
        """The extensions registered in the latest INIT, in order of registration."""
        if self._init is None:
            return []
        return [e.name for e in self._init.extensions if e.registered_at is not None]

    def extension(self, name: str) -> Extension:
        """The latest external extension named `name` (its process of the latest INIT)."""
        found = [e for e in self.extensions if e.external and e.name == name]
        assert found, f"no external extension {name}"
        return found[-1]

    def __enter__(self) -> LambdaEmulator:
        self._thread.start()
        try:
            if self.sandbox and self.snapshot is None:
                self._start_sandbox()
            if self.snapshot is not None:
                init = self._run_init("restore", time.monotonic() + RESTORE_LIMIT)
            else:
                init = self._run_init("init", time.monotonic() + self.init_timeout)
            if init.error is not None:
                output = (self.snapshot or self).output.decode()
                what = "INIT" if self.snapshot is None else "restore"
                raise AssertionError(f"{what} did not finish ({init.error}); output:\n{output}")
        except BaseException:
            self._teardown()
            raise
        self._alive = True
        if self.snapstart:
            self._freeze()  # the snapshot: it runs again only to fork a copy
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._alive and self.snapstart:
                self.kill()  # a snapshot is discarded, not shut down
            elif self._alive:
                self.shutdown("spindown")
        finally:
            self._teardown()

    def restore(self, env: dict[str, str] | None = None) -> LambdaEmulator:
        """A new environment restored from this snapshot (SnapStart); use it as a context
        manager: entering restores it. `env` adds to the copy's environment (its external
        extensions' and its re-initialisations')."""
        assert self.snapstart and self._alive, "restore() needs a SnapStart snapshot"
        return LambdaEmulator(
            self.task_root,
            self.handler,
            env={**self.extra_env, **(env or {})},
            timeout=self.timeout,
            memory_mb=self.memory_mb,
            function_name=self.function_name,
            sandbox=self.sandbox,
            opt=self.opt,
            runtime=self.runtime,
            ephemeral_storage_mb=self.ephemeral_storage_mb,
            _snapshot=self,
        )

    def _fork_runtime(self, copy: LambdaEmulator) -> _Process:
        """The snapshot's runtime forks a copy for `copy` (thawed only for that)."""
        with self._cond:
            self._forked = None
            self._restores.append(copy)
            self._thaw()
            self._cond.notify_all()
            end = time.monotonic() + 10
            while self._forked is None or not self._runtime_waiting:
                left = end - time.monotonic()
                assert left > 0, "the snapshot did not fork"
                self._cond.wait(left)
            pid = self._forked
        if copy.memory_cgroup is not None:
            (copy.memory_cgroup / "cgroup.procs").write_text(str(pid))
        self._freeze()
        return _Process(
            "runtime", lambda: _adopted(pid), on_output=copy._append_output, on_exit=copy._notify
        )

    def kill(self) -> None:
        """Ends the environment without a Shutdown phase: SIGKILL to every process, frozen
        or not; nobody gets SIGTERM or SHUTDOWN. The sandbox (/tmp) stays until exit."""
        self._kill_all()
        self._retire()

    def _kill_all(self) -> None:
        """SIGKILL to every process of the environment (strays included); waits for them."""
        self._alive = False
        for process in self._processes():
            process.kill()
        self._kill_strays()
        for process in self._processes():
            process.exited.wait(5)
            process.join_output()
        self._record_extension_exits()

    def shutdown(self, reason: str = "spindown") -> Shutdown | None:
        """Retires the environment as Lambda does (lambda-lifecycle.md §1.4); returns the
        record of what happened (also in `shutdowns`). None if it was not alive."""
        if not self._alive:
            return None
        self._alive = False
        record = Shutdown(reason=reason, started_at=time.monotonic())
        self.shutdowns.append(record)
        if self._needs_init:  # reset, not re-initialised: nothing runs
            record.ended_at = time.monotonic()
            return record
        self._thaw()
        runtime = self._runtime
        registered = list(self._extensions.values())
        start, start_ms = time.monotonic(), _epoch_ms()
        if runtime is not None:
            record.runtime_pid = runtime.pid
            if runtime.alive and registered:
                record.sigterm_at, record.sigterm_ms = time.monotonic(), _epoch_ms()
                start, start_ms = record.sigterm_at, record.sigterm_ms
                self._signal_runtime(signal.SIGTERM)
                internal = any(not e.external for e in registered)
                budget = RUNTIME_SHUTDOWN_INTERNAL if internal else RUNTIME_SHUTDOWN_EXTERNAL
                runtime.exited.wait(budget)
            self._end_runtime(record)
        self._end_extensions(record, start, start_ms)
        self._retire()
        record.ended_at = time.monotonic()
        return record

    def _start_sandbox(self) -> None:
        needed = [
            self.task_root,
            Path(sys.prefix),
            Path(sys.base_prefix),
            *map(Path, sys.path[1:]),
        ]
        self._kept = _under_tmp([p for p in needed if p.exists()])
        if self.ephemeral_storage_mb is not None:
            self._storage = _ephemeral_storage(self.ephemeral_storage_mb)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [
            "unshare",
            "-m",
            "sh",
            "-c",
            SANDBOX,
            str(self.task_root),
            str(self.opt or ""),
            str(self._storage or ""),
            *self._kept,
            "--",
            *(sys.executable, "-I", "-S", "-c", SPAWNER, str(theirs.fileno())),
        ]
        self._holder = subprocess.Popen(
            command,
            cwd=self.task_root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        assert self._holder.stdout is not None
        said = self._holder.stdout.read()  # until "ready" and the silent exec of its init
        self._holder.stdout.close()
        if not said.endswith(b"ready\n") or self._holder.poll() is not None:
            if self._holder.wait() == 3:
                raise EphemeralStorageUnavailable(
                    f"cannot loop-mount {self._storage}/disk.ext4:\n{said.decode()}"
                )
            raise AssertionError(f"the sandbox could not be set up:\n{said.decode()}")
        self._spawner = _Spawner(ours, timeout=10)
        # Only now, so that the init's own start-up memory is not charged to the function
        # (cgroup v1 leaves charges where they were made); what it starts is born inside.
        if self.memory_cgroup is not None:
            (self.memory_cgroup / "cgroup.procs").write_text(str(self._holder.pid))

    def _enter_cgroup(self) -> None:
        # In the child, before exec: everything it runs is limited.
        if self.memory_cgroup is not None:
            (self.memory_cgroup / "cgroup.procs").write_text(str(os.getpid()))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> _Process:
        spawner = self._spawner
        if spawner is not None:
            start = lambda: spawner.start(argv, env)  # noqa: E731
        else:
            start = lambda: _popen(  # noqa: E731
                argv, cwd=self.task_root, env=env, preexec_fn=self._enter_cgroup
            )
        process = _Process(name, start, on_output=self._append_output, on_exit=self._notify)
        if self.snapshot is not None and self.memory_cgroup is not None:
            # Born in the snapshot's cgroup (its init's): a copy's own processes are its.
            (self.memory_cgroup / "cgroup.procs").write_text(str(process.pid))
        return process

    def _append_output(self, chunk: bytes) -> None:
        with self._output_lock:
            self.output += chunk

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _teardown(self) -> None:
        """Removes the sandbox: kills whatever is left, the holder, the server, the cgroup."""
        self._kill_all()
        if self.snapshot is not None:
            self._holder = self._spawner = None  # the snapshot's
        if self._spawner is not None:
            self._spawner.close()
        if self._holder is not None and self._holder.poll() is None:
            self._holder.kill()
            self._holder.wait()
        if self._storage is not None:
            # Its loop device is gone with the sandbox's mounts: mount sets it to auto-clear.
            shutil.rmtree(self._storage)
            self._storage = None
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self.memory_cgroup is not None and self.memory_cgroup.exists():
            for _ in range(100):
                try:
                    self.memory_cgroup.rmdir()
                    break
                except OSError:
                    self._kill_strays()
                    time.sleep(0.02)

    def _processes(self) -> list[_Process]:
        """The processes of the current INIT: the runtime and the external extensions."""
        found = list(self._ext_processes.values())
        if self._runtime is not None:
            found.append(self._runtime)
        return found

    def _cgroup_pids(self) -> set[int]:
        if self.memory_cgroup is None or not self.memory_cgroup.exists():
            return set()
        try:
            text = (self.memory_cgroup / "cgroup.procs").read_text()
        except OSError:
            return set()
        holder = self._holder.pid if self._holder is not None else None
        return {int(pid) for pid in text.split()} - {holder}

    def environment_pids(self) -> list[int]:
        """Every live process of the environment: the runtime, the external extensions and
        (where the memory cgroup exists) whatever they started."""
        pids = {p.pid for p in self._processes() if p.alive} | self._cgroup_pids()
        return sorted(pids)

    def _kill_strays(self) -> None:
        """SIGKILL to processes in the cgroup that are not ours (children of extensions)."""
        ours = {p.pid for p in self._processes()}
        for pid in self._cgroup_pids() - ours:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _runtime_env(self) -> dict[str, str]:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        python_path = str(self.task_root)
        if self.opt is not None:
            # As Lambda's bootstrap: the task root, then the layers' python directory.
            python_path += ":" + ("/opt/python" if self.sandbox else str(self.opt / "python"))
        if self.runtime is not None:
            # Then the runtime's own packages (awslambdaric), as Lambda's /var/runtime.
            version = self.runtime.version
            python_path += "".join(f":{entry}" for entry in self.runtime.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONPATH": python_path,
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "_HANDLER": self.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
            "AWS_LAMBDA_RUNTIME_API": self.api_address,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/25/[$LATEST]0123456789abcdef",
            "AWS_REGION": "us-east-1",
            "AWS_LAMBDA_INITIALIZATION_TYPE": self._initialization_type(),
            # Lambda's HOME comes from a password entry whose directory does not exist.
            "HOME": "/home/sbx_user1051",
        }
        if self.managed:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.max_concurrency)
        return {**env, **self.extra_env}

    def _initialization_type(self) -> str:
        if self.snapstart or self.snapshot is not None:
            return "snap-start"
        return "lambda-managed-instances" if self.managed else "on-demand"

    def extension_env(self) -> dict[str, str]:
        """The environment external extensions get: the function's, minus the runtime's own."""
        env = self._runtime_env()
        for name in RUNTIME_ONLY_VARIABLES:
            env.pop(name, None)
        env["AWS_LAMBDA_RUNTIME_API"] = self.api_address
        return env

    def _extension_files(self) -> list[Path]:
        if self.opt is None or not (self.opt / "extensions").is_dir():
            return []
        return sorted(
            path
            for path in (self.opt / "extensions").iterdir()
            if path.is_file() and os.access(path, os.X_OK)
        )

    # ------------------------------------------------------------------ INIT

    def _run_init(self, phase: str, deadline: float) -> Init:
        """Starts the extensions, waits for their registrations, starts the runtime and waits
        until everything waits in next (or the deadline passes, or a process dies)."""
        with self._cond:
            self._generation += 1
            init = Init(phase=phase, generation=len(self.inits) + 1, started_at=time.monotonic())
            self.inits.append(init)
            self._init = init
            self._runtime = None
            self._runtime_started = False
            self._runtime_ready = False
            self._runtime_waiting = False
            self._runtime_event = None
            self._launched = {}
            self._ext_processes = {}
            self._extensions = {}
            self._extension_waiting = {}
            self._extension_events = {}
            self._current = None
        env = self.extension_env()
        for path in self._extension_files():
            name = path.name
            shown = f"/opt/extensions/{name}" if self._holder is not None else str(path)
            extension = Extension(name=name, external=True, generation=init.generation, path=shown)
            with self._cond:
                self._launched[name] = extension
                self.extensions.append(extension)
                init.extensions.append(extension)
            process = self._spawn(name, [*self._emulation, shown], env)
            extension.pid, extension.started_at = process.pid, process.started_at
            with self._cond:
                self._ext_processes[name] = process
        failed = self._wait_for(
            lambda: all(e.registered_at is not None for e in self._launched.values()),
            deadline,
        )
        if failed is not None:
            init.error = f"extensions did not register: {failed}"
            return init
        init.extensions_registered_at = time.monotonic()
        with self._cond:
            self._runtime_started = True
        if self.snapshot is not None:
            self._carry_over_registrations(init)
            runtime = self.snapshot._fork_runtime(self)
        else:
            runtime = self._spawn("runtime", self._runtime_command(), self._runtime_env())
        with self._cond:
            self._runtime = runtime
            self._cond.notify_all()
        init.runtime_started_at, init.runtime_pid = runtime.started_at, runtime.pid
        failed = self._wait_for(self._init_done, deadline)
        if failed is not None:
            init.error = failed
            return init
        init.done_at = time.monotonic()
        for extension in init.extensions:
            if not extension.external and extension.pid is None:
                extension.pid = runtime.pid
        return init

    def _runtime_command(self) -> list[str]:
        python = self.runtime.python if self.runtime is not None else [sys.executable]
        if self.snapstart:
            return [*python, "-c", SNAPSHOT_RUNTIME, self.handler]
        return [*python, "-m", "awslambdaric", self.handler]

    def _carry_over_registrations(self, init: Init) -> None:
        """A copy keeps the internal extensions its snapshot registered (their threads'
        state is the snapshot's), under the same identifiers."""
        assert self.snapshot is not None
        with self._cond:
            for ext_id, registered in self.snapshot._extensions.items():
                if registered.external:
                    continue
                extension = Extension(
                    name=registered.name,
                    external=False,
                    generation=init.generation,
                    events=list(registered.events),
                    id=ext_id,
                    registered_at=time.monotonic(),
                )
                self.extensions.append(extension)
                init.extensions.append(extension)
                self._extensions[ext_id] = extension
                self._extension_waiting[ext_id] = False

    def _wait_for(self, ready: Callable[[], bool], deadline: float) -> str | None:
        """Waits until ready(); else says why not: "timeout", or which process ended."""
        with self._cond:
            while not ready():
                for process in self._processes():
                    if not process.alive:
                        return f"{process.name} exited with status {process.status}"
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                self._cond.wait(min(left, 0.05))
        return None

    def _init_done(self) -> bool:
        runtime_waits = self._idle_workers > 0 if self.managed else self._runtime_waiting
        return runtime_waits and all(self._extension_waiting.values())

    # ------------------------------------------------------------------ invoking

    def invoke(self, payload: Any, *, pause: float = 0.0) -> Invocation:
        """Runs one invocation and freezes the environment after it; returns how it went.
        After a reset (timeout, crash) it first re-initialises the environment, within the
        invocation's deadline. A timeout or crash during it resets the environment and is
        returned as the invocation's outcome ("timeout", "crash"). `pause` keeps the
        environment frozen that long afterwards (idle time)."""
        assert self._alive, "the environment was shut down"
        assert not self.snapstart, "a snapshot is not invoked: restore() an environment from it"
        if self.managed:
            return self._invoke_concurrently(payload)
        invocation = self._new_invocation(payload)
        started = invocation.started_at
        deadline = started + self.timeout
        self.invocations.append(invocation)
        oom_before = self._oom_kills()
        if not self._needs_init and any(not p.alive for p in self._processes()):
            # Something died while frozen: Lambda finds out now and resets first.
            self._thaw()
            self._reset("failure")
        if self._needs_init:
            self._needs_init = False
            init = self._run_init("invoke", deadline)
            invocation.init = init
            if init.error is not None:
                timed_out = init.error.endswith("timeout")
                self._fail(invocation, "timeout" if timed_out else "failure", oom_before)
                if pause:
                    time.sleep(pause)
                return invocation
        else:
            self._thaw()
        with self._cond:
            self._current = invocation
            self._runtime_event = invocation
            for ext_id, extension in self._extensions.items():
                if "INVOKE" not in extension.events:
                    continue
                self._extension_events[ext_id] = {
                    "eventType": "INVOKE",
                    "deadlineMs": invocation.deadline_ms,
                    "requestId": invocation.request_id,
                    "invokedFunctionArn": self._function_arn(),
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-0-0"},
                }
            self._cond.notify_all()
        failed = self._wait_for(self._invocation_ended, deadline)
        if failed is not None:
            self._fail(invocation, "timeout" if failed == "timeout" else "failure", oom_before)
        else:
            if invocation.ended_at > invocation.dispatched_at + self.timeout:
                invocation.timed_out = True
            self._freeze()
        if pause:
            time.sleep(pause)
        return invocation

    def _new_invocation(self, payload: Any) -> Invocation:
        """An invocation starting now, its deadline the function's timeout away."""
        return Invocation(
            request_id=str(uuid.uuid4()),
            dispatched_at=0.0,
            deadline_ms=_epoch_ms() + int(self.timeout * 1000),
            body=payload,
            started_at=time.monotonic(),
        )

    def _invoke_concurrently(self, payload: Any) -> Invocation:
        """Managed Instances: one invocation among others, given to a waiting worker (with
        none waiting it is throttled). A timeout ends the invocation, not its code."""
        invocation = self._new_invocation(payload)
        started = invocation.started_at
        with self._cond:
            self.invocations.append(invocation)
            if self._idle_workers <= len(self._queued):
                invocation.outcome = "throttled"
                return invocation
            self._queued.append(invocation)
            self._running[invocation.request_id] = invocation
            self._cond.notify_all()
            while invocation.outcome is None:
                left = started + self.timeout - time.monotonic()
                if left <= 0:
                    invocation.outcome, invocation.timed_out = "timeout", True
                    break
                self._cond.wait(left)
        return invocation

    def _fail(self, invocation: Invocation, reason: str, oom_before: int | None) -> None:
        """Records a timed-out or crashed invocation and resets the environment."""
        dead = [p for p in self._processes() if not p.alive]
        if reason == "timeout":
            invocation.timed_out = True
            if invocation.outcome is None:
                invocation.outcome = "timeout"
        else:
            invocation.crashed = dead[0].name if dead else "runtime"
            if invocation.outcome is None:
                invocation.outcome = "crash"
        invocation.reset = self._reset(reason)
        if self._runtime is not None:
            invocation.runtime_exit = self._runtime.status
        oom_after = self._oom_kills()
        if oom_before is not None and oom_after is not None:
            invocation.oom_killed = oom_after > oom_before

    def _reset(self, reason: str) -> Shutdown:
        """After a timeout or crash: Lambda shuts the runtime down, sends SHUTDOWN with the
        reason to the external extensions and re-initialises at the next invocation."""
        record = Shutdown(reason=reason, started_at=time.monotonic())
        self.shutdowns.append(record)
        self._thaw()
        start, start_ms = time.monotonic(), _epoch_ms()  # the extensions' 2 s count from here
        if self._runtime is not None:
            record.runtime_pid = self._runtime.pid
            self._end_runtime(record)
        self._end_extensions(record, start, start_ms)
        self._retire()
        self._needs_init = True
        record.ended_at = time.monotonic()
        return record

    def _signal_runtime(self, sig: int) -> None:
        """Signals the runtime and, on Managed Instances, its worker processes."""
        assert self._runtime is not None
        workers = self.child_processes() if self.managed and self._runtime.alive else []
        self._runtime.signal(sig)
        for pid in workers:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _end_runtime(self, record: Shutdown) -> None:
        runtime = self._runtime
        assert runtime is not None
        record.runtime_exited_by_itself = not runtime.alive
        if runtime.alive:
            record.runtime_killed, record.runtime_killed_at = True, time.monotonic()
            self._signal_runtime(signal.SIGKILL)
            runtime.kill()
        runtime.exited.wait(5)
        record.runtime_exit = runtime.status
        record.runtime_exited_at = runtime.exited_at

    def _end_extensions(self, record: Shutdown, start: float, start_ms: int) -> None:
        """SHUTDOWN to the external extensions registered for it, a deadline 2 s after
        `start`, then SIGKILL to every extension process left."""
        subscribed = [
            e
            for e in self._extensions.values()
            if e.external and "SHUTDOWN" in e.events and self._ext_processes[e.name].alive
        ]
        if subscribed:
            record.deadline_ms = start_ms + int(SHUTDOWN_EXTERNAL * 1000)
            record.deadline_at = start + SHUTDOWN_EXTERNAL
            with self._cond:
                record.shutdown_sent_at = time.monotonic()
                for extension in subscribed:
                    assert extension.id is not None
                    event = {
                        "eventType": "SHUTDOWN",
                        "shutdownReason": record.reason,
                        "deadlineMs": record.deadline_ms,
                    }
                    self._extension_events[extension.id] = event
                    extension.shutdown_event = event
                    extension.shutdown_sent_at = record.shutdown_sent_at
                    record.sent_to.append(extension.name)
                self._cond.notify_all()
            processes = [self._ext_processes[e.name] for e in subscribed]
            with self._cond:
                while any(p.alive for p in processes):
                    left = record.deadline_at - time.monotonic()
                    if left <= 0:
                        break
                    for process in processes:
                        process.sample_hwm()
                    self._cond.wait(min(left, 0.05))
        for name, process in self._ext_processes.items():
            if process.alive:
                process.kill()
                record.killed.append(name)
                if name in record.sent_to:
                    record.killed_at_deadline.append(name)
        self._kill_strays()
        for name, process in self._ext_processes.items():
            process.exited.wait(5)
            process.join_output()
            if not process.killed and process.exited_at is not None:
                record.extensions_exited_at[name] = process.exited_at
        self._record_extension_exits()

    def _record_extension_exits(self) -> None:
        for extension in self._launched.values():
            process = self._ext_processes.get(extension.name)
            if process is None or process.alive:
                continue
            extension.exited_at = process.exited_at
            extension.exit_status = process.status
            extension.killed = process.killed
            extension.peak_rss_mb = process.peak_rss_mb()

    def _retire(self) -> None:
        """The processes of this INIT are gone: release whatever still waits for them."""
        with self._cond:
            self._generation += 1
            self._current = None
            self._runtime_event = None
            self._runtime_waiting = False
            self._extensions = {}
            self._extension_waiting = {}
            self._extension_events = {}
            self._frozen.clear()
            self._cond.notify_all()

    def _oom_kills(self) -> int | None:
        if self.memory_cgroup is None:
            return None
        return _number_after(self.memory_cgroup / "memory.oom_control", "oom_kill ")

    def _invocation_ended(self) -> bool:
        current = self._current
        if current is None or current.outcome is None:
            return False
        if not self._runtime_waiting or self._runtime_event is not None:
            return False
        invoke_ids = [i for i, e in self._extensions.items() if "INVOKE" in e.events]
        return all(self._extension_waiting[i] for i in invoke_ids) and not any(
            i in self._extension_events for i in invoke_ids
        )

    def _freeze(self) -> None:
        """SIGSTOP to every process of the environment, as Lambda freezes it; returns once
        every thread of them has stopped."""
        pids = self.environment_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        self._frozen = set(pids)
        end = time.monotonic() + 2.0
        while not all(_stopped(pid) for pid in pids) and time.monotonic() < end:
            time.sleep(0.001)

    def _thaw(self) -> None:
        pids = self._frozen | set(self.environment_pids()) if self._frozen else set()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._frozen = set()

    @property
    def frozen(self) -> bool:
        return bool(self._frozen)

    def _function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"

    # ------------------------------------------------------------------ inspection

    def child_processes(self) -> list[int]:
        """Children of the runtime process (Lambda-safe code starts none)."""
        assert self._runtime is not None
        children: list[int] = []
        for task in Path(f"/proc/{self._runtime.pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children.extend(int(pid) for pid in text)
        return children

    def peak_memory_mb(self) -> float | None:
        """The cgroup's peak memory use (as Lambda counts it: RSS and page cache, of every
        process of the environment), in MiB."""
        if self.memory_cgroup is None:
            return None
        return int((self.memory_cgroup / "memory.max_usage_in_bytes").read_text()) / 2**20

    def peak_rss_mb(self, name: str | None = None) -> float:
        """A process's peak resident memory (VmHWM), in MiB: the current runtime's, or with
        `name` the latest external extension of that name. Read live while the process
        runs; once it has ended, its peak as wait4 reported it."""
        if name is None:
            assert self._runtime is not None
            return self._runtime.peak_rss_mb()
        extension = self.extension(name)
        if extension.peak_rss_mb is not None:
            return extension.peak_rss_mb
        process = self._ext_processes.get(name)
        assert process is not None and process.pid == extension.pid
        return process.peak_rss_mb()

    def _sandbox_tmp(self) -> Path:
        assert self._holder is not None, "no sandbox: /tmp is the host's"
        assert self._holder.poll() is None, "the sandbox is gone"
        return Path(f"/proc/{self._holder.pid}/root/tmp")

    def tmp_files(self) -> list[str]:
        """Every path under the sandbox's /tmp (files and directories, as /tmp/...), leaving
        out the host paths bound there for the runtime (a virtualenv, the task root) and the
        directories made to hold them."""
        root = self._sandbox_tmp()
        kept = [Path(p) for p in self._kept]
        found: list[str] = []
        for directory, dirs, files in os.walk(root):
            inside = Path("/tmp") / Path(directory).relative_to(root)
            keep_dirs = []
            for name in dirs:
                path = inside / name
                if path in kept:
                    continue
                keep_dirs.append(name)
                if not any(path in k.parents for k in kept):
                    found.append(str(path))
            dirs[:] = keep_dirs
            found.extend(str(inside / name) for name in files)
        return sorted(found)

    def read_tmp(self, path: str) -> bytes:
        """A file of the sandbox's /tmp ("/tmp/x" or "x")."""
        relative = Path(path).relative_to("/tmp") if path.startswith("/") else Path(path)
        return (self._sandbox_tmp() / relative).read_bytes()

    # ------------------------------------------------------------------ HTTP side

    def handle(self, request: _Handler) -> None:
        path = request.path
        if path.startswith(RUNTIME_PREFIX):
            self._runtime_api(request, path[len(RUNTIME_PREFIX) :])
        elif path.startswith(EXTENSION_PREFIX):
            self._extensions_api(request, path[len(EXTENSION_PREFIX) :])
        else:
            request.reply(404, {"errorMessage": f"no such path {path}"})

    def _runtime_api(self, request: _Handler, path: str) -> None:
        if request.command == "GET" and path == "restore/next":
            self._restore_next(request)
            return
        if request.command == "POST" and path == "restore/forked" and self.snapstart:
            forked = json.loads(request.read_body())["pid"]
            with self._cond:
                self._forked = int(forked)
                self._cond.notify_all()
            request.reply(202, {"status": "OK"})
            return
        if request.command == "POST" and path == "restore/error" and self.snapshot is not None:
            body = json.loads(request.read_body() or b"null")
            kind = request.headers.get("Lambda-Runtime-Function-Error-Type")
            self.restore_errors.append({"type": kind, "body": body})
            request.reply(202, {"status": "OK"})
            return
        if request.command == "GET" and path == "invocation/next":
            invocation = self._next_runtime_event()
            if invocation is None:
                return  # the server is shutting down, or this runtime is gone
            headers = {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self._function_arn(),
                "Lambda-Runtime-Trace-Id": "Root=1-0-0",
            }
            body = json.dumps(invocation.body).encode()
            invocation.body = None
            invocation.dispatched_at = time.monotonic()
            request.reply(200, body, headers)
            return
        parts = path.split("/")
        if request.command == "POST" and len(parts) == 3 and parts[0] == "invocation":
            request_id, outcome = parts[1], parts[2]
            body = request.read_body()
            with self._cond:
                current = self._running.get(request_id) if self.managed else self._current
                if current is None or current.request_id != request_id:
                    request.reply(400, {"errorMessage": f"unknown request id {request_id}"})
                    return
                if current.timed_out and self.managed:
                    self.late_results.append(request_id)
                    request.reply(400, {"errorMessage": "the invocation timed out"})
                    return
                if outcome not in ("response", "error") or current.outcome is not None:
                    request.reply(400, {"errorMessage": "invalid or repeated result"})
                    return
                current.outcome = outcome
                current.body = json.loads(body) if body else None
                current.responded_at = time.monotonic()
                self._cond.notify_all()
            request.reply(202, {"status": "OK"})
            return
        if request.command == "POST" and path == "init/error":
            self.init_errors.append(json.loads(request.read_body() or b"null"))
            request.reply(202, {"status": "OK"})
            return
        request.reply(404, {"errorMessage": f"no such runtime path {path}"})

    def _runtime_asks(self) -> None:
        """The runtime (or a worker) asks for an event: the first time ends its INIT's
        registrations. Called with the lock held."""
        if not self._runtime_ready:
            self._runtime_ready = True
            if self._init is not None:
                self._init.runtime_ready_at = time.monotonic()

    def _wait_in_init(self, ready: Callable[[], bool], generation: int) -> bool:
        """Waits (lock held) until ready(); False once the processes of INIT `generation` are
        gone or the server is closing: then nobody is left to answer."""
        while not ready():
            if self._generation != generation:
                return False
            if not self._cond.wait(0.5) and self._server.closing:
                return False
        return True

    def _restore_next(self, request: _Handler) -> None:
        """A copy's runtime is restored at once (once the emulator knows its process); the
        snapshot's waits here, as the snapshot, until a copy is to be forked."""
        if self.snapshot is not None:
            with self._cond:
                while self._runtime is None:
                    self._cond.wait(0.05)
            request.reply(200, b"")
            return
        if not self.snapstart:
            request.reply(403, {"errorMessage": "restore/next is for SnapStart functions"})
            return
        with self._cond:
            generation = self._generation
            self._runtime_waiting = True
            self._runtime_asks()
            self._cond.notify_all()
            if not self._wait_in_init(lambda: bool(self._restores), generation):
                return
            copy = self._restores.pop(0)
            self._runtime_waiting = False
        request.reply(200, {"api": copy.api_address})

    def _next_for_worker(self) -> Invocation | None:
        """Managed Instances: a worker waits for a queued invocation."""
        with self._cond:
            generation = self._generation
            self._runtime_asks()
            self._idle_workers += 1
            self._cond.notify_all()
            try:
                if not self._wait_in_init(lambda: bool(self._queued), generation):
                    return None
                return self._queued.pop(0)
            finally:
                self._idle_workers -= 1

    def _next_runtime_event(self) -> Invocation | None:
        if self.managed:
            return self._next_for_worker()
        with self._cond:
            generation = self._generation
            self._runtime_waiting = True
            self._runtime_asks()
            current = self._current
            if current is not None and self._runtime_event is None and not current.runtime_next_at:
                current.runtime_next_at = time.monotonic()
            self._cond.notify_all()
            if not self._wait_in_init(lambda: self._runtime_event is not None, generation):
                return None
            invocation, self._runtime_event = self._runtime_event, None
            self._runtime_waiting = False
            return invocation

    def _extensions_api(self, request: _Handler, path: str) -> None:
        if request.command == "POST" and path == "register":
            self._register(request)
        elif request.command == "GET" and path == "event/next":
            ext_id = request.headers.get("Lambda-Extension-Identifier", "")
            if ext_id not in self._extensions:
                request.reply(403, {"errorMessage": "unknown extension identifier"})
                return
            event = self._next_extension_event(ext_id)
            if event is not None:
                request.reply(200, json.dumps(event).encode())
        elif request.command == "POST" and path in ("init/error", "exit/error"):
            ext_id = request.headers.get("Lambda-Extension-Identifier", "")
            extension = self._extensions.get(ext_id)
            if extension is None:
                request.reply(403, {"errorMessage": "unknown extension identifier"})
                return
            body = request.read_body()
            self.extension_errors.append(
                {
                    "name": extension.name,
                    "kind": path,
                    "type": request.headers.get("Lambda-Extension-Function-Error-Type"),
                    "body": json.loads(body) if body else None,
                }
            )
            request.reply(202, {"status": "OK"})
        else:
            request.reply(404, {"errorMessage": f"no such extension path {path}"})

    def _register(self, request: _Handler) -> None:
        name = request.headers.get("Lambda-Extension-Name")
        try:
            events = json.loads(request.read_body())["events"]
        except (ValueError, KeyError, TypeError):
            request.reply(400, {"errorMessage": 'body must be {"events": [...]}'})
            return
        with self._cond:
            refused: tuple[int, str] | None = None
            external = not self._runtime_started  # only extensions run before the runtime
            launched = self._launched.get(name or "")
            if not name:
                refused = 400, "Lambda-Extension-Name is required"
            elif self._runtime_ready:
                refused = 403, "registration is closed after init"
            elif not isinstance(events, list) or set(events) - {"INVOKE", "SHUTDOWN"}:
                refused = 400, f"invalid events {events}"
            elif len(self._extensions) >= MAX_EXTENSIONS:
                refused = 400, f"too many extensions (at most {MAX_EXTENSIONS})"
            elif external and (launched is None or launched.registered_at is not None):
                message = (
                    f"Lambda-Extension-Name {name!r} is not the file name of an extension "
                    f"in /opt/extensions that has yet to register ({sorted(self._launched)})"
                )
                refused = 400, message
            elif self.managed and not external:
                refused = 403, "internal extensions are not supported on Managed Instances"
            elif self.managed and events != ["SHUTDOWN"]:
                refused = 400, f"on Managed Instances extensions get SHUTDOWN only, not {events}"
            elif not external and self.snapshot is not None:
                refused = 403, "registration is closed: the environment was restored"
            elif not external and "SHUTDOWN" in events:
                # An internal extension (a thread of the runtime) may only have INVOKE.
                refused = 400, f"internal extensions get INVOKE only, not {events}"
            if refused is not None:
                code, message = refused
                self.registration_errors.append(
                    {"name": name, "events": events, "status": code, "message": message}
                )
                request.reply(code, {"errorMessage": message})
                return
            ext_id = str(uuid.uuid4())
            if external:
                assert launched is not None
                extension = launched
            else:
                assert self._init is not None
                extension = Extension(
                    name=name or "",
                    external=False,
                    generation=self._init.generation,
                    pid=self._init.runtime_pid,
                )
                self.extensions.append(extension)
                self._init.extensions.append(extension)
            extension.id = ext_id
            extension.events = list(events)
            extension.registered_at = time.monotonic()
            self._extensions[ext_id] = extension
            self._extension_waiting[ext_id] = False
            self._cond.notify_all()
            body = {
                "functionName": self.function_name,
                "functionVersion": "$LATEST",
                "handler": self.handler,
            }
            if request.headers.get("Lambda-Extension-Accept-Feature") == "accountId":
                body["accountId"] = ACCOUNT
            request.reply(200, body, {"Lambda-Extension-Identifier": ext_id})

    def _next_extension_event(self, ext_id: str) -> dict[str, Any] | None:
        with self._cond:
            extension = self._extensions.get(ext_id)
            if extension is None:
                return None
            self._extension_waiting[ext_id] = True
            if extension.ready_at is None:
                extension.ready_at = time.monotonic()
            current = self._current
            if (
                current is not None
                and "INVOKE" in extension.events
                and ext_id not in self._extension_events
            ):
                current.extensions_next_at.setdefault(ext_id, time.monotonic())
            self._cond.notify_all()
            while ext_id not in self._extension_events:
                if self._extensions.get(ext_id) is not extension:
                    return None  # its INIT is over (reset or shut down)
                if not self._cond.wait(0.5) and self._server.closing:
                    return None
            self._extension_waiting[ext_id] = False
            event = self._extension_events.pop(ext_id)
            if event["eventType"] == "INVOKE":
                extension.invoke_events += 1
            return event


def _stopped(pid: int) -> bool:
    """Every thread of process `pid` is stopped (or the process is gone)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return True
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
            return False
    return True


def _number_after(path: Path, label: str) -> int | None:
    """The number after `label` at the start of a line of a /proc or cgroup file; None when
    the file cannot be read (its process has ended) or has no such line."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(label):
            return int(line[len(label) :].split()[0])
    return None


def _memory_cgroup(memory_mb: int) -> Path | None:
    """A fresh memory cgroup limited to `memory_mb` MiB, or None where cgroups cannot be
    created (then only the peak RSS is checked)."""
    if not os.access(MEMORY_CGROUPS, os.W_OK):
        return None
    cgroup = MEMORY_CGROUPS / f"wandb-nexus-lambda-{uuid.uuid4().hex[:12]}"
    try:
        cgroup.mkdir()
        (cgroup / "memory.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))
    except OSError:
        return None
    return cgroup


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: LambdaEmulator
    closing = False

    def shutdown(self) -> None:
        self.closing = True
        super().shutdown()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Without this, delayed ACKs add ~40 ms to small keep-alive exchanges.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.server.emulator.handle(self)

    do_POST = do_GET

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass
