"""Lambda's Extensions API for one external extension, on loopback: `register` answers at
once, `event/next` blocks until the test sends an event. For the `wandb-nexus` executable of
the layer (tests/test_serverless.py, bench/extension.py)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeExtensionsApi:
    def __init__(self) -> None:
        self.registered = threading.Event()
        self.registered_at = 0.0  # time.perf_counter() when register arrived
        self.registration: dict[str, Any] = {}
        self.waiting = threading.Event()  # the extension waits in event/next
        self.exit_errors: list[str] = []
        self._event: dict[str, Any] | None = None
        self._cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/extension/register"):
                    api.registered_at = time.perf_counter()
                    api.registration = {
                        "name": self.headers.get("Lambda-Extension-Name"),
                        "events": json.loads(body)["events"],
                    }
                    api.registered.set()
                    self.reply({"functionName": "f"}, {"Lambda-Extension-Identifier": "id"})
                elif self.path.endswith("/extension/exit/error"):
                    api.exit_errors.append(self.headers["Lambda-Extension-Function-Error-Type"])
                    self.reply({"status": "OK"}, code=202)
                else:
                    self.reply({"errorMessage": "no such path"}, code=404)

            def do_GET(self) -> None:
                api.waiting.set()
                with api._cond:
                    while api._event is None:
                        api._cond.wait()
                    event, api._event = api._event, None
                api.waiting.clear()
                self.reply(event)

            def reply(self, body: Any, headers: dict[str, str] | None = None, code=200) -> None:
                payload = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def send(self, event: dict[str, Any]) -> None:
        """Answers the extension's (current or next) event/next with `event`."""
        with self._cond:
            self._event = event
            self._cond.notify_all()

    def shutdown(self, reason: str, budget_s: float = 2.0) -> None:
        """Sends SHUTDOWN with `reason`, the process to be killed `budget_s` from now."""
        deadline_ms = int((time.time() + budget_s) * 1000)
        self.send({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms})

    def start(self, binary: Path, env: dict[str, str]) -> subprocess.Popen[str]:
        """Starts the extension on this API; returns once it has registered."""
        proc = subprocess.Popen(
            [str(binary)],
            env={**env, "AWS_LAMBDA_RUNTIME_API": self.address},
            stderr=subprocess.PIPE,
            text=True,
        )
        if not self.registered.wait(10):
            proc.kill()
            raise AssertionError(f"no register request; stderr: {proc.communicate()[1]}")
        return proc

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
