"""A strict local fake of the W&B HTTP API, for tests.

`FakeWandb` serves, on 127.0.0.1 only:

- ``POST /graphql``: the GraphQL operations a run needs (see `FakeWandb._operations`):
  Viewer, ServerFeaturesQuery and OrganizationCoreWeaveOrganizationID; UpsertBucket, which
  creates or updates a run; RunResumeStatus, answered from the stored run as W&B does, so that
  the official SDK resumes runs against the fake; CreateRunFiles, which hands out upload URLs;
  and NotifyScriptableRunAlert (``run.alert``), whose alerts are kept in `RunState.alerts`.
- ``POST /files/<entity>/<project>/<run>/file_stream``: the file stream.
- ``PUT /upload/<entity>/<project>/<run>/<path>``: the "signed" URLs that CreateRunFiles hands
  out. They point back at this server so that uploads can be checked too.

Anything else gets a 404; that includes the SDK's telemetry probe to ``/sdk/otel/...``, after
which the SDK sends no telemetry.

It is deliberately strict, so that a client bug fails a test instead of passing silently:

- GraphQL and file_stream requests need ``Authorization: Basic base64("api:" + key)`` (401
  otherwise); uploads must carry no ``Authorization`` at all (400), since the key must never
  reach a storage host.
- Malformed bodies, unknown operations, wrongly typed variables, unknown file_stream keys or
  file names, history/events offsets that skip ahead, resent history/events lines that differ
  from what was stored, ``uploaded`` names that were never PUT, PUTs to URLs that were never
  issued and bodies without Content-Length are all rejected with a 4xx status that the official
  client does not retry (400, 403 or 404), so a test fails fast.
- gzip'd file_stream bodies are only accepted if the FILESTREAM_GZIP feature is advertised.
- W&B's file_stream size limits hold: a body over `MAX_REQUEST_BYTES` is refused with 413, a
  line (history, events, summary or console) over `MAX_LINE_BYTES` with 400.
- A bug in the fake itself is answered with 400 and its traceback kept in `internal_errors`.

Not checked: GraphQL selection sets. Operations are recognised by name and answered with the
fields wandb-core selects, so a misspelt field in a client's query goes unnoticed.

Every request is recorded (`FakeWandb.requests`), and each run's state is kept in a `RunState`
(`FakeWandb.run_state`, `FakeWandb.single_run`). Faults can be injected per request kind with
`FakeWandb.inject`.

Helpers for driving the official ``wandb`` SDK against the fake in a subprocess: `wandb_env`,
`run_isolated` and `wandb_sync`.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from typing import Self  # 3.11+, but only type checkers import it

logger = logging.getLogger(__name__)

# 40 characters from [A-Za-z0-9] without a "-": the SDK would treat a dash as an on-prem
# key prefix and then find the rest too short.
DEFAULT_API_KEY = "fake" + "0123456789abcdef" * 2 + "0123"
DEFAULT_ENTITY = "fake-entity"
DEFAULT_PROJECT = "uncategorized"

HISTORY = "wandb-history.jsonl"
EVENTS = "wandb-events.jsonl"
SUMMARY = "wandb-summary.json"
CONSOLE = "output.log"
STREAMED_FILES = (HISTORY, EVENTS, SUMMARY, CONSOLE)

# Keys wandb-core puts in a file_stream body. The legacy Python client's "dropped"/"failed"
# are not accepted: wandb 0.31.0 never sends them, and neither should we.
FILE_STREAM_KEYS = frozenset({"files", "uploaded", "preempting", "complete", "exitcode"})

# W&B's file_stream limits (wandb-protocol.md §3.8): the largest request body, and the
# longest line in it (10 MiB - 100 KiB), both in bytes.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_LINE_BYTES = MAX_REQUEST_BYTES - 100 * 1024

# The GraphQL enum AlertSeverity of NotifyScriptableRunAlert; its variable defaults to INFO.
ALERT_SEVERITIES = ("INFO", "WARN", "ERROR")

# A realistic file_stream answer; clients only look at "stopped".
FILE_STREAM_RESPONSE = {"exitcode": None, "limits": {}, "stopped": False}

_FILE_STREAM_PATH = re.compile(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream")
_UPLOAD_PATH = re.compile(r"/upload/([^/]+)/([^/]+)/([^/]+)/(.+)")
_OPERATION_DEFINITION = re.compile(r"\b(?:query|mutation|subscription)\s+([A-Za-z_]\w*)")


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour, consumed by one request (see `FakeWandb.inject`).

    action is one of:
      "status"            answer `status` with `headers` (e.g. Retry-After); not applied
      "drop_after_apply"  apply the request, then close the connection without answering
      "delay"             sleep `seconds`, then handle the request normally
      "reset"             close the connection without applying or answering
      "close_mid_body"    apply the request, send the status line and headers (with the whole
                          answer's Content-Length) and half the answer, then close
      "garbage_body"      answer 200 with an HTML page, as a proxy or captive portal does;
                          not applied
      "truncated_json"    apply the request, then answer with the first half of its JSON
                          (Content-Length matching what is sent)
      "graphql_error"     answer 200 with {"errors": [{"message": `message`}]} and no data,
                          as W&B answers e.g. a permission problem; not applied
      "hang"              never answer (not applied), until the client closes the connection
    """

    action: str
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    message: str = ""


def status(code: int, headers: dict[str, str] | None = None) -> Fault:
    """A fault that answers `code` (with optional extra headers) instead of handling."""
    return Fault("status", status=code, headers=tuple((headers or {}).items()))


def delay(seconds: float) -> Fault:
    """A fault that holds the request for `seconds` before handling it normally."""
    return Fault("delay", seconds=seconds)


def graphql_error(message: str) -> Fault:
    """A fault that answers 200 with a GraphQL error `message` and no data."""
    return Fault("graphql_error", message=message)


DROP_AFTER_APPLY = Fault("drop_after_apply")
RESET = Fault("reset")
CLOSE_MID_BODY = Fault("close_mid_body")
GARBAGE_BODY = Fault("garbage_body")
TRUNCATED_JSON = Fault("truncated_json")
HANG = Fault("hang")
_NO_FAULT = Fault("none")
_FAULT_KINDS = ("graphql", "file_stream", "upload")
# Faults without parameters, which `inject` also takes by name.
_PLAIN_FAULTS = {
    f.action: f
    for f in (DROP_AFTER_APPLY, RESET, CLOSE_MID_BODY, GARBAGE_BODY, TRUNCATED_JSON, HANG)
}
_GARBAGE_PAGE = b"<html><body><h1>Sign in to the network</h1></body></html>"


def _as_fault(spec: Fault | int | str) -> Fault:
    if isinstance(spec, Fault):
        return spec
    if isinstance(spec, int):
        return status(spec)
    if spec in _PLAIN_FAULTS:
        return _PLAIN_FAULTS[spec]
    raise ValueError(f"not a fault: {spec!r}")


# --------------------------------------------------------------------------- records


@dataclass
class Request:
    """One HTTP request as received. `body` is the parsed JSON for GraphQL and file_stream
    requests that got that far, the raw bytes otherwise. `status` is None when no whole answer
    was sent (connection dropped or answer cut off by a fault)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    kind: str  # "graphql", "file_stream", "upload" or "unknown" (answered 404)
    body: Any
    operation: str | None = None  # GraphQL operation name
    fault: str | None = None  # action of the fault applied to this request, if any
    status: int | None = None
    received_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None  # when the answer was written (time.monotonic())


@dataclass
class RunState:
    """Everything the fake knows about one run, keyed by (entity, project, name)."""

    entity: str
    project: str
    name: str
    storage_id: str
    display_name: str
    upserts: list[dict[str, Any]] = field(default_factory=list)  # UpsertBucket variables
    config: dict[str, Any] | None = None  # latest, as sent: {"key": {"value": v}}
    tags: list[str] | None = None
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    host: str | None = None
    program: str | None = None
    # Streamed files as raw lines, indexed by line number, so a resend never duplicates.
    lines: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in STREAMED_FILES})
    issued_uploads: set[str] = field(default_factory=set)  # paths given a URL by CreateRunFiles
    files: dict[str, bytes] = field(default_factory=dict)  # uploaded contents
    uploaded: list[str] = field(default_factory=list)  # file_stream "uploaded", first-seen order
    preempting: bool = False
    stopped: bool = False  # set by a test: the user pressed Stop in the UI
    complete: bool = False
    exitcode: int | None = None
    # NotifyScriptableRunAlert calls, in arrival order: {"title", "text", "severity",
    # "wait_duration"} with wait_duration in milliseconds (None if not sent).
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config_values(self) -> dict[str, Any]:
        """The config without the {"value": ...} wrappers."""
        return {k: v["value"] for k, v in (self.config or {}).items()}

    @property
    def history(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines[HISTORY]]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines[EVENTS]]

    @property
    def summary(self) -> dict[str, Any] | None:
        """The latest wandb-summary.json line, parsed."""
        summary = self.lines[SUMMARY]
        return json.loads(summary[0]) if summary else None

    @property
    def console(self) -> list[str]:
        """output.log lines as streamed (with timestamps and "ERROR " prefixes)."""
        return list(self.lines[CONSOLE])


class HttpError(Exception):
    """Ends a request with an HTTP error status and a JSON error body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class GraphQLError(Exception):
    """A GraphQL execution error: HTTP 200 with {"data": null, "errors": [...]}."""


# --------------------------------------------------------------------------- server


class FakeWandb:
    """Strict fake W&B server on 127.0.0.1 (port chosen by the OS), serving in a daemon thread.

    Use as a context manager or call `stop()`. Clients get `base_url` and `api_key`.
    `entity` is the viewer's default entity; runs may only be created under it or one of
    `teams`. `features` lists the ServerFeaturesQuery features reported as enabled.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        entity: str = DEFAULT_ENTITY,
        teams: tuple[str, ...] = (),
        features: tuple[str, ...] = (),
        tls: ssl.SSLContext | None = None,
    ):
        self.api_key = api_key
        self.entity = entity
        self.teams = teams
        self.features = features
        self.username = "fake-user"
        self.email = "fake-user@example.com"
        self.requests: list[Request] = []
        self.internal_errors: list[str] = []  # tracebacks of bugs in the fake itself
        self._runs: dict[tuple[str, str, str], RunState] = {}
        self._faults: dict[str, deque[Fault]] = {}
        # Added to every request's handling time: a slow or far-away server.
        self.latency = 0.0
        self._connections: set[socket.socket] = set()
        self._stranded: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._expected_auth = "Basic " + base64.b64encode(f"api:{api_key}".encode()).decode()
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "Viewer": self._viewer,
            "ServerFeaturesQuery": self._server_features,
            "OrganizationCoreWeaveOrganizationID": self._coreweave_organization,
            "UpsertBucket": self._upsert_bucket,
            "RunResumeStatus": self._run_resume_status,
            "CreateRunFiles": self._create_run_files,
            "NotifyScriptableRunAlert": self._notify_scriptable_run_alert,
        }
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        scheme = "http"
        if tls is not None:  # HTTPS with the given server context
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.base_url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() may wait
            name="fake-wandb",
            daemon=True,
        )
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.stopping = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # ------------------------------------------------------------------ test API

    def inject(self, kind: str, faults: list[Fault | int | str]) -> None:
        """Queue faults for the next requests of `kind`, consumed one per request, FIFO.

        kind: "graphql", "graphql:<OperationName>" (checked before plain "graphql"),
        "file_stream" or "upload". A fault is a `Fault` (see `status`, `delay`,
        `graphql_error`, `DROP_AFTER_APPLY`, `RESET`, `CLOSE_MID_BODY`, `GARBAGE_BODY`,
        `TRUNCATED_JSON`, `HANG`), an int (shorthand for status(N)), or the action name of a
        fault without parameters ("drop_after_apply", "hang", ...).
        """
        base, _, operation = kind.partition(":")
        if base not in _FAULT_KINDS or (operation and base != "graphql"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.setdefault(kind, deque()).extend(_as_fault(f) for f in faults)

    def clear_faults(self) -> None:
        """Drop every injected fault not consumed yet (an outage ends)."""
        with self._lock:
            self._faults.clear()

    def strand_connections(self) -> int:
        """Turn every open connection into a black hole, as a NAT or load balancer does
        to idle connections of a frozen Lambda: requests on them are never answered, while
        new connections work. Returns how many were stranded."""
        with self._lock:
            self._stranded |= self._connections
            return len(self._connections)

    def pending_faults(self) -> dict[str, int]:
        """Injected faults not consumed yet, per kind."""
        with self._lock:
            return {kind: len(queue) for kind, queue in self._faults.items() if queue}

    def run_state(self, entity: str, project: str, run_id: str) -> RunState:
        with self._lock:
            try:
                return self._runs[(entity, project, run_id)]
            except KeyError:
                raise KeyError(
                    f"no run {entity}/{project}/{run_id}; known: {sorted(self._runs)}"
                ) from None

    def runs(self) -> list[RunState]:
        with self._lock:
            return list(self._runs.values())

    def single_run(self) -> RunState:
        """The only run; fails if there is not exactly one."""
        runs = self.runs()
        if len(runs) != 1:
            raise AssertionError(f"expected exactly one run, found {[r.name for r in runs]}")
        return runs[0]

    def graphql_operations(self) -> list[str | None]:
        """Operation names of all GraphQL requests, in arrival order."""
        with self._lock:
            return [r.operation for r in self.requests if r.kind == "graphql"]

    # ------------------------------------------------------------------ HTTP plumbing

    def _serve(self, handler: _Handler) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        path = urlsplit(handler.path).path
        kind, params = _route(path)
        record = Request(handler.command, path, headers, kind, body=None)
        with self._lock:
            self.requests.append(record)
        try:
            raw = _read_body(handler, headers)
        except HttpError as err:
            handler.close_connection = True  # the unread body would corrupt the next request
            self._respond(handler, record, err.status, _error_body(str(err)))
            return
        record.body = raw
        if kind == "graphql":
            record.operation = _peek_operation(raw)

        if handler.connection in self._stranded:
            record.fault = "stranded"
            _hold_until_closed(handler)
            return
        fault = self._take_fault(kind, record.operation)
        record.fault = fault.action if fault is not _NO_FAULT else None
        if fault.action == "reset":
            _drop_connection(handler)
            return
        if fault.action == "hang":
            _hold_until_closed(handler)
            return
        if fault.action == "status":
            body = _error_body(f"injected fault: HTTP {fault.status}")
            self._respond(handler, record, fault.status, body, dict(fault.headers))
            return
        if fault.action == "garbage_body":
            self._respond_bytes(handler, record, 200, _GARBAGE_PAGE, "text/html")
            return
        if fault.action == "graphql_error":
            self._respond(handler, record, 200, {"errors": [{"message": fault.message}]})
            return
        time.sleep(self.latency + fault.seconds)  # fault.seconds is 0 unless a delay fault

        try:
            answer_status, answer = self._dispatch(handler.command, kind, params, raw, record)
        except HttpError as err:
            answer_status, answer = err.status, _error_body(str(err))
        except Exception:
            # A bug in the fake. Answer with a status the client does not retry, so the test
            # fails fast instead of waiting out the client's retries; pytest shows the log.
            logger.exception("internal error in fake_wandb")
            self.internal_errors.append(traceback.format_exc())
            answer_status, answer = 400, _error_body("internal error in fake_wandb")
        if fault.action == "drop_after_apply":
            _drop_connection(handler)
            return
        if fault.action in ("close_mid_body", "truncated_json"):
            payload = json.dumps(answer).encode()
            half = payload[: len(payload) // 2]
            if fault.action == "truncated_json":
                self._respond_bytes(handler, record, answer_status, half, "application/json")
                return
            self._respond_bytes(
                handler, record, answer_status, half, "application/json", length=len(payload)
            )
            _drop_connection(handler)
            return
        self._respond(handler, record, answer_status, answer)

    def _take_fault(self, kind: str, operation: str | None) -> Fault:
        with self._lock:
            for key in (f"{kind}:{operation}", kind):
                queue = self._faults.get(key)
                if queue:
                    return queue.popleft()
        return _NO_FAULT

    def _respond(
        self,
        handler: _Handler,
        record: Request,
        code: int,
        body: Any,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        content_type = None if body is None else "application/json"
        self._respond_bytes(handler, record, code, payload, content_type, extra_headers)

    def _respond_bytes(
        self,
        handler: _Handler,
        record: Request,
        code: int,
        payload: bytes,
        content_type: str | None,
        extra_headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        """Answer with `payload`; a `length` beyond it announces more than is sent (the
        caller then closes the connection: an answer cut off mid-body)."""
        handler.send_response(code)
        if content_type is not None:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload) if length is None else length))
        for name, value in (extra_headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if length is None:
            # Noted before the body goes out: the client may act on the answer (and a test
            # look at this record) as soon as it arrives.
            record.status, record.answered_at = code, time.monotonic()
        try:
            handler.wfile.write(payload)
        except ConnectionError:  # the client gave up (e.g. timed out during a delay fault)
            record.status = record.answered_at = None
            handler.close_connection = True

    def _dispatch(
        self, method: str, kind: str, params: tuple[str, ...], raw: bytes, record: Request
    ) -> tuple[int, Any]:
        expected_method = {"upload": "PUT", "unknown": None}.get(kind, "POST")
        if expected_method is None:
            raise HttpError(404, f"no such endpoint: {record.path}")
        if method != expected_method:
            raise HttpError(405, f"{method} not allowed on {record.path}")
        if kind == "upload":
            return self._upload(params, raw, record)
        self._check_auth(record.headers)
        record.body = self._json_body(record.headers, raw)
        if kind == "graphql":
            return self._graphql(record.body)
        if len(raw) > MAX_REQUEST_BYTES:
            raise HttpError(
                413, f"file_stream body of {len(raw)} bytes is over {MAX_REQUEST_BYTES}"
            )
        return self._file_stream(params, record.body)

    def _check_auth(self, headers: dict[str, str]) -> None:
        if headers.get("authorization") != self._expected_auth:
            raise HttpError(401, "invalid or missing API key")

    def _json_body(self, headers: dict[str, str], raw: bytes) -> Any:
        media_type = headers.get("content-type", "").split(";")[0].strip()
        if media_type != "application/json":
            raise HttpError(400, f"expected Content-Type application/json, got {media_type!r}")
        encoding = headers.get("content-encoding", "identity")
        if encoding == "gzip" and "FILESTREAM_GZIP" in self.features:
            try:
                raw = gzip.decompress(raw)
            except OSError as err:
                raise HttpError(400, f"bad gzip body: {err}") from None
        elif encoding != "identity":
            raise HttpError(400, f"unsupported Content-Encoding {encoding!r}")
        try:
            # json accepts the bare NaN/Infinity/-Infinity tokens wandb emits.
            return json.loads(raw)
        except ValueError as err:
            raise HttpError(400, f"body is not valid JSON: {err}") from None

    # ------------------------------------------------------------------ GraphQL

    def _graphql(self, body: Any) -> tuple[int, Any]:
        name = _operation_name(body)
        variables = body.get("variables")
        if variables is None:
            variables = {}
        if not isinstance(variables, dict):
            raise HttpError(400, "variables must be a JSON object")
        operation = self._operations.get(name)
        if operation is None:
            raise HttpError(400, f"unknown operation {name!r}")
        try:
            with self._lock:
                return 200, {"data": operation(variables)}
        except GraphQLError as err:
            return 200, {"data": None, **_error_body(str(err))}

    def _viewer(self, variables: dict[str, Any]) -> dict[str, Any]:
        teams = [{"node": {"name": team}} for team in self.teams]
        return {
            "viewer": {
                "id": _node_id("User", self.username),
                "entity": self.entity,
                "username": self.username,
                "email": self.email,
                "flags": "{}",
                "teams": {"edges": teams},
            }
        }

    def _server_features(self, variables: dict[str, Any]) -> dict[str, Any]:
        features = [{"name": name, "isEnabled": True} for name in self.features]
        return {"serverInfo": {"features": features}}

    def _coreweave_organization(self, variables: dict[str, Any]) -> dict[str, Any]:
        # Asked by the SDK's system monitor; a plain (non-CoreWeave) entity has no organization.
        entity = _string(variables, "entityName", required=True)
        return {"entity": {"organization": None} if self._known_entity(entity) else None}

    def _upsert_bucket(self, variables: dict[str, Any]) -> dict[str, Any]:
        strings = {
            key: _string(variables, key)
            for key in (
                "id",
                "name",
                "project",
                "entity",
                "groupName",
                "description",
                "displayName",
                "notes",
                "commit",
                "host",
                "program",
                "repo",
                "jobType",
                "state",
                "sweep",
            )
        }
        tags = _string_list(variables, "tags")
        if variables.get("debug") is not None and not isinstance(variables["debug"], bool):
            raise HttpError(400, "variable debug must be a Boolean")
        config = _json_string(variables, "config")
        if config is not None:
            _check_config(config)
        summary = _json_string(variables, "summaryMetrics")
        if summary is not None and not isinstance(summary, dict):
            raise HttpError(400, "summaryMetrics must encode a JSON object")

        if strings["id"] is not None:
            run = next((r for r in self._runs.values() if r.storage_id == strings["id"]), None)
            if run is None:
                raise GraphQLError(f"run with id {strings['id']!r} not found")
            inserted = False
        else:
            entity = strings["entity"] or self.entity
            if not self._known_entity(entity):
                raise GraphQLError(f"entity {entity} not found")
            project = strings["project"] or DEFAULT_PROJECT
            name = strings["name"] or _random_run_id()
            run = self._runs.get((entity, project, name))
            inserted = run is None
            if run is None:
                count = sum(1 for r in self._runs.values() if r.project == project)
                run = RunState(
                    entity=entity,
                    project=project,
                    name=name,
                    storage_id=_node_id("Run", f"v1:{name}:{project}:{entity}"),
                    display_name=f"fake-run-{count + 1}",  # the server names unnamed runs
                )
                self._runs[(entity, project, name)] = run

        run.upserts.append(variables)
        # Null means "unchanged": update calls only send what changed.
        for attr, key in (
            ("display_name", "displayName"),
            ("group", "groupName"),
            ("job_type", "jobType"),
            ("notes", "notes"),
            ("host", "host"),
            ("program", "program"),
        ):
            if strings[key] is not None:
                setattr(run, attr, strings[key])
        if tags is not None:
            run.tags = tags
        if config is not None:
            run.config = config  # clients send the whole config each time
        if summary is not None:
            merged = {**(run.summary or {}), **summary}
            run.lines[SUMMARY] = [json.dumps(merged)]
        return {"upsertBucket": {"bucket": self._bucket(run), "inserted": inserted}}

    def _bucket(self, run: RunState) -> dict[str, Any]:
        return {
            "id": run.storage_id,
            "name": run.name,
            "displayName": run.display_name,
            "description": None,
            "config": json.dumps(run.config or {}),
            "sweepName": None,
            "project": self._project(run.entity, run.project),
            "historyLineCount": len(run.lines[HISTORY]),
        }

    def _project(self, entity: str, project: str) -> dict[str, Any]:
        return {
            "id": _node_id("Project", f"v1:{project}:{entity}"),
            "name": project,
            "entity": {"id": _node_id("Entity", entity), "name": entity},
        }

    def _run_resume_status(self, variables: dict[str, Any]) -> dict[str, Any]:
        entity = _string(variables, "entity") or self.entity
        project = _string(variables, "project") or DEFAULT_PROJECT
        name = _string(variables, "name", required=True)
        if not any(r.entity == entity and r.project == project for r in self._runs.values()):
            return {"model": None}  # no such project
        run = self._runs.get((entity, project, name))
        bucket = None
        if run is not None:
            # Clients count a run as started only if its config has _wandb.t (telemetry).
            internal = run.config_values.get("_wandb")
            has_telemetry = isinstance(internal, dict) and "t" in internal
            wandb_config = {"t": internal["t"]} if has_telemetry else {}
            bucket = {
                "id": run.storage_id,
                "name": run.name,
                "summaryMetrics": json.dumps(run.summary or {}),
                "displayName": run.display_name,
                "logLineCount": len(run.lines[CONSOLE]),
                "historyLineCount": len(run.lines[HISTORY]),
                "eventsLineCount": len(run.lines[EVENTS]),
                # Both tails are JSON arrays of JSON-encoded lines.
                "historyTail": json.dumps(run.lines[HISTORY][-10:]),
                "eventsTail": json.dumps(run.lines[EVENTS][-10:]),
                "config": json.dumps(run.config or {}),
                "tags": run.tags or [],
                "notes": run.notes,
                "wandbConfig": json.dumps(wandb_config),
            }
        return {"model": {**self._project(entity, project), "bucket": bucket}}

    def _create_run_files(self, variables: dict[str, Any]) -> dict[str, Any]:
        entity = _string(variables, "entity", required=True)
        project = _string(variables, "project", required=True)
        name = _string(variables, "run", required=True)
        paths = _string_list(variables, "files", required=True)
        run = self._runs.get((entity, project, name))
        if run is None:
            raise GraphQLError(f"run {entity}/{project}/{name} not found")
        for path in paths:
            if not path or path.startswith("/") or "\\" in path or ".." in path.split("/"):
                raise GraphQLError(f"invalid file name {path!r}")
        run.issued_uploads.update(paths)
        prefix = f"{self.base_url}/upload/" + "/".join(
            quote(part, safe="") for part in (entity, project, name)
        )
        files = [{"name": p, "uploadUrl": f"{prefix}/{quote(p, safe='/')}"} for p in paths]
        return {"createRunFiles": {"runID": run.storage_id, "uploadHeaders": [], "files": files}}

    def _notify_scriptable_run_alert(self, variables: dict[str, Any]) -> dict[str, Any]:
        # mutation NotifyScriptableRunAlert($entityName: String!, $projectName: String!,
        #   $runName: String!, $title: String!, $text: String!,
        #   $severity: AlertSeverity = INFO, $waitDuration: Duration)
        entity = _string(variables, "entityName", required=True)
        project = _string(variables, "projectName", required=True)
        name = _string(variables, "runName", required=True)
        title = _string(variables, "title", required=True)
        text = _string(variables, "text", required=True)
        severity = variables.get("severity")
        if severity is None:
            severity = "INFO"
        elif severity not in ALERT_SEVERITIES:
            raise HttpError(400, f"variable severity must be one of {list(ALERT_SEVERITIES)}")
        wait = variables.get("waitDuration")
        if wait is not None and (type(wait) is not int or wait < 0):
            raise HttpError(400, "variable waitDuration must be a non-negative Int (ms)")
        run = self._runs.get((entity, project, name))
        if run is None:
            raise GraphQLError(f"run {entity}/{project}/{name} not found")
        alert = {"title": title, "text": text, "severity": severity, "wait_duration": wait}
        run.alerts.append(alert)
        return {"notifyScriptableRunAlert": {"success": True}}

    def _known_entity(self, entity: str) -> bool:
        return entity == self.entity or entity in self.teams

    # ------------------------------------------------------------------ file_stream

    def _file_stream(self, params: tuple[str, ...], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise HttpError(400, "file_stream body must be a JSON object")
        unknown = set(body) - FILE_STREAM_KEYS
        if unknown:
            raise HttpError(400, f"unknown file_stream keys {sorted(unknown)}")
        with self._lock:
            run = self._runs.get(params)
            if run is None:
                raise HttpError(404, "run {}/{}/{} not found".format(*params))
            # Validate everything first so that a rejected request changes nothing.
            files = body.get("files", {})
            _check_file_chunks(files, run)
            uploaded = body.get("uploaded", [])
            _check_uploaded(uploaded, run)
            complete = body.get("complete", False)
            preempting = body.get("preempting", False)
            if not isinstance(complete, bool) or not isinstance(preempting, bool):
                raise HttpError(400, "complete and preempting must be booleans")
            exitcode = body.get("exitcode")
            if "exitcode" in body and (type(exitcode) is not int or not complete):
                raise HttpError(400, "exitcode must be an int sent with complete: true")

            for name, chunk in files.items():
                offset, content = chunk["offset"], chunk["content"]
                run.lines[name][offset : offset + len(content)] = content
            run.uploaded.extend(p for p in dict.fromkeys(uploaded) if p not in run.uploaded)
            run.preempting = run.preempting or preempting
            run.complete = run.complete or complete
            if complete:
                run.exitcode = exitcode
        return 200, {**FILE_STREAM_RESPONSE, "stopped": run.stopped}

    # ------------------------------------------------------------------ uploads

    def _upload(self, params: tuple[str, ...], raw: bytes, record: Request) -> tuple[int, Any]:
        # Storage services answer 400 to a signed URL that also carries Authorization; for us
        # it would mean the API key leaked to a storage host.
        if "authorization" in record.headers:
            raise HttpError(400, "upload URLs must not receive an Authorization header")
        *key, path = params
        with self._lock:
            run = self._runs.get(tuple(key))
            if run is None or path not in run.issued_uploads:
                raise HttpError(403, "no upload URL was issued for this path")  # bad signature
            run.files[path] = raw
        return 200, None


class _Server(ThreadingHTTPServer):  # daemon threads: a stuck request never blocks exit
    fake: FakeWandb
    stopping = False


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as real servers do, so clients' connection reuse
    # (and its interaction with dropped connections) gets exercised.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, delayed ACKs add ~40 ms
        # to every answer, a cost real servers do not have.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded in FakeWandb.requests instead


# --------------------------------------------------------------------------- helpers


def _route(path: str) -> tuple[str, tuple[str, ...]]:
    if path == "/graphql":
        return "graphql", ()
    if match := _FILE_STREAM_PATH.fullmatch(path):
        return "file_stream", tuple(unquote(p) for p in match.groups())
    if match := _UPLOAD_PATH.fullmatch(path):
        return "upload", tuple(unquote(p) for p in match.groups())
    return "unknown", ()


def _read_body(handler: _Handler, headers: dict[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is None:
        if handler.command in ("POST", "PUT"):
            # 400 rather than 411, which wandb-core would retry.
            raise HttpError(400, "Content-Length required (chunked bodies are not supported)")
        return b""
    if not length.isdigit():
        raise HttpError(400, "bad Content-Length")
    return handler.rfile.read(int(length))


def _hold_until_closed(handler: _Handler) -> None:
    """Answer nothing and wait until the client gives up on the connection."""
    handler.close_connection = True
    handler.connection.settimeout(0.2)
    while not handler.server.stopping:
        try:
            if not handler.connection.recv(4096):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def _drop_connection(handler: _Handler) -> None:
    """Close the connection without an answer; the client sees EOF."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _operation_name(body: Any) -> str:
    """The operation to run: operationName, or the document's only named operation."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise HttpError(400, "GraphQL body must be a JSON object with a string 'query'")
    defined = _OPERATION_DEFINITION.findall(body["query"])
    name = body.get("operationName")
    if name is not None:
        if name not in defined:
            raise HttpError(400, f"operation {name!r} is not defined in the query")
        return name
    if len(defined) != 1:
        raise HttpError(400, "the query must define exactly one named operation")
    return defined[0]


def _peek_operation(raw: bytes) -> str | None:
    try:
        return _operation_name(json.loads(raw))
    except (ValueError, HttpError):
        return None


def _string(variables: dict[str, Any], key: str, required: bool = False) -> Any:
    value = variables.get(key)
    if value is None and required:
        raise HttpError(400, f"variable {key} of non-null type was not provided")
    if value is not None and not isinstance(value, str):
        raise HttpError(400, f"variable {key} must be a String")
    return value


def _string_list(variables: dict[str, Any], key: str, required: bool = False) -> Any:
    value = variables.get(key)
    if value is None and required:
        raise HttpError(400, f"variable {key} of non-null type was not provided")
    if value is not None and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        raise HttpError(400, f"variable {key} must be a list of non-null Strings")
    return value


def _json_string(variables: dict[str, Any], key: str) -> Any:
    """Parse a JSONString variable: a string holding JSON, not a JSON value itself."""
    value = _string(variables, key)
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as err:
        raise HttpError(400, f"variable {key} is not a valid JSONString: {err}") from None


def _check_config(config: Any) -> None:
    """Config must be {"key": {"value": v}} (legacy clients also sent "desc")."""
    if not isinstance(config, dict):
        raise HttpError(400, "config must encode a JSON object")
    for key, wrapped in config.items():
        if not isinstance(wrapped, dict) or not {"value"} <= set(wrapped) <= {"value", "desc"}:
            raise HttpError(400, f"config key {key!r} is not wrapped as {{'value': ...}}")


def _check_file_chunks(files: Any, run: RunState) -> None:
    if not isinstance(files, dict):
        raise HttpError(400, "files must be a JSON object")
    for name, chunk in files.items():
        if name not in STREAMED_FILES:
            raise HttpError(400, f"unknown streamed file {name!r}")
        if not isinstance(chunk, dict) or set(chunk) != {"offset", "content"}:
            raise HttpError(400, f"{name}: expected exactly the keys offset and content")
        offset, content = chunk["offset"], chunk["content"]
        if type(offset) is not int or offset < 0:
            raise HttpError(400, f"{name}: offset must be a non-negative int")
        if not isinstance(content, list) or not all(isinstance(line, str) for line in content):
            raise HttpError(400, f"{name}: content must be a list of strings")
        stored = run.lines[name]
        if name == SUMMARY and (offset != 0 or len(content) != 1):
            raise HttpError(400, f"{name}: expected exactly one line at offset 0")
        if offset > len(stored):
            raise HttpError(400, f"{name}: offset {offset} skips past the {len(stored)} lines")
        longest = max((len(line.encode(errors="surrogatepass")) for line in content), default=0)
        if longest > MAX_LINE_BYTES:
            raise HttpError(400, f"{name}: a line of {longest} bytes is over {MAX_LINE_BYTES}")
        if name != CONSOLE:
            for line in content:
                try:
                    parsed = json.loads(line)
                except ValueError as err:
                    raise HttpError(400, f"{name}: line is not valid JSON: {err}") from None
                if not isinstance(parsed, dict):
                    raise HttpError(400, f"{name}: line is not a JSON object")
        # History and events are append-only: a resend (after a lost answer) must repeat
        # the stored lines exactly. Console lines may be rewritten (terminal emulation).
        overlap = stored[offset : offset + len(content)]
        if name in (HISTORY, EVENTS) and overlap != content[: len(overlap)]:
            raise HttpError(400, f"{name}: resent lines from offset {offset} differ")


def _check_uploaded(uploaded: Any, run: RunState) -> None:
    if not isinstance(uploaded, list) or not all(isinstance(p, str) for p in uploaded):
        raise HttpError(400, "uploaded must be a list of strings")
    missing = [p for p in uploaded if p not in run.files]
    if missing:
        raise HttpError(400, f"uploaded lists files that were never uploaded: {missing}")


def _error_body(message: str) -> dict[str, Any]:
    # The shape GraphQL servers use; wandb-core also reads it for non-GraphQL errors.
    return {"errors": [{"message": message}]}


def _node_id(type_name: str, key: str) -> str:
    """An opaque id like the server's: base64("<Type>:<key>")."""
    return base64.b64encode(f"{type_name}:{key}".encode()).decode()


def _random_run_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


# --------------------------------------------------------------------------- official SDK


def wandb_env(
    fake: FakeWandb, home: str | os.PathLike[str], extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment for an official-SDK subprocess that talks to `fake` and keeps all its
    files under `home` (also used as HOME, so the real home is never touched)."""
    env = {
        name: value
        for name, value in os.environ.items()
        # Inherited W&B settings, netrc or XDG dirs would leak in from the developer's setup.
        if not name.startswith(("WANDB_", "XDG_")) and name != "NETRC"
    }
    env.update(
        HOME=str(home),
        WANDB_DIR=str(home),
        WANDB_BASE_URL=fake.base_url,
        WANDB_API_KEY=fake.api_key,
        WANDB_SILENT="true",
        WANDB_INIT_TIMEOUT="60",  # bounded, so a broken fake fails the test instead of hanging
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra or {})
    return env


def run_isolated(
    cmd: list[str], env: dict[str, str], timeout: float, cwd: str | os.PathLike[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in a new process group and kill what is left of that group afterwards, also
    on timeout (subprocess.run would only kill the direct child).

    The SDK's wandb-core service moves to a session of its own, so the group kill misses it;
    but it watches its parent and exits by itself (observed within 2 s) once the parent is
    gone, together with its wandb-symon helper.
    """
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr) from None
    finally:
        _kill_group(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class SyncFailed(RuntimeError):
    """`wandb sync` failed; the message includes its output."""


def wandb_sync(
    run_dir: str | os.PathLike[str],
    fake: FakeWandb,
    env_extra: dict[str, str] | None = None,
    timeout: float = 120,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Upload an offline run directory to `fake` with the official ``wandb sync`` CLI.

    `wandb sync` exits 0 even when the upload fails, so success is judged by the
    ``.wandb.synced`` marker it writes. Raises SyncFailed, showing stdout and stderr (not
    silenced, so that errors appear there), unless the CLI exits 0 and writes the marker.
    """
    run_dir = Path(run_dir)
    markers_before = _sync_markers(run_dir)
    with tempfile.TemporaryDirectory(prefix="wandb-sync-home-") as home:
        cmd = [sys.executable, "-m", "wandb", "sync", *args, str(run_dir)]
        env = wandb_env(fake, home, {"WANDB_SILENT": "false", **(env_extra or {})})
        result = run_isolated(cmd, env, timeout, cwd=home)
    synced = bool(_sync_markers(run_dir).items() - markers_before.items())
    if result.returncode != 0 or not synced:
        raise SyncFailed(
            f"wandb sync {run_dir} failed (exit code {result.returncode}, marker written: "
            f"{synced})\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def _sync_markers(run_dir: Path) -> dict[Path, int]:
    return {m: m.stat().st_mtime_ns for m in run_dir.glob("*.wandb.synced")}
