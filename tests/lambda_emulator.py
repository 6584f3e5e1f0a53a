"""A Lambda execution environment for tests: the Runtime API and the Extensions API on
127.0.0.1, the real runtime interface client (`python -m awslambdaric`) as the runtime, and
Lambda's lifecycle around it.

What it enforces, as Lambda does:
  * INIT ends when the runtime and every registered extension wait for their next event;
    extensions may register only before that (later registrations are refused).
  * Internal extensions (ours run inside the runtime process) get INVOKE events only; a
    registration asking for SHUTDOWN is refused.
  * An invocation ends when the runtime has posted its response (or error) and asked for the
    next event, and every extension has asked for its next event. Then the whole process is
    frozen (SIGSTOP) until the next invocation thaws it (SIGCONT): no thread makes progress.
  * An invocation that has not ended by its deadline is a timeout, recorded and reported.
  * At the end the process is killed (SIGKILL): internal extensions get no SHUTDOWN.
  * The function's memory size is a hard limit: the runtime runs in a memory cgroup of that
    size (where cgroup v1 memory control is writable, as for root here), so going over it
    gets the runtime killed, as on Lambda.

The runtime runs in a Lambda-like sandbox (`unshare`): every mount read-only, a tmpfs /tmp,
a /dev with only null, zero, random and urandom (so no /dev/shm), and a HOME that does not
exist. The emulator stays outside, on the host's network namespace.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")
RUNTIME_PREFIX = "/2018-06-01/runtime/"
EXTENSION_PREFIX = "/2020-01-01/extension/"
ACCOUNT = "123456789012"

# Make every mount read-only, then give the runtime what Lambda gives it: a writable tmpfs
# /tmp and a minimal /dev. "$0" is the working directory (the task root); the arguments up to
# "--" are host paths under /tmp that must stay visible (a checkout or virtualenv there): the
# new /tmp is assembled under the new /dev with those paths bound into it read-only, then
# moved over /tmp.
SANDBOX = r"""
set -e
keep=""
while [ "$1" != "--" ]; do keep="$keep $1"; shift; done
shift
mount --make-rprivate /
for target in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$target" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$target" 2>/dev/null || true
done
mount -t tmpfs -o mode=755 none /dev
mkdir /dev/.tmp
mount -t tmpfs -o size=512m tmpfs /dev/.tmp
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
exec "$@"
"""


def _under_tmp(paths: list[Path]) -> list[str]:
    """The outermost of `paths` that lie under /tmp (which the sandbox replaces)."""
    tmp = Path("/tmp")
    inside = sorted({p.resolve() for p in paths if tmp in p.resolve().parents})
    outermost: list[Path] = []
    for path in inside:
        if not any(kept in path.parents for kept in outermost):
            outermost.append(path)
    return [str(p) for p in outermost]


@dataclass
class Invocation:
    """How one invocation went. Times are time.monotonic() seconds."""

    request_id: str
    dispatched_at: float
    deadline_ms: int
    outcome: str | None = None  # "response" or "error"
    body: Any = None
    responded_at: float | None = None
    runtime_next_at: float | None = None
    extensions_next_at: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False

    @property
    def response_latency(self) -> float:
        assert self.responded_at is not None
        return self.responded_at - self.dispatched_at

    @property
    def ended_at(self) -> float:
        """When Lambda would freeze the environment: the last of the next-event calls."""
        assert self.runtime_next_at is not None
        return max([self.runtime_next_at, *self.extensions_next_at.values()])


class LambdaEmulator:
    """One execution environment running `handler` (module.function) from `task_root`.

    Use as a context manager: INIT runs on entry (the runtime imports the handler module),
    `invoke()` runs one invocation and freezes the environment after it, and exit kills the
    runtime.
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
    ):
        self.task_root = task_root
        self.handler = handler
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.function_name = function_name
        self.sandbox = sandbox
        self.extra_env = env or {}
        self.invocations: list[Invocation] = []
        self.init_errors: list[Any] = []
        self.output = b""
        self._cond = threading.Condition()
        self._runtime_ready = False  # the runtime has asked for its first event
        self._runtime_waiting = False
        self._runtime_event: Invocation | None = None
        self._extensions: dict[str, str] = {}  # id -> name
        self._extension_waiting: dict[str, bool] = {}
        self._extension_events: dict[str, dict[str, Any]] = {}
        self._current: Invocation | None = None
        self._frozen = False
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.emulator = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.process: subprocess.Popen[bytes] | None = None
        self._output_thread: threading.Thread | None = None
        self.memory_cgroup = _memory_cgroup(memory_mb)

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LambdaEmulator:
        self._thread.start()
        command = [sys.executable, "-m", "awslambdaric", self.handler]
        if self.sandbox:
            needed = [
                self.task_root,
                Path(sys.prefix),
                Path(sys.base_prefix),
                *map(Path, sys.path[1:]),
            ]
            keep = _under_tmp([p for p in needed if p.exists()])
            command = [
                "unshare",
                "-m",
                "sh",
                "-c",
                SANDBOX,
                str(self.task_root),
                *keep,
                "--",
                *command,
            ]
        cgroup = self.memory_cgroup

        def enter_cgroup() -> None:  # in the child, before exec: everything it runs is limited
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        self.process = subprocess.Popen(
            command,
            cwd=self.task_root,
            env=self._runtime_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroup,
        )
        self._output_thread = threading.Thread(target=self._collect_output, daemon=True)
        self._output_thread.start()
        self._wait(self._init_done, self.timeout, "INIT did not finish")
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self._server.shutdown()
        self._server.server_close()
        if self.memory_cgroup is not None:
            self.memory_cgroup.rmdir()

    def kill(self) -> None:
        """Ends the environment as Lambda does when it reclaims it: SIGKILL, frozen or not."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._output_thread is not None:
            self._output_thread.join(timeout=5)

    def _runtime_env(self) -> dict[str, str]:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            # Lambda's own bootstrap puts the task root on the path this way.
            "PYTHONPATH": str(self.task_root),
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
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            # Lambda's HOME comes from a password entry whose directory does not exist.
            "HOME": "/home/sbx_user1051",
        }
        return {**env, **self.extra_env}

    def _collect_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for chunk in iter(lambda: self.process.stdout.read1(65536), b""):  # type: ignore[union-attr]
            self.output += chunk

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = end - time.monotonic()
                if left <= 0 or (self.process is not None and self.process.poll() is not None):
                    raise AssertionError(f"{what}; runtime output:\n{self.output.decode()}")
                self._cond.wait(min(left, 0.1))

    # ------------------------------------------------------------------ invoking

    def invoke(self, payload: Any, *, pause: float = 0.0) -> Invocation:
        """Runs one invocation and freezes the environment after it; returns how it went.
        `pause` keeps the environment frozen that long afterwards (idle time)."""
        assert self.process is not None
        self._thaw()
        now_ms = int(time.time() * 1000)
        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            dispatched_at=0.0,
            deadline_ms=now_ms + int(self.timeout * 1000),
            body=payload,
        )
        with self._cond:
            self._current = invocation
            self._runtime_event = invocation
            for ext_id in self._extensions:
                self._extension_events[ext_id] = {
                    "eventType": "INVOKE",
                    "deadlineMs": invocation.deadline_ms,
                    "requestId": invocation.request_id,
                    "invokedFunctionArn": self._function_arn(),
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-0-0"},
                }
            self._cond.notify_all()
        try:
            self._wait(self._invocation_ended, self.timeout + 1.0, "invocation did not end")
        except AssertionError:
            invocation.timed_out = True
            raise
        finally:
            self.invocations.append(invocation)
        if invocation.ended_at > invocation.dispatched_at + self.timeout:
            invocation.timed_out = True
        self._freeze()
        if pause:
            time.sleep(pause)
        return invocation

    def _init_done(self) -> bool:
        return self._runtime_waiting and all(self._extension_waiting.values())

    def _invocation_ended(self) -> bool:
        current = self._current
        return (
            current is not None
            and current.outcome is not None
            and self._runtime_waiting
            and self._runtime_event is None
            and all(self._extension_waiting.values())
            and not self._extension_events
        )

    def _freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def _thaw(self) -> None:
        assert self.process is not None
        if self._frozen:
            self.process.send_signal(signal.SIGCONT)
            self._frozen = False

    def _function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"

    def child_processes(self) -> list[int]:
        """Children of the runtime process (Lambda-safe code starts none)."""
        assert self.process is not None
        children: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children.extend(int(pid) for pid in text)
        return children

    def peak_memory_mb(self) -> float | None:
        """The cgroup's peak memory use (as Lambda counts it: RSS and page cache), in MiB."""
        if self.memory_cgroup is None:
            return None
        return int((self.memory_cgroup / "memory.max_usage_in_bytes").read_text()) / 2**20

    def peak_rss_mb(self) -> float:
        """The runtime process's peak resident memory (VmHWM), in MiB."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

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
        if request.command == "GET" and path == "invocation/next":
            invocation = self._next_runtime_event()
            if invocation is None:
                return  # the server is shutting down
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
                current = self._current
                if current is None or current.request_id != request_id:
                    request.reply(400, {"errorMessage": f"unknown request id {request_id}"})
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

    def _next_runtime_event(self) -> Invocation | None:
        with self._cond:
            self._runtime_waiting = True
            self._runtime_ready = True
            current = self._current
            if current is not None and self._runtime_event is None and not current.runtime_next_at:
                current.runtime_next_at = time.monotonic()
            self._cond.notify_all()
            while self._runtime_event is None:
                if not self._cond.wait(0.5) and self._server.closing:
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
            if not name:
                request.reply(400, {"errorMessage": "Lambda-Extension-Name is required"})
            elif self._runtime_ready:
                request.reply(403, {"errorMessage": "registration is closed after init"})
            elif not isinstance(events, list) or set(events) - {"INVOKE"}:
                # An internal extension (a thread of the runtime) may only have INVOKE.
                message = f"internal extensions get INVOKE only, not {events}"
                request.reply(400, {"errorMessage": message})
            else:
                ext_id = str(uuid.uuid4())
                self._extensions[ext_id] = name
                self._extension_waiting[ext_id] = False
                body = {
                    "functionName": self.function_name,
                    "functionVersion": "$LATEST",
                    "handler": self.handler,
                }
                request.reply(200, body, {"Lambda-Extension-Identifier": ext_id})

    def _next_extension_event(self, ext_id: str) -> dict[str, Any] | None:
        with self._cond:
            self._extension_waiting[ext_id] = True
            current = self._current
            if current is not None and ext_id not in self._extension_events:
                current.extensions_next_at.setdefault(ext_id, time.monotonic())
            self._cond.notify_all()
            while ext_id not in self._extension_events:
                if not self._cond.wait(0.5) and self._server.closing:
                    return None
            self._extension_waiting[ext_id] = False
            return self._extension_events.pop(ext_id)

    @property
    def extension_names(self) -> list[str]:
        return list(self._extensions.values())


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
