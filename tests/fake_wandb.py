"""A strict local fake of the W&B HTTP API, for tests.

`FakeWandb` serves, on 127.0.0.1 only:

- ``POST /graphql``: the GraphQL operations a run needs (see `FakeWandb._operations`):
  Viewer, ServerFeaturesQuery and OrganizationCoreWeaveOrganizationID; UpsertBucket, which
  creates or updates a run; RunResumeStatus, answered from the stored run as W&B does, so that
  the official SDK resumes runs against the fake; CreateRunFiles, which hands out upload URLs;
  and NotifyScriptableRunAlert (``run.alert``), whose alerts are kept in `RunState.alerts`.
  Artifacts (wandb-artifacts-resume.md §1.5): CreateArtifact, CreateArtifactManifest,
  CreateArtifactFiles and CommitArtifact, which keep versions in `ArtifactState`s
  (`FakeWandb.artifacts`) with their description, metadata, tags and aliases ("latest" and
  any other alias move to the version that takes them); UseArtifact in both forms (wandb-core's
  ``$input``, the Python SDK's top-level variables), which makes the run a user of the
  version (`ArtifactState.used_by`, the run's inputArtifacts); ClientIDMapping, which
  resolves the client ids behind ``wandb-client-artifact://`` references
  (`FakeWandb.resolve_client_artifact_url`).
  And the queries the official ``wandb.Api()``, ``run.use_artifact`` and the SDK's own checks
  send (`READ_OPERATIONS`: a run with its config, summary, history, files, logged and used
  artifacts, scan_history through wandb-core's history reader, an artifact by name, alias,
  version or id, its manifest, files and file URLs, who logged and used it), answered from
  the stored runs and artifacts. What does not exist is null in the data, without errors, as
  W&B answers it (the SDK then raises "artifact membership 'x:v9' not found in 'e/p'" or
  "project 'p' not found under entity 'e'"). An artifact's files are all its manifest
  entries: references too, whose ``url`` and ``directUrl`` are the reference itself (the
  fake never serves their bytes).
- ``POST /files/<entity>/<project>/<run>/file_stream``: the file stream.
- ``PUT /upload/<entity>/<project>/<run>/<path>``: the "signed" URLs that CreateRunFiles hands
  out. They point back at this server so that uploads can be checked too. A GET of the same
  URL (a run file's ``directUrl``) or of ``/files/<entity>/<project>/<run>/<path>`` (its
  ``url``, which needs the API key as W&B's does) downloads the file.
- ``PUT /artifacts/<n>/files/<path>`` and ``PUT /artifacts/<n>/wandb_manifest.json``: the
  signed URLs of artifact files (CreateArtifactFiles) and manifests (CreateArtifactManifest);
  a GET of them (their ``directUrl``) downloads.
- ``GET /artifactsV2/<region>/<entity>/<project>/<collection>/[<artifact id>/]<birth artifact
  id>/<hex MD5>/<file name>``: an artifact's stored file on the API host (needs the API key),
  where the SDK fetches a file it has no directUrl for (``get_entry(path).download()``,
  ``file()``); the artifact id only comes from clients told
  ARTIFACT_V2_DOWNLOAD_HANDLER_SUPPORTS_ARTIFACT_ID.

Anything else gets a 404; that includes the SDK's telemetry probe to ``/sdk/otel/...``, after
which the SDK sends no telemetry.

It is deliberately strict, so that a client bug fails a test instead of passing silently:

- GraphQL, file_stream and API-host downloads need ``Authorization: Basic base64("api:" +
  key)`` (401 otherwise); uploads and downloads through signed URLs must carry no
  ``Authorization`` at all (400), since the key must never reach a storage host.
- Malformed bodies, unknown operations, wrongly typed variables or unknown input fields,
  unknown file_stream keys or file names, history/events offsets that skip ahead, resent
  history/events lines that differ from what was stored, ``uploaded`` names that were never
  PUT, PUTs to URLs that were never issued and bodies without Content-Length are all rejected
  with a 4xx status that the official client does not retry (400, 403 or 404), so a test
  fails fast.
- Artifacts are checked as W&B checks them. CreateArtifactFiles needs a PENDING artifact and
  its manifest (from the first CreateArtifactManifest). Artifact file and manifest URLs are
  signed for the MD5 given (CreateArtifactFiles ``md5``, the second CreateArtifactManifest's
  ``digest``): a PUT without the issued ``Content-MD5`` header (uploadHeaders) is a 403, one
  whose body has another MD5 a 400. CommitArtifact fails unless the manifest was uploaded,
  its digests add up to the artifact digest given to CreateArtifact, and every file it
  stores was uploaded with the digest and size it states; entries with a ``ref`` (references:
  digest an ETag, MD5 or the URI, ``extra``, maybe no size) are metadata only. Other refusals
  (unknown artifact, run or entity, a collection of another type, an artifact no longer
  PENDING, UseArtifact of an uncommitted artifact) are GraphQL errors: HTTP 200 with
  ``errors`` and no data. Input fields that only exist with a server feature
  (CreateArtifactFiles ``digest``, UseArtifact ``artifactEntityName``/``artifactProjectName``)
  are unknown fields (400) unless the fake advertises it.
- gzip'd file_stream bodies are only accepted if the FILESTREAM_GZIP feature is advertised.
- W&B's file_stream size limits hold: a body over `MAX_REQUEST_BYTES` is refused with 413, a
  line (history, events, summary or console) over `MAX_LINE_BYTES` with 400.
- A bug in the fake itself is answered with 400 and its traceback kept in `internal_errors`.

Selection sets are checked for `READ_OPERATIONS` and `EXECUTED_MUTATIONS` (UseArtifact)
only: those are executed (fields, aliases, arguments, fragments, @include/@skip), selecting
a field the fake does not serve is a 400 naming it, and their variables must fit the types
the operation declares (String, ID, Int, Float, Boolean, JSONString, lists, non-null) and be
declared where used (400 otherwise; undeclared extra variables are ignored, as GraphQL
servers do). A mutation's effects apply only if its whole answer could be made. The other
operations are recognised by name and answered with the fields wandb-core selects, so a
misspelt field in a client's mutation goes unnoticed.

Not modelled: multipart artifact uploads and ranged (multipart) downloads, incremental and
distributed (PATCH) manifests, XXH128 digests, file-level deduplication (CreateArtifactFiles
always asks for an upload), editing logged artifacts (UpdateArtifact, AddAliases, ...),
links and portfolios, TTLs, storage regions other than "default", history exported to
parquet (every row is "live"), pagination limits of the real server.

Every request is recorded (`FakeWandb.requests`), and each run's state is kept in a `RunState`
(`FakeWandb.run_state`, `FakeWandb.single_run`). Faults can be injected per request kind with
`FakeWandb.inject`.

An overloaded W&B can be played too: `FakeWandb.rate_limit` puts a token bucket in front of
every API request (429 with ``Retry-After`` above the rate, nothing applied), and
`FakeWandb.slow_phase` makes every request slow for a while. Every ``Retry-After`` the fake
sends is kept (`FakeWandb.retry_afters`), so `FakeWandb.retry_after_violations` can tell which
requests came back sooner than they were told to.

Helpers for driving the official ``wandb`` SDK against the fake in a subprocess: `wandb_env`,
`run_isolated` and `wandb_sync`.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import logging
import math
import mimetypes
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

# Artifacts (wandb-artifacts-resume.md §1.5): the input fields wandb-core 0.31.0 sends.
# Unknown fields are refused (400) as GraphQL input validation would.
CREATE_ARTIFACT_INPUT = frozenset(
    {
        "aliases",
        "artifactCollectionName",
        "artifactCollectionNames",
        "artifactTypeName",
        "clientID",
        "clientMutationId",
        "description",
        "digest",
        "digestAlgorithm",
        "distributedID",
        "enableDigestDeduplication",
        "entityName",
        "historyStep",
        "labels",
        "metadata",
        "projectName",
        "runName",
        "sequenceClientID",
        "storageRegion",
        "tags",
        "ttlDurationSeconds",
    }
)
# CreateArtifactFilesInput and one of its artifactFiles; "digestAlgorithm" and each file's
# "digest" only exist on servers with the ARTIFACT_DIGEST_ALGORITHM feature.
CREATE_ARTIFACT_FILES_INPUT = frozenset(
    {"artifactFiles", "clientMutationId", "cloudRegionID", "storageLayout"}
)
ARTIFACT_FILE_SPEC = frozenset(
    {"artifactID", "artifactManifestID", "md5", "mimetype", "name", "uploadPartsInput"}
)
# UseArtifactInput. "artifactEntityName" and "artifactProjectName" only exist on servers with
# the USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION feature (both clients send them only then).
USE_ARTIFACT_INPUT = frozenset(
    {"artifactID", "entityName", "projectName", "runName", "usedAs", "clientMutationId"}
)
USE_ARTIFACT_PROJECT_INPUT = frozenset({"artifactEntityName", "artifactProjectName"})
DIGEST_ALGORITHMS = ("MANIFEST_MD5", "MANIFEST_XXH128")
MANIFEST_TYPES = ("FULL", "INCREMENTAL", "PATCH")
STORAGE_LAYOUTS = ("V1", "V2")
STORAGE_POLICY = "wandb-storage-policy-v1"

# Queries of the official SDK's public API (wandb.Api) and of its Python-side checks,
# answered by executing their selection sets (see "mini GraphQL" below).
READ_OPERATIONS = frozenset(
    {
        "ArtifactType",  # before log_artifact: the collection's type, if it exists
        "GetDefaultEntity",
        "Run",
        "RunFullHistory",
        "RunSampledHistory",
        "RunHistoryKeys",
        "RunParquetHistory",  # wandb-core's history reader, for scan_history
        "HistoryPage",
        "SampledHistoryPage",
        "RunFiles",
        "RunOutputArtifacts",
        "RunInputArtifacts",
        "ArtifactMembershipByName",  # Api().artifact(...) and run.use_artifact("name:alias")
        "ArtifactByID",
        "FetchArtifactManifest",
        "GetArtifactMembershipFileUrls",  # artifact.download()
        "ArtifactMembershipFiles",  # artifact.files()
        "ArtifactUsedBy",  # artifact.used_by()
        "ArtifactCreatedBy",  # artifact.logged_by()
    }
)
# Mutations whose selection sets are executed like READ_OPERATIONS' (see `FakeWandb._graphql`):
# their effects apply only once the whole answer could be made.
EXECUTED_MUTATIONS = frozenset({"UseArtifact"})

# A realistic file_stream answer; clients only look at "stopped".
FILE_STREAM_RESPONSE: dict[str, Any] = {"exitcode": None, "limits": {}, "stopped": False}

_FILE_STREAM_PATH = re.compile(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream")
_UPLOAD_PATH = re.compile(r"/upload/([^/]+)/([^/]+)/([^/]+)/(.+)")
_RUN_FILE_PATH = re.compile(r"/files/([^/]+)/([^/]+)/([^/]+)/(.+)")
_ARTIFACT_FILE_PATH = re.compile(r"/artifacts/(\d+)/files/(.+)")
_ARTIFACT_MANIFEST_PATH = re.compile(r"/artifacts/(\d+)/wandb_manifest\.json")
# An artifact file on the API host (the SDK's fallback when it has no directUrl, e.g. for
# get_entry(...).download() and file()): /artifactsV2/<region>/<entity>/<project>/<collection>/
# [<artifact id>/]<birth artifact id>/<hex MD5>/<file name>, the artifact id only from clients
# that saw ARTIFACT_V2_DOWNLOAD_HANDLER_SUPPORTS_ARTIFACT_ID.
_ARTIFACT_API_PATH = re.compile(
    r"/artifactsV2/([^/]+)/([^/]+)/([^/]+)/([^/]+)/(?:([^/]+)/)?([^/]*)/([0-9a-f]{32})/([^/]+)"
)
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
_FAULT_KINDS = ("graphql", "file_stream", "upload", "download")
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
    was sent (connection dropped or answer cut off by a fault). `fault` is also "rate_limit"
    for a request the rate limiter refused (429) and "stranded" for one on a stranded
    connection."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    # "graphql", "file_stream", "upload" (PUT to a signed URL), "download" (GET of a run file,
    # artifact file or manifest) or "unknown" (answered 404)
    kind: str
    body: Any
    operation: str | None = None  # GraphQL operation name
    fault: str | None = None  # action of the fault applied to this request, if any
    status: int | None = None
    received_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None  # when the answer was written (time.monotonic())
    # What the request addresses, for Retry-After accounting (see `request_resource`); None
    # for unknown paths.
    resource: str | None = None
    peer: tuple[str, int] | None = None  # the client's TCP address: one per connection
    slowed: float = 0.0  # seconds of slow-phase latency added (`FakeWandb.slow_phase`)


@dataclass(frozen=True)
class RetryAfterTold:
    """An answer with a ``Retry-After`` header: `request` (answered at its `answered_at`)
    told its client not to ask for `resource` again for `seconds`. Sent by the rate limiter
    (429) or by an injected `status` fault carrying the header."""

    request: Request
    resource: str
    seconds: float
    # True when the resource names no run or artifact (e.g. Viewer, ServerFeaturesQuery):
    # every client asks for it, so concurrent clients cannot be told apart on it.
    shared: bool

    @property
    def until(self) -> float:
        """When the wait ends (time.monotonic())."""
        assert self.request.answered_at is not None
        return self.request.answered_at + self.seconds


@dataclass(frozen=True)
class RetryAfterViolation:
    """`request` asked for `told.resource` `early` seconds before `told`'s Retry-After ended."""

    request: Request
    told: RetryAfterTold

    @property
    def early(self) -> float:
        return self.told.until - self.request.received_at

    def __str__(self) -> str:
        told = self.told.request
        return (
            f"{self.request.method} {self.told.resource} came {self.early:.3f} s early: told"
            f" Retry-After {self.told.seconds:g} by its {told.status} answered at"
            f" {told.answered_at:.3f}, received at {self.request.received_at:.3f}"
            f" (status {self.request.status}, peer {self.request.peer})"
        )


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
    created_at: str = field(default_factory=lambda: _now())

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


@dataclass
class ArtifactState:
    """One artifact version, from CreateArtifact on (see `FakeWandb.artifacts`).

    `version` ("v0", "v1", ...) is given at CommitArtifact, in commit order within the
    collection, as W&B numbers versions; a PENDING artifact has none."""

    id: str  # GraphQL node id, base64("Artifact:<number>")
    number: int
    entity: str
    project: str
    name: str  # the collection (sequence) name, e.g. "run-<run id>-<key>"
    type: str
    digest: str  # hex MD5 over the manifest's paths and digests, as given to CreateArtifact
    run_name: str | None  # the run that logged it (CreateArtifact runName), None if none did
    history_step: int | None
    description: str | None
    metadata: dict[str, Any] | None
    created_at: str
    state: str = "PENDING"  # COMMITTED after CommitArtifact
    version_index: int | None = None
    requested_aliases: list[str] = field(default_factory=list)  # from CreateArtifact
    aliases: list[str] = field(default_factory=list)  # held now; only committed versions
    tags: list[str] = field(default_factory=list)
    # clientID and sequenceClientID of every CreateArtifact that resolved to this version
    # (a deduplicated log adds its own), for wandb-client-artifact:// references.
    client_ids: list[str] = field(default_factory=list)
    sequence_client_ids: list[str] = field(default_factory=list)
    logged_by: list[str] = field(default_factory=list)  # runs whose CreateArtifact got it
    # Runs that called UseArtifact on it, as (entity, project, run name): a run of any project
    # may use it.
    used_by: list[tuple[str, str, str]] = field(default_factory=list)
    manifest_id: str | None = None  # from the first CreateArtifactManifest
    manifest_digest: str | None = None  # base64 MD5 given to the second one
    manifest_bytes: bytes | None = None  # as PUT
    issued_files: dict[str, str] = field(default_factory=dict)  # path -> md5 (CreateArtifactFiles)
    files: dict[str, bytes] = field(default_factory=dict)  # uploaded contents, by entry path
    file_md5s: dict[str, str] = field(default_factory=dict)  # their base64 MD5, as checked

    @property
    def version(self) -> str | None:
        return None if self.version_index is None else f"v{self.version_index}"

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The uploaded manifest, parsed."""
        return None if self.manifest_bytes is None else json.loads(self.manifest_bytes)


@dataclass
class ArtifactCollection:
    """An artifact collection (ArtifactSequence): the versions logged under one name."""

    id: str
    entity: str
    project: str
    name: str
    type: str
    created_at: str
    artifacts: list[ArtifactState] = field(default_factory=list)  # creation order

    @property
    def versions(self) -> list[ArtifactState]:
        """The committed versions, v0 first."""
        committed = [a for a in self.artifacts if a.version_index is not None]
        return sorted(committed, key=lambda a: a.version_index or 0)


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
        self._projects: dict[tuple[str, str], int] = {}  # numeric ids, made on first use
        self._artifacts: list[ArtifactState] = []  # artifact number - 1 -> artifact
        self._collections: dict[tuple[str, str, str], ArtifactCollection] = {}
        # clientID -> Artifact id and sequenceClientID -> ArtifactSequence id.
        self._client_ids: dict[str, str] = {}
        self._manifest_count = 0
        self._faults: dict[str, deque[Fault]] = {}
        # Added to every request's handling time: a slow or far-away server.
        self.latency = 0.0
        # Every answer that carried a Retry-After, in answer order (see `retry_afters`).
        self._retry_afters: list[RetryAfterTold] = []
        # The rate limiter's token bucket (`rate_limit`); no limit while _rate is None.
        self._rate: float | None = None
        self._retry_after = 0.0
        self._burst = 0
        self._tokens = 0.0
        self._refilled_at = 0.0
        # The slow phase (`slow_phase`): requests received before _slow_until get
        # _slow_latency more.
        self._slow_until = 0.0
        self._slow_latency = 0.0
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
            "CreateArtifact": self._create_artifact,
            "CreateArtifactManifest": self._create_artifact_manifest,
            "CreateArtifactFiles": self._create_artifact_files,
            "CommitArtifact": self._commit_artifact,
            "ClientIDMapping": self._client_id_mapping,
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
        "file_stream", "upload" (any signed-URL PUT: run files, artifact files, manifests) or
        "download" (any GET of a file). A fault is a `Fault` (see `status`, `delay`,
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

    def rate_limit(
        self, requests_per_second: float | None, retry_after: float = 1.0, burst: int | None = None
    ) -> None:
        """Limit the API to `requests_per_second`, as an overloaded W&B does; None lifts it.

        A token bucket holding `burst` tokens (default: one second's worth, at least 1),
        full when set and refilled at `requests_per_second`, shared by every request and
        client: GraphQL, file_stream, uploads and downloads (not unknown paths, such as the
        SDK's telemetry probe, nor stranded connections). A request finding no token is
        answered 429 with ``Retry-After: <retry_after>`` (whole seconds as an integer, else a
        decimal; W&B's clients parse both) and a JSON error body, before any fault is taken
        or anything applied: it changes nothing on the server. Refused requests take no token.
        Calling again replaces the limit, with a full bucket.
        """
        if requests_per_second is not None:
            if not requests_per_second > 0 or not retry_after >= 0:
                raise ValueError("requests_per_second must be > 0 and retry_after >= 0")
            if burst is None:
                burst = max(1, math.ceil(requests_per_second))
            if burst < 1:
                raise ValueError("burst must be at least 1")
        with self._lock:
            self._rate = requests_per_second
            self._retry_after = retry_after
            self._burst = burst or 0
            self._tokens = float(self._burst)
            self._refilled_at = time.monotonic()

    @property
    def rejected(self) -> int:
        """How many requests the rate limiter refused (answered 429, or meant to be: the
        client may have gone before the answer was written)."""
        with self._lock:
            return sum(1 for r in self.requests if r.fault == "rate_limit")

    def slow_phase(self, seconds: float, latency: float) -> None:
        """For the next `seconds`, answer every request `latency` seconds later than usual, as
        an overloaded W&B does: each request received in the phase waits `latency` (on top of
        the `latency` attribute and any delay fault) before it is answered, applied or
        refused by the rate limiter (which decided on its arrival, taking a token or not).
        Faults are taken after the wait. The phase starts now; calling again replaces it,
        and slow_phase(0, 0) ends it. `Request.slowed` shows who waited.
        """
        if seconds < 0 or latency < 0:
            raise ValueError("seconds and latency must be >= 0")
        with self._lock:
            self._slow_until = time.monotonic() + seconds
            self._slow_latency = latency

    @property
    def retry_afters(self) -> list[RetryAfterTold]:
        """Every whole answer (it reached the client) that carried a ``Retry-After`` header:
        the rate limiter's 429s and injected `status` faults with the header, in answer
        order."""
        with self._lock:
            return [t for t in self._retry_afters if t.request.status is not None]

    def retry_after_violations(self, include_shared: bool = True) -> list[RetryAfterViolation]:
        """Requests that came back for a resource sooner than a Retry-After told them.

        A request R violates an answer A (one of `retry_afters`) when both address the same
        resource (`Request.resource`) and R was received after A was answered but before
        A's wait ended: A.request.answered_at <= R.received_at < A.answered_at +
        Retry-After. Requests already in flight when A was answered are no violation; a
        request that comes too early is one whether or not it was refused in turn. R is
        reported once, with the answer whose wait ends last. No slack is given: a client
        that waits exactly Retry-After after reading the answer is always late enough.

        The resource is what a request addresses, as `request_resource` names it: for
        file_stream, uploads and downloads the method and URL path (one run's file stream,
        one file); for GraphQL the operation and the variables naming what it acts on
        (entity, project, run name, storage id, artifact id, client id...). So a request
        for another run or file is free to go, whoever sends it, while any request for the
        same run and operation counts, even one that is not a retry (e.g. a second
        CreateRunFiles for the same run). Clients cannot be told apart (ours sends nothing
        per process, and TCP peers are per connection): GraphQL operations naming no run
        or artifact (Viewer, ServerFeaturesQuery, ...) are one resource for all clients;
        include_shared=False leaves them out, for tests with several concurrent clients.
        """
        told = [t for t in self.retry_afters if include_shared or not t.shared]
        with self._lock:
            requests = list(self.requests)
        by_resource: dict[str, list[RetryAfterTold]] = {}
        for t in told:
            by_resource.setdefault(t.resource, []).append(t)
        violations = []
        for request in requests:
            broken = [
                t
                for t in by_resource.get(request.resource or "", ())
                if t.request.answered_at is not None
                and t.request.answered_at <= request.received_at < t.until
            ]
            if broken:
                violations.append(RetryAfterViolation(request, max(broken, key=lambda t: t.until)))
        return violations

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

    def artifacts(self, name: str | None = None) -> list[ArtifactState]:
        """Every artifact version (PENDING ones too) in creation order; `name` keeps those of
        collections with that name."""
        with self._lock:
            return [a for a in self._artifacts if name is None or a.name == name]

    def collection(self, entity: str, project: str, name: str) -> ArtifactCollection:
        with self._lock:
            try:
                return self._collections[(entity, project, name)]
            except KeyError:
                raise KeyError(
                    f"no artifact collection {entity}/{project}/{name}; known:"
                    f" {sorted(self._collections)}"
                ) from None

    def resolve_client_artifact_url(self, url: str) -> tuple[ArtifactState | None, str]:
        """What W&B makes of a ``wandb-client-artifact://<client id>[:<alias>]/<path>``
        reference (a table's artifact_path, or with the sequence client id and ":latest" its
        _latest_artifact_path): the artifact version (None if the id maps to nothing) and
        the path in it."""
        match = re.fullmatch(r"wandb-client-artifact://([^/:]+)(?::([^/]+))?/(.+)", url)
        if match is None:
            raise ValueError(f"not a wandb-client-artifact URL: {url!r}")
        client_id, alias, path = match.groups()
        with self._lock:
            server_id = self._client_ids.get(client_id)
            if server_id is None:
                return None, path
            if alias is None:
                return self._artifact_by_id(server_id), path
            collection = next(c for c in self._collections.values() if c.id == server_id)
            found = self._resolve_artifact(
                collection.entity, collection.project, f"{collection.name}:{alias}"
            )
            return found, path

    # ------------------------------------------------------------------ HTTP plumbing

    def _serve(self, handler: _Handler) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        path = urlsplit(handler.path).path
        kind, params = _route(handler.command, path)
        record = Request(handler.command, path, headers, kind, body=None)
        record.peer = handler.client_address[:2]
        with self._lock:
            self.requests.append(record)
            slowed = self._slow_latency if record.received_at < self._slow_until else 0.0
        try:
            raw = _read_body(handler, headers)
        except HttpError as err:
            handler.close_connection = True  # the unread body would corrupt the next request
            self._respond(handler, record, err.status, _error_body(str(err)))
            return
        record.body = raw
        if kind == "graphql":
            record.operation = _peek_operation(raw)
        record.resource = request_resource(record)

        if handler.connection in self._stranded:
            record.fault = "stranded"
            _hold_until_closed(handler)
            return
        refused = None if kind == "unknown" else self._take_token()
        if slowed:
            record.slowed = slowed
            time.sleep(slowed)
        if refused is not None:
            record.fault = "rate_limit"
            seconds = refused
            body = _error_body(f"rate limit exceeded: retry after {seconds:g} s")
            self._respond(handler, record, 429, body, {"Retry-After": _seconds_header(seconds)})
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
            payload, content_type = _encode(answer)
            half = payload[: len(payload) // 2]
            if fault.action == "truncated_json":
                self._respond_bytes(handler, record, answer_status, half, content_type)
                return
            self._respond_bytes(
                handler, record, answer_status, half, content_type, length=len(payload)
            )
            _drop_connection(handler)
            return
        self._respond(handler, record, answer_status, answer)

    def _take_token(self) -> float | None:
        """None if the rate limiter lets a request through now (it takes a token), else the
        Retry-After to refuse it with."""
        with self._lock:
            if self._rate is None:
                return None
            now = time.monotonic()
            refill = (now - self._refilled_at) * self._rate
            self._tokens = min(float(self._burst), self._tokens + refill)
            self._refilled_at = now
            if self._tokens < 1:
                return self._retry_after
            self._tokens -= 1
            return None

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
        """Answer with `body`: JSON, raw bytes (a downloaded file) or nothing (None)."""
        payload, content_type = _encode(body)
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
            self._note_retry_after(record, extra_headers or {})
        try:
            handler.wfile.write(payload)
        except ConnectionError:  # the client gave up (e.g. timed out during a delay fault)
            record.status = record.answered_at = None
            handler.close_connection = True

    def _note_retry_after(self, record: Request, headers: dict[str, str]) -> None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        if value is None or record.resource is None:
            return
        try:
            seconds = float(value)
        except ValueError:
            return  # an HTTP date: not used by the fake
        told = RetryAfterTold(record, record.resource, seconds, _is_shared(record))
        with self._lock:
            self._retry_afters.append(told)

    def _dispatch(
        self, method: str, kind: str, params: tuple[str, ...], raw: bytes, record: Request
    ) -> tuple[int, Any]:
        expected_method = {"upload": "PUT", "download": "GET", "unknown": None}.get(kind, "POST")
        if expected_method is None:
            raise HttpError(404, f"no such endpoint: {record.path}")
        if method != expected_method:
            raise HttpError(405, f"{method} not allowed on {record.path}")
        if kind == "upload":
            return self._upload(params, raw, record)
        if kind == "download":
            return self._download(params, record)
        self._check_auth(record.headers)
        record.body = self._json_body(record.headers, raw)
        if kind == "graphql":
            return self._graphql(record.body)
        if len(raw) > MAX_REQUEST_BYTES:
            raise HttpError(
                413, f"file_stream body of {len(raw)} bytes is over {MAX_REQUEST_BYTES}"
            )
        return self._file_stream(params, record.body)

    def rotate_key(self, key: str) -> None:
        """From now on only `key` is accepted, as after the user rotated their API key."""
        with self._lock:
            self.api_key = key
            self._expected_auth = "Basic " + base64.b64encode(f"api:{key}".encode()).decode()

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
        executor = None
        if name in READ_OPERATIONS or name in EXECUTED_MUTATIONS:
            executor = _Executor(body["query"], name, variables)
        elif operation is None:
            raise HttpError(400, f"unknown operation {name!r}")
        try:
            with self._lock:
                if executor is not None:
                    if name in READ_OPERATIONS:
                        return 200, {"data": executor.run(self._query_root())}
                    # A mutation's resolvers queue their effects, applied only once the
                    # whole selection set could be answered: a rejected request changes
                    # nothing.
                    effects: list[Callable[[], None]] = []
                    data = executor.run(self._mutation_root(effects))
                    for effect in effects:
                        effect()
                    return 200, {"data": data}
                assert operation is not None
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
                self._project_number(entity, project)

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
            wandb_config = {"t": internal["t"]} if has_telemetry else {}  # type: ignore[index]
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
            _check_file_path(path)
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

    # ------------------------------------------------------------------ artifacts (write)

    def _create_artifact(self, variables: dict[str, Any]) -> dict[str, Any]:
        # mutation CreateArtifact($input: CreateArtifactInput!) { createArtifact(input: $input)
        #   { artifact { id state artifactSequence { latestArtifact { id } } } } }
        data = _input_object(variables, "input", CREATE_ARTIFACT_INPUT)
        entity = _string(data, "entityName", required=True)
        project = _string(data, "projectName", required=True)
        type_name = _string(data, "artifactTypeName", required=True)
        name = _string(data, "artifactCollectionName", required=True)
        digest = _string(data, "digest", required=True)
        names = _string_list(data, "artifactCollectionNames")
        client_id = _string(data, "clientID")
        sequence_client_id = _string(data, "sequenceClientID")
        run_name = _string(data, "runName")
        description = _string(data, "description")
        metadata = _json_string(data, "metadata")
        algorithm = _enum(data, "digestAlgorithm", DIGEST_ALGORITHMS)
        dedup = _boolean(data, "enableDigestDeduplication")
        step = _int(data, "historyStep")
        _int(data, "ttlDurationSeconds")
        for key in ("clientMutationId", "distributedID", "storageRegion"):
            _string(data, key)
        aliases = _alias_inputs(data.get("aliases"))
        tags = _tag_inputs(data.get("tags"))
        if data.get("labels") is not None:
            _json_string(data, "labels")

        if not self._known_entity(entity):
            raise GraphQLError(f"entity {entity} not found")
        if not name or len(name) > 128 or not re.fullmatch(r"[A-Za-z0-9_\-.]+", name):
            raise GraphQLError(f"invalid artifact name {name!r}: use 1-128 of [A-Za-z0-9_-.]")
        if not type_name or len(type_name) > 128 or "/" in type_name or ":" in type_name:
            raise GraphQLError(f"invalid artifact type {type_name!r}")
        if names is not None and names != [name]:
            raise GraphQLError("artifactCollectionNames must be [artifactCollectionName]")
        if not re.fullmatch(r"[0-9a-f]{32}", digest):
            raise GraphQLError(f"digest {digest!r} is not a lowercase hex MD5")
        if algorithm not in (None, "MANIFEST_MD5"):
            raise GraphQLError(f"digestAlgorithm {algorithm} is not supported by the fake")
        if data.get("distributedID") is not None:
            raise GraphQLError("distributed artifacts are not supported by the fake")
        if metadata is not None and not isinstance(metadata, dict):
            raise GraphQLError("metadata must encode a JSON object")
        for alias, target in aliases:
            if target != name:
                raise GraphQLError(f"alias {alias!r} names collection {target!r}, not {name!r}")
        if run_name is not None and (entity, project, run_name) not in self._runs:
            raise GraphQLError(f"run {entity}/{project}/{run_name} not found")

        collection = self._collections.get((entity, project, name))
        if collection is not None and collection.type != type_name:
            raise GraphQLError(
                f"artifact collection {name} has type {collection.type}, not {type_name}"
            )
        if client_id is not None and client_id in self._client_ids:
            # A retried CreateArtifact (its answer was lost): the same artifact again.
            existing = self._artifact_by_id(self._client_ids[client_id])
            if existing is None or (existing.entity, existing.project, existing.name) != (
                entity,
                project,
                name,
            ):
                raise GraphQLError(f"clientID {client_id} belongs to another artifact")
            return {"createArtifact": {"artifact": self._created_artifact(existing)}}
        if sequence_client_id is not None:
            mapped = self._client_ids.get(sequence_client_id)
            if mapped is not None and (collection is None or mapped != collection.id):
                raise GraphQLError(
                    f"sequenceClientID {sequence_client_id} names another collection"
                )

        if collection is None:
            collection = ArtifactCollection(
                id=_node_id("ArtifactSequence", str(len(self._collections) + 1)),
                entity=entity,
                project=project,
                name=name,
                type=type_name,
                created_at=_now(),
            )
            self._collections[(entity, project, name)] = collection
        self._project_number(entity, project)
        duplicate = next(
            (a for a in collection.versions if a.digest == digest and dedup is not False), None
        )
        if duplicate is not None:
            # W&B's digest deduplication: the committed version with this content is the
            # answer; it gets the new aliases and client ids, and no new version is made.
            artifact = duplicate
            self._move_aliases(collection, artifact, [alias for alias, _ in aliases])
        else:
            number = len(self._artifacts) + 1
            artifact = ArtifactState(
                id=_node_id("Artifact", str(number)),
                number=number,
                entity=entity,
                project=project,
                name=name,
                type=type_name,
                digest=digest,
                run_name=run_name,
                history_step=step,
                description=description,
                metadata=metadata,
                created_at=_now(),
                requested_aliases=[alias for alias, _ in aliases],
                tags=tags,
            )
            self._artifacts.append(artifact)
            collection.artifacts.append(artifact)
        if client_id is not None:
            artifact.client_ids.append(client_id)
            self._client_ids[client_id] = artifact.id
        if sequence_client_id is not None:
            if sequence_client_id not in artifact.sequence_client_ids:
                artifact.sequence_client_ids.append(sequence_client_id)
            self._client_ids[sequence_client_id] = collection.id
        if run_name is not None and run_name not in artifact.logged_by:
            artifact.logged_by.append(run_name)
        return {"createArtifact": {"artifact": self._created_artifact(artifact)}}

    def _created_artifact(self, artifact: ArtifactState) -> dict[str, Any]:
        collection = self._collections[(artifact.entity, artifact.project, artifact.name)]
        versions = [a for a in collection.versions if a is not artifact]
        latest = {"id": versions[-1].id} if versions else None
        return {
            "id": artifact.id,
            "state": artifact.state,
            "artifactSequence": {"id": collection.id, "latestArtifact": latest},
        }

    def _create_artifact_manifest(self, variables: dict[str, Any]) -> dict[str, Any]:
        # mutation CreateArtifactManifest($artifactID: ID!, $baseArtifactID: ID, $name: String!,
        #   $digest: String!, $entityName: String!, $projectName: String!, $runName: String!,
        #   $manifestType: ArtifactManifestType!, $includeUpload: Boolean!)
        artifact_id = _string(variables, "artifactID", required=True)
        base_id = _string(variables, "baseArtifactID")
        name = _string(variables, "name", required=True)
        digest = _string(variables, "digest", required=True)
        entity = _string(variables, "entityName", required=True)
        project = _string(variables, "projectName", required=True)
        _string(variables, "runName", required=True)
        manifest_type = _enum(variables, "manifestType", MANIFEST_TYPES, required=True)
        include_upload = _boolean(variables, "includeUpload", required=True)

        artifact = self._pending_artifact(artifact_id)
        if (entity, project) != (artifact.entity, artifact.project):
            raise GraphQLError(f"artifact {artifact_id} is not in {entity}/{project}")
        if manifest_type != "FULL" or name != "wandb_manifest.json":
            raise GraphQLError("only FULL manifests named wandb_manifest.json are supported")
        if base_id is not None:
            base = self._artifact_by_id(base_id)
            if base is None or (base.entity, base.project, base.name) != (
                artifact.entity,
                artifact.project,
                artifact.name,
            ):
                raise GraphQLError(f"base artifact {base_id} is not a version of {artifact.name}")
        if digest and _md5_digest(digest) is None:
            raise GraphQLError(f"manifest digest {digest!r} is not a base64 MD5")
        if include_upload and not digest:
            raise GraphQLError("an upload URL for the manifest needs its digest")
        if artifact.manifest_id is None:
            self._manifest_count += 1
            artifact.manifest_id = _node_id("ArtifactManifest", str(self._manifest_count))
        if digest and digest != artifact.manifest_digest:
            artifact.manifest_digest = digest
            artifact.manifest_bytes = None  # the upload must match the new digest
        file: dict[str, Any] = {"id": _node_id("File", f"manifest:{artifact.number}")}
        if include_upload:  # uploadUrl @include(if: $includeUpload), likewise uploadHeaders
            file["uploadUrl"] = f"{self.base_url}/artifacts/{artifact.number}/wandb_manifest.json"
            file["uploadHeaders"] = [f"Content-MD5:{digest}"]
        manifest = {"id": artifact.manifest_id, "file": file}
        return {"createArtifactManifest": {"artifactManifest": manifest}}

    def _create_artifact_files(self, variables: dict[str, Any]) -> dict[str, Any]:
        # mutation CreateArtifactFiles($input: CreateArtifactFilesInput!)
        with_digest = "ARTIFACT_DIGEST_ALGORITHM" in self.features
        allowed = CREATE_ARTIFACT_FILES_INPUT | ({"digestAlgorithm"} if with_digest else set())
        data = _input_object(variables, "input", allowed)
        _string(data, "clientMutationId")
        _string(data, "cloudRegionID")
        _enum(data, "storageLayout", STORAGE_LAYOUTS)
        if _enum(data, "digestAlgorithm", DIGEST_ALGORITHMS) not in (None, "MANIFEST_MD5"):
            raise GraphQLError("only MANIFEST_MD5 artifacts are supported by the fake")
        specs = data.get("artifactFiles")
        if not isinstance(specs, list) or not specs:
            raise HttpError(400, "input.artifactFiles must be a non-empty list")
        allowed = ARTIFACT_FILE_SPEC | ({"digest"} if with_digest else set())
        checked = []
        # Validate every file first so that a rejected batch issues nothing.
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise HttpError(400, f"input.artifactFiles[{i}] must be an object")
            unknown = set(spec) - allowed
            if unknown:
                raise HttpError(
                    400, f"input.artifactFiles[{i}] has unknown fields {sorted(unknown)}"
                )
            artifact = self._pending_artifact(_string(spec, "artifactID", required=True))
            manifest_id = _string(spec, "artifactManifestID", required=True)
            path = _string(spec, "name", required=True)
            md5 = _string(spec, "md5", required=True)
            _string(spec, "mimetype")
            if manifest_id != artifact.manifest_id:
                raise GraphQLError(
                    f"manifest {manifest_id} is not the manifest of artifact {artifact.id}"
                    " (call CreateArtifactManifest first)"
                )
            _check_file_path(path)
            if _md5_digest(md5) is None:
                raise GraphQLError(f"md5 {md5!r} of {path!r} is not a base64 MD5")
            if "digest" in spec and _string(spec, "digest") != md5:
                raise GraphQLError(f"digest of {path!r} differs from its md5")
            if spec.get("uploadPartsInput") is not None:
                raise GraphQLError("multipart uploads are not supported by the fake")
            checked.append((artifact, path, md5))
        edges = []
        for artifact, path, md5 in checked:
            artifact.issued_files[path] = md5
            node = {
                "storagePath": f"wandb_artifacts/{artifact.number}/{_md5_digest(md5)}",
                "uploadUrl": (
                    f"{self.base_url}/artifacts/{artifact.number}/files/{quote(path, safe='/')}"
                ),
                "uploadHeaders": [f"Content-MD5:{md5}"],
                "uploadMultipartUrls": None,
                "artifact": {"id": artifact.id},  # the birth artifact of this file
            }
            edges.append({"node": node})
        return {"createArtifactFiles": {"files": {"edges": edges}}}

    def _commit_artifact(self, variables: dict[str, Any]) -> dict[str, Any]:
        # mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID:
        #   $artifactID}) { artifact { id digest } } }
        artifact_id = _string(variables, "artifactID", required=True)
        artifact = self._artifact_by_id(artifact_id)
        if artifact is None:
            raise GraphQLError(f"artifact {artifact_id} not found")
        if artifact.state == "PENDING":
            self._check_committable(artifact)
            collection = self._collections[(artifact.entity, artifact.project, artifact.name)]
            artifact.version_index = len(collection.versions)
            artifact.state = "COMMITTED"
            self._move_aliases(collection, artifact, artifact.requested_aliases)
        # Committing again (a retry whose first answer was lost) changes nothing.
        return {"commitArtifact": {"artifact": {"id": artifact.id, "digest": artifact.digest}}}

    def _check_committable(self, artifact: ArtifactState) -> None:
        """What W&B checks at commit: the manifest was uploaded, matches the artifact's digest,
        and every file it stores (entries without a ref) was uploaded with its digest."""
        if artifact.manifest_bytes is None:
            raise GraphQLError(f"artifact {artifact.id}: its manifest was never uploaded")
        try:
            manifest = json.loads(artifact.manifest_bytes)
        except ValueError as err:
            raise GraphQLError(f"artifact {artifact.id}: manifest is not JSON: {err}") from None
        contents = _check_manifest(manifest)
        if (digest := _artifact_digest(contents)) != artifact.digest:
            raise GraphQLError(
                f"artifact {artifact.id}: the manifest's digest {digest} differs from the"
                f" digest {artifact.digest} given to CreateArtifact"
            )
        for path, entry in contents.items():
            if entry.get("ref") is not None:
                continue  # a reference: nothing was stored
            birth_id = entry.get("birthArtifactID") or artifact.id
            owner = self._artifact_by_id(birth_id)
            data = None if owner is None else owner.files.get(path)
            if owner is None or data is None:
                raise GraphQLError(f"artifact {artifact.id}: file {path!r} was not uploaded")
            # Stored files never change, so the MD5 checked at their upload stands.
            if (md5 := owner.file_md5s[path]) != entry["digest"]:
                raise GraphQLError(
                    f"artifact {artifact.id}: file {path!r} was uploaded with MD5"
                    f" {md5}, the manifest says {entry['digest']}"
                )
            if entry.get("size") is not None and entry["size"] != len(data):
                raise GraphQLError(
                    f"artifact {artifact.id}: file {path!r} has {len(data)} bytes, the"
                    f" manifest says {entry['size']}"
                )

    def _move_aliases(
        self, collection: ArtifactCollection, artifact: ArtifactState, aliases: list[str]
    ) -> None:
        """Give `artifact` the aliases (an alias names one version of a collection); "latest"
        always goes to the newest committed version."""
        if artifact.state != "COMMITTED":
            return
        wanted = [a for a in dict.fromkeys(aliases) if a != "latest"]
        if artifact is collection.versions[-1]:
            wanted.insert(0, "latest")
        for other in collection.artifacts:
            if other is not artifact:
                other.aliases = [a for a in other.aliases if a not in wanted]
        artifact.aliases = list(dict.fromkeys([*artifact.aliases, *wanted]))

    def _mutation_root(self, effects: list[Callable[[], None]]) -> dict[str, Any]:
        """The root of `EXECUTED_MUTATIONS`; resolvers append their effects to `effects`."""
        return {
            "__typename": "Mutation",
            "useArtifact": lambda a: self._use_artifact(a, effects),
        }

    def _use_artifact(
        self, arguments: dict[str, Any], effects: list[Callable[[], None]]
    ) -> dict[str, Any]:
        # useArtifact(input: UseArtifactInput!): wandb-core passes the input as one variable
        # (mutation UseArtifact($input: UseArtifactInput!)), the Python SDK (run.use_artifact)
        # as an object literal of top-level variables; both arrive here as the evaluated
        # argument. Records the run as a user of the artifact (its inputArtifacts).
        allowed = USE_ARTIFACT_INPUT
        if "USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION" in self.features:
            allowed = allowed | USE_ARTIFACT_PROJECT_INPUT
        data = _input_object(arguments, "input", allowed)
        artifact_id = _string(data, "artifactID", required=True)
        entity = _string(data, "entityName", required=True)
        project = _string(data, "projectName", required=True)
        run_name = _string(data, "runName", required=True)
        for key in ("usedAs", "clientMutationId", *USE_ARTIFACT_PROJECT_INPUT):
            _string(data, key)
        artifact = self._artifact_by_id(artifact_id)
        if artifact is None:
            raise GraphQLError(f"artifact {artifact_id} not found")
        if artifact.state != "COMMITTED":
            # W&B's words for it (wandb/wandb#3117).
            raise GraphQLError(f"cannot use artifact {artifact_id} as it has not committed")
        for key, value in (
            ("artifactEntityName", artifact.entity),
            ("artifactProjectName", artifact.project),
        ):
            if data.get(key) is not None and data[key] != value:
                raise GraphQLError(f"artifact {artifact_id} is not in {key} {data[key]}")
        if (entity, project, run_name) not in self._runs:
            raise GraphQLError(f"run {entity}/{project}/{run_name} not found")

        def apply() -> None:
            if (entity, project, run_name) not in artifact.used_by:
                artifact.used_by.append((entity, project, run_name))

        effects.append(apply)
        return {
            "__typename": "UseArtifactPayload",
            "artifact": self._artifact_node(artifact),
            "clientMutationId": data.get("clientMutationId"),
        }

    def _client_id_mapping(self, variables: dict[str, Any]) -> dict[str, Any]:
        # query ClientIDMapping($clientID: ID!) { clientIDMapping(clientID: $clientID)
        #   { serverID } }: an artifact's clientID maps to the artifact, its sequenceClientID
        # to the collection.
        client_id = _string(variables, "clientID", required=True)
        server_id = self._client_ids.get(client_id)
        return {"clientIDMapping": None if server_id is None else {"serverID": server_id}}

    def _artifact_by_id(self, artifact_id: str) -> ArtifactState | None:
        match = re.fullmatch(r"Artifact:(\d+)", _decode_node_id(artifact_id) or "")
        if match is None or not 0 < int(match[1]) <= len(self._artifacts):
            return None
        return self._artifacts[int(match[1]) - 1]

    def _artifact_by_number(self, number: str) -> ArtifactState | None:
        return self._artifact_by_id(_node_id("Artifact", number))

    def _pending_artifact(self, artifact_id: str) -> ArtifactState:
        artifact = self._artifact_by_id(artifact_id)
        if artifact is None:
            raise GraphQLError(f"artifact {artifact_id} not found")
        if artifact.state != "PENDING":
            raise GraphQLError(f"artifact {artifact_id} is {artifact.state}, not PENDING")
        return artifact

    def _resolve_artifact(self, entity: str, project: str, name: str) -> ArtifactState | None:
        """A committed version by "<collection>:<version or alias>" (":latest" if omitted)."""
        collection_name, _, tag = name.partition(":")
        collection = self._collections.get((entity, project, collection_name))
        if collection is None:
            return None
        tag = tag or "latest"
        for artifact in collection.versions:
            if tag == artifact.version or tag in artifact.aliases:
                return artifact
        return None

    def _project_number(self, entity: str, project: str) -> int:
        """The project's numeric id (the API's projectId/internalId), made on first use."""
        return self._projects.setdefault((entity, project), len(self._projects) + 1)

    # ------------------------------------------------------------------ reading (public API)

    def _query_root(self) -> dict[str, Any]:
        """The root of the node tree that `READ_OPERATIONS` select from."""
        viewer = self._viewer({})["viewer"]
        return {
            "__typename": "Query",
            "viewer": {"__typename": "User", "name": self.username, **viewer},
            "project": lambda a: self._project_node(a.get("entityName") or self.entity, a["name"]),
            "artifact": lambda a: self._artifact_node(self._artifact_by_id(a["id"])),
        }

    def _project_node(self, entity: str, project: str) -> dict[str, Any] | None:
        number = self._projects.get((entity, project))
        if number is None:
            return None

        def membership(args: dict[str, Any]) -> dict[str, Any] | None:
            artifact = self._resolve_artifact(entity, project, args["name"])
            return None if artifact is None else self._membership_node(artifact)

        def collection(args: dict[str, Any]) -> dict[str, Any] | None:
            found = self._collections.get((entity, project, args["name"]))
            return None if found is None else self._collection_node(found)

        def artifact(args: dict[str, Any]) -> dict[str, Any] | None:
            return self._artifact_node(self._resolve_artifact(entity, project, args["name"]))

        def run(args: dict[str, Any]) -> dict[str, Any] | None:
            found = self._runs.get((entity, project, args["name"]))
            return None if found is None else self._run_node(found)

        return {
            "__typename": "Project",
            **self._project(entity, project),
            "entity": {"__typename": "Entity", "id": _node_id("Entity", entity), "name": entity},
            "internalId": str(number),  # an ID, so a string
            "entityName": entity,
            "run": run,
            "artifact": artifact,
            "artifactCollection": collection,
            "artifactCollectionMembership": membership,
        }

    def _run_node(self, run: RunState) -> dict[str, Any]:
        if not run.complete:
            state = "running"
        else:
            state = "finished" if run.exitcode == 0 else "failed"
        run_path = "/".join(quote(part, safe="") for part in (run.entity, run.project, run.name))

        def file_node(path: str) -> dict[str, Any]:
            data = run.files[path]
            quoted = f"{run_path}/{quote(path, safe='/')}"
            return {
                "__typename": "File",
                "id": _node_id("File", f"{run.storage_id}:{path}"),
                "name": path,
                # W&B's url is on the API host and needs the key; directUrl is "signed".
                "url": lambda a: (
                    f"{self.base_url}/{'upload' if a.get('upload') else 'files'}/" + quoted
                ),
                "directUrl": f"{self.base_url}/upload/{quoted}",
                "sizeBytes": len(data),
                "mimetype": mimetypes.guess_type(path)[0] or "application/octet-stream",
                "md5": _b64_md5(data),
                "updatedAt": run.created_at,
            }

        def files(args: dict[str, Any]) -> dict[str, Any]:
            names = args.get("names") or sorted(run.files)
            pattern = args.get("pattern")
            if pattern is not None:  # SQL LIKE, as W&B's: % is any run of characters
                regex = ".*".join(re.escape(part) for part in pattern.split("%"))
                names = [n for n in names if re.fullmatch(regex, n)]
            found = [n for n in names if n in run.files]
            return _connection(found, args, file_node)

        def in_run_project(artifact: ArtifactState) -> bool:
            # Run ids are unique per project only.
            return (artifact.entity, artifact.project) == (run.entity, run.project)

        def output_artifacts(args: dict[str, Any]) -> dict[str, Any]:
            logged = [
                a
                for a in self._artifacts
                if run.name in a.logged_by and a.state == "COMMITTED" and in_run_project(a)
            ]
            return _connection(logged, args, self._artifact_node)

        def input_artifacts(args: dict[str, Any]) -> dict[str, Any]:
            used = [a for a in self._artifacts if (run.entity, run.project, run.name) in a.used_by]
            return _connection(used, args, self._artifact_node)

        return {
            "__typename": "Run",
            "id": run.storage_id,
            "name": run.name,
            "displayName": run.display_name,
            "projectId": self._projects[(run.entity, run.project)],
            "project": lambda a: self._project_node(run.entity, run.project),
            "state": state,
            "tags": run.tags or [],
            "group": run.group,
            "jobType": run.job_type,
            "notes": run.notes,
            "description": run.notes,
            "host": run.host,
            "commit": None,
            "sweepName": None,
            "readOnly": False,
            "createdAt": run.created_at,
            "heartbeatAt": run.created_at,
            "user": {
                "__typename": "User",
                "id": _node_id("User", self.username),
                "name": self.username,
                "username": self.username,
            },
            "config": json.dumps(run.config or {}),
            "summaryMetrics": run.lines[SUMMARY][0] if run.lines[SUMMARY] else "{}",
            "systemMetrics": "{}",
            "historyLineCount": len(run.lines[HISTORY]),
            "eventsLineCount": len(run.lines[EVENTS]),
            "historyKeys": _history_keys(run.history),
            "history": lambda a: _sample(_step_range(run.lines[HISTORY], a), a.get("samples")),
            "events": lambda a: _sample(run.lines[EVENTS], a.get("samples")),
            "sampledHistory": lambda a: [
                _sampled_history(run.history, spec) for spec in a.get("specs") or []
            ],
            # wandb-core's history reader (scan_history): no history was exported to parquet,
            # so every row is "live", read with HistoryPage / SampledHistoryPage.
            "parquetHistory": lambda a: {
                "__typename": "ParquetHistory",
                "parquetUrls": [],
                "liveData": [
                    {k: row[k] for k in a.get("liveKeys") or [] if k in row} for row in run.history
                ],
            },
            "fileCount": len(run.files),
            "files": files,
            "outputArtifacts": output_artifacts,
            "inputArtifacts": input_artifacts,
        }

    def _artifact_node(self, artifact: ArtifactState | None) -> dict[str, Any] | None:
        if artifact is None:
            return None
        collection = self._collections[(artifact.entity, artifact.project, artifact.name)]
        contents = (artifact.manifest or {}).get("contents", {})
        manifest_url = f"{self.base_url}/artifacts/{artifact.number}/wandb_manifest.json"

        def files(args: dict[str, Any]) -> dict[str, Any]:
            # Every manifest entry is a File, references too (wandb/wandb#5808: the SDK's
            # download() fetches exactly the files listed, references through their ref).
            names = args.get("names") or sorted(contents)
            return _connection(
                [n for n in names if n in contents],
                args,
                lambda path: self._artifact_file_node(artifact, path, contents[path]),
            )

        def created_by(args: dict[str, Any]) -> dict[str, Any] | None:
            run = self._runs.get((artifact.entity, artifact.project, artifact.run_name or ""))
            return None if run is None else self._run_node(run)

        def used_by(args: dict[str, Any]) -> dict[str, Any]:
            runs = [self._runs[key] for key in artifact.used_by if key in self._runs]
            return _connection(runs, args, self._run_node)

        return {
            "__typename": "Artifact",
            "id": artifact.id,
            "artifactSequence": self._collection_node(collection),
            "versionIndex": artifact.version_index,
            "artifactType": self._artifact_type_node(
                artifact.entity, artifact.project, artifact.type
            ),
            "description": artifact.description,
            "metadata": None if artifact.metadata is None else json.dumps(artifact.metadata),
            "ttlDurationSeconds": -1,  # no TTL
            "ttlIsInherited": True,
            "tags": [
                {"__typename": "Tag", "id": _node_id("Tag", tag), "name": tag}
                for tag in artifact.tags
            ],
            "historyStep": artifact.history_step,
            "state": artifact.state,
            "size": sum(entry.get("size") or 0 for entry in contents.values()),
            "digest": artifact.digest,
            "digestAlgorithm": "MANIFEST_MD5",
            "commitHash": hashlib.md5(artifact.id.encode()).hexdigest()[:12],
            "fileCount": len(contents),
            "createdAt": artifact.created_at,
            "updatedAt": artifact.created_at,
            "aliases": [self._alias_node(collection, artifact, a) for a in artifact.aliases],
            "currentManifest": {
                "__typename": "ArtifactManifest",
                "id": artifact.manifest_id,
                "file": {
                    "__typename": "File",
                    "id": _node_id("File", f"manifest:{artifact.number}"),
                    "name": "wandb_manifest.json",
                    "directUrl": manifest_url,
                    "url": manifest_url,
                },
            },
            "createdBy": created_by,
            "usedBy": used_by,
            "files": files,
        }

    def _artifact_file_node(
        self, artifact: ArtifactState, path: str, entry: dict[str, Any]
    ) -> dict[str, Any]:
        ref = entry.get("ref")
        storage_path = None
        if ref is None:
            # The bytes live with the version that uploaded them (the birth artifact).
            owner = self._artifact_by_id(entry.get("birthArtifactID") or artifact.id) or artifact
            url = f"{self.base_url}/artifacts/{owner.number}/files/{quote(path, safe='/')}"
            storage_path = f"wandb_artifacts/{owner.number}/{_md5_digest(entry['digest'])}"
        else:
            # A reference's url and directUrl are the reference itself (as the SDK's
            # File.path_uri notes); the bytes are fetched from there, never from W&B.
            url = ref
        return {
            "__typename": "File",
            "id": _node_id("File", f"artifact:{artifact.number}:{path}"),
            "name": path,
            "displayName": path,
            "directUrl": url,
            "url": url,
            "storagePath": storage_path,
            "sizeBytes": entry.get("size") or 0,
            "md5": entry["digest"],
            "digest": entry["digest"],
            "mimetype": mimetypes.guess_type(path)[0] or "application/octet-stream",
            "updatedAt": artifact.created_at,
        }

    def _collection_node(self, collection: ArtifactCollection) -> dict[str, Any]:
        def membership(args: dict[str, Any]) -> dict[str, Any] | None:
            artifact = self._resolve_artifact(
                collection.entity, collection.project, f"{collection.name}:{args['aliasName']}"
            )
            return None if artifact is None else self._membership_node(artifact)

        versions = collection.versions
        return {
            "__typename": "ArtifactSequence",
            "id": collection.id,
            "name": collection.name,
            "description": None,
            "createdAt": collection.created_at,
            "updatedAt": None,
            "type": self._artifact_type_node(
                collection.entity, collection.project, collection.type
            ),
            "project": lambda a: self._project_node(collection.entity, collection.project),
            "artifactMembership": membership,
            "latestArtifact": lambda a: self._artifact_node(versions[-1] if versions else None),
        }

    def _membership_node(self, artifact: ArtifactState) -> dict[str, Any]:
        collection = self._collections[(artifact.entity, artifact.project, artifact.name)]
        node = self._artifact_node(artifact)
        assert node is not None
        return {
            "__typename": "ArtifactCollectionMembership",
            "id": _node_id("ArtifactCollectionMembership", f"{collection.id}:{artifact.number}"),
            "versionIndex": artifact.version_index,
            "createdAt": artifact.created_at,
            "aliases": node["aliases"],
            "artifactCollection": node["artifactSequence"],
            "artifact": node,
            "files": node["files"],
        }

    def _alias_node(
        self, collection: ArtifactCollection, artifact: ArtifactState, alias: str
    ) -> dict[str, Any]:
        return {
            "__typename": "ArtifactAlias",
            "id": _node_id("ArtifactAlias", f"{artifact.number}:{alias}"),
            "alias": alias,
            "artifactCollection": self._collection_node(collection),
        }

    def _artifact_type_node(self, entity: str, project: str, name: str) -> dict[str, Any]:
        return {
            "__typename": "ArtifactType",
            "id": _node_id("ArtifactType", f"{entity}/{project}/{name}"),
            "name": name,
        }

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
            entity, project, name = params
            run = self._runs.get((entity, project, name))
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
        what, *rest = params
        # Hashed before the lock, so that uploads in parallel hash in parallel (hashlib lets
        # go of the GIL), as storage does.
        body_md5 = _b64_md5(raw) if what != "run" else ""
        with self._lock:
            if what == "run":
                entity, project, name, path = rest
                run = self._runs.get((entity, project, name))
                if run is None or path not in run.issued_uploads:
                    raise HttpError(403, "no upload URL was issued for this path")  # bad signature
                run.files[path] = raw
                return 200, None
            artifact = self._artifact_by_number(rest[0])
            if artifact is None:
                raise HttpError(403, "no upload URL was issued for this artifact")
            if artifact.state != "PENDING":
                raise HttpError(403, f"artifact {artifact.id} is committed; its files are final")
            if what == "artifact":
                path = rest[1]
                if path not in artifact.issued_files:
                    raise HttpError(403, f"no upload URL was issued for artifact file {path!r}")
                _check_signed_md5(artifact.issued_files[path], record.headers, body_md5)
                artifact.files[path] = raw
                artifact.file_md5s[path] = body_md5
            else:
                if artifact.manifest_digest is None:
                    raise HttpError(403, "no upload URL was issued for this manifest")
                _check_signed_md5(artifact.manifest_digest, record.headers, body_md5)
                artifact.manifest_bytes = raw
        return 200, None

    def _download(self, params: tuple[str, ...], record: Request) -> tuple[int, Any]:
        """GET of a run file: its `url` on the API host (needs the API key, as W&B's does) or
        its `directUrl`; or of an artifact file or manifest (their `directUrl`), or of an
        artifact file on the API host (/artifactsV2/..., needs the key). directUrls are
        "signed" like the upload URLs, so they must not receive the key."""
        what, *rest = params
        if what in ("run-api", "artifact-api"):
            self._check_auth(record.headers)
        elif "authorization" in record.headers:
            raise HttpError(400, "signed download URLs must not receive an Authorization header")
        with self._lock:
            if what == "artifact-api":
                return 200, self._artifact_api_file(*rest)
            if what in ("run", "run-api"):
                entity, project, name, path = rest
                run = self._runs.get((entity, project, name))
                if run is None or path not in run.files:
                    raise HttpError(404, f"no file {path!r} in run {entity}/{project}/{name}")
                return 200, run.files[path]
            artifact = self._artifact_by_number(rest[0])
            data = None
            if artifact is not None:
                data = (
                    artifact.files.get(rest[1]) if what == "artifact" else artifact.manifest_bytes
                )
            if data is None:
                raise HttpError(404, f"nothing stored at {record.path}")
            return 200, data

    def _artifact_api_file(
        self,
        region: str,
        entity: str,
        project: str,
        collection_name: str,
        artifact_id: str,
        birth_id: str,
        hex_md5: str,
        file_name: str,
    ) -> bytes:
        """The bytes an /artifactsV2/ URL names (see `_ARTIFACT_API_PATH`): a stored file of
        a committed version of the collection (the artifact id's, if given) whose manifest
        entry has this MD5 and file name (the last part of its path) and was born in the
        birth artifact (if given). 404 otherwise."""
        collection = self._collections.get((entity, project, collection_name))
        if collection is None:
            raise HttpError(404, f"no artifact collection {entity}/{project}/{collection_name}")
        versions = collection.versions
        if artifact_id:
            versions = [a for a in versions if a.id == artifact_id]
            if not versions:
                raise HttpError(404, f"artifact {artifact_id} is not in {collection_name}")
        for artifact in versions:
            manifest = artifact.manifest or {}
            config = manifest.get("storagePolicyConfig") or {}
            if region != (config.get("storageRegion") or "default"):
                continue
            for path, entry in (manifest.get("contents") or {}).items():
                born = entry.get("birthArtifactID") or artifact.id
                if (
                    entry.get("ref") is None
                    and path.rsplit("/", 1)[-1] == file_name
                    and _md5_digest(entry["digest"]) == hex_md5
                    and (not birth_id or birth_id == born)
                ):
                    owner = self._artifact_by_id(born)
                    data = None if owner is None else owner.files.get(path)
                    if data is not None:
                        return data
        raise HttpError(404, f"no file {file_name!r} with MD5 {hex_md5} in {collection_name}")


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


def _route(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    """The request kind and its parameters. Uploads and downloads start with what they
    address: "run" (entity, project, run, path) for a run file's signed URL, "run-api" (the
    same) for its URL on the API host, "artifact" (number, path) or "manifest" (number), or
    "artifact-api" (region, entity, project, collection, artifact id or "", birth artifact id
    or "", hex MD5, file name) for an artifact file on the API host."""
    transfer = "download" if method == "GET" else "upload"
    if path == "/graphql":
        return "graphql", ()
    if match := _FILE_STREAM_PATH.fullmatch(path):
        return "file_stream", tuple(unquote(p) for p in match.groups())
    if match := _UPLOAD_PATH.fullmatch(path):
        return transfer, ("run", *(unquote(p) for p in match.groups()))
    if method == "GET" and (match := _RUN_FILE_PATH.fullmatch(path)):
        return "download", ("run-api", *(unquote(p) for p in match.groups()))
    if match := _ARTIFACT_FILE_PATH.fullmatch(path):
        return transfer, ("artifact", match[1], unquote(match[2]))
    if match := _ARTIFACT_MANIFEST_PATH.fullmatch(path):
        return transfer, ("manifest", match[1])
    if method == "GET" and (match := _ARTIFACT_API_PATH.fullmatch(path)):
        return "download", ("artifact-api", *(unquote(p or "") for p in match.groups()))
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


# GraphQL variables (top level, or in an "input" object) that name what an operation acts
# on, for Retry-After accounting; the first group names a run or an artifact.
_OWN_RESOURCE_VARIABLES = ("name", "run", "runName", "id", "artifactID", "clientID")
_SCOPE_VARIABLES = ("entity", "entityName", "project", "projectName")


def request_resource(request: Request) -> str | None:
    """What `request` addresses, for `FakeWandb.retry_after_violations`: "<method> <path>"
    for file_stream, uploads and downloads; "graphql <operation>" followed by the naming
    variables (``key=value``, in a fixed order; see `_OWN_RESOURCE_VARIABLES` and
    `_SCOPE_VARIABLES`) for GraphQL; None for unknown paths."""
    if request.kind == "unknown":
        return None
    if request.kind != "graphql":
        return f"{request.method} {request.path}"
    naming = _naming_variables(request.body)
    parts = [f"{key}={value}" for key, value in naming]
    return " ".join(["graphql", str(request.operation), *parts])


def _naming_variables(raw: Any) -> list[tuple[str, str]]:
    try:
        body = json.loads(raw) if isinstance(raw, bytes) else raw
    except ValueError:
        return []
    variables = body.get("variables") if isinstance(body, dict) else None
    if not isinstance(variables, dict):
        return []
    scopes = [variables]
    if isinstance(variables.get("input"), dict):
        scopes.append(variables["input"])
        files = variables["input"].get("artifactFiles")
        if isinstance(files, list):  # CreateArtifactFiles: the artifacts the files go to
            ids = sorted(
                {
                    f["artifactID"]
                    for f in files
                    if isinstance(f, dict) and isinstance(f.get("artifactID"), str)
                }
            )
            if ids:
                scopes.append({"artifactID": ",".join(ids)})
    naming = []
    for key in (*_SCOPE_VARIABLES, *_OWN_RESOURCE_VARIABLES):
        for scope in scopes:
            value = scope.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                naming.append((key, str(value)))
                break
    return naming


def _is_shared(request: Request) -> bool:
    """A GraphQL request naming no run or artifact: every client asks for it alike."""
    if request.kind != "graphql":
        return False
    return not any(key in _OWN_RESOURCE_VARIABLES for key, _ in _naming_variables(request.body))


def _seconds_header(seconds: float) -> str:
    """A Retry-After value: integer seconds when whole, else a decimal."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


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
    # The Python SDK's public API sends "operationName": "" for its anonymous-looking
    # requests; GraphQL servers take an empty name as no name.
    name = body.get("operationName") or None
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


def _variable(
    variables: dict[str, Any],
    key: str,
    required: bool,
    valid: Callable[[Any], bool],
    problem: Callable[[Any], str],
) -> Any:
    """A GraphQL variable checked against its type: null only where the type allows it,
    else a value `valid` accepts (`problem` says what it must be)."""
    value = variables.get(key)
    if value is None and required:
        raise HttpError(400, f"variable {key} of non-null type was not provided")
    if value is not None and not valid(value):
        raise HttpError(400, f"variable {key} {problem(value)}")
    return value


def _string(variables: dict[str, Any], key: str, required: bool = False) -> Any:
    return _variable(
        variables, key, required, lambda v: isinstance(v, str), lambda _: "must be a String"
    )


def _string_list(variables: dict[str, Any], key: str, required: bool = False) -> Any:
    return _variable(
        variables,
        key,
        required,
        lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v),
        lambda _: "must be a list of non-null Strings",
    )


def _json_string(variables: dict[str, Any], key: str) -> Any:
    """Parse a JSONString variable: a string holding JSON, not a JSON value itself."""
    value = _string(variables, key)
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as err:
        raise HttpError(400, f"variable {key} is not a valid JSONString: {err}") from None


def _enum(
    variables: dict[str, Any], key: str, values: tuple[str, ...], required: bool = False
) -> Any:
    return _variable(
        variables,
        key,
        required,
        lambda v: v in values,
        lambda v: f"must be one of {list(values)}, got {v!r}",
    )


def _boolean(variables: dict[str, Any], key: str, required: bool = False) -> Any:
    return _variable(
        variables, key, required, lambda v: isinstance(v, bool), lambda _: "must be a Boolean"
    )


def _int(variables: dict[str, Any], key: str) -> Any:
    return _variable(variables, key, False, lambda v: type(v) is int, lambda _: "must be an Int")


def _input_object(variables: dict[str, Any], key: str, fields: frozenset[str] | set[str]) -> Any:
    """A required input-object variable whose fields are all known."""
    value = variables.get(key)
    if not isinstance(value, dict):
        raise HttpError(400, f"variable {key} must be an input object")
    unknown = set(value) - fields
    if unknown:
        raise HttpError(400, f"variable {key} has unknown fields {sorted(unknown)}")
    return value


def _alias_inputs(value: Any) -> list[tuple[str, str]]:
    """CreateArtifactInput.aliases: [{"artifactCollectionName", "alias"}] as (alias, name)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise HttpError(400, "input.aliases must be a list")
    aliases = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"artifactCollectionName", "alias"}:
            raise HttpError(400, "each alias must be {artifactCollectionName, alias}")
        alias, collection = item["alias"], item["artifactCollectionName"]
        if not isinstance(alias, str) or not isinstance(collection, str):
            raise HttpError(400, "alias and artifactCollectionName must be Strings")
        if not alias or "/" in alias or ":" in alias:
            raise GraphQLError(f"invalid alias {alias!r}")
        aliases.append((alias, collection))
    return aliases


def _tag_inputs(value: Any) -> list[str]:
    """CreateArtifactInput.tags: [{"tagName", "tagCategoryName", "attributes"}] as names."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise HttpError(400, "input.tags must be a list")
    names = []
    for item in value:
        if not (
            isinstance(item, dict)
            and "tagName" in item
            and set(item) <= {"tagName", "tagCategoryName", "attributes"}
            and isinstance(item["tagName"], str)
        ):
            raise HttpError(400, "each tag must be {tagName, tagCategoryName?, attributes?}")
        names.append(item["tagName"])
    return names


def _check_file_path(path: str) -> None:
    """A relative, normalised "/"-separated path, as run and artifact file names are."""
    if not path or path.startswith("/") or "\\" in path or ".." in path.split("/"):
        raise GraphQLError(f"invalid file name {path!r}")


def _md5_digest(value: str) -> str | None:
    """The hex of a base64 MD5 (as W&B writes file digests), or None if it is not one."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 16 else None


def _b64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _check_signed_md5(md5: str, headers: dict[str, str], body_md5: str) -> None:
    """An upload to a URL signed for Content-MD5 `md5` (as GCS and S3 sign them): the header
    must be sent as issued (else the signature fails: 403), and the body (whose MD5 is
    `body_md5`) must match (400)."""
    sent = headers.get("content-md5")
    if sent != md5:
        raise HttpError(
            403,
            f"signature mismatch: Content-MD5 {sent!r} is not the signed {md5!r}"
            " (send the uploadHeaders)",
        )
    if body_md5 != md5:
        raise HttpError(400, f"BadDigest: the body's MD5 is {body_md5}, not {md5}")


def _check_manifest(manifest: Any) -> dict[str, dict[str, Any]]:
    """A FULL manifest (version 1, W&B storage policy); returns its contents."""
    if not isinstance(manifest, dict) or manifest.get("version") != 1:
        raise GraphQLError("manifest must be a JSON object with version 1")
    if manifest.get("storagePolicy") != STORAGE_POLICY:
        raise GraphQLError(f"manifest storagePolicy must be {STORAGE_POLICY}")
    contents = manifest.get("contents")
    if not isinstance(contents, dict):
        raise GraphQLError("manifest contents must be an object")
    for path, entry in contents.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            raise GraphQLError(f"manifest entry {path!r} has no digest")
        size = entry.get("size")
        if size is not None and (type(size) is not int or size < 0):
            raise GraphQLError(f"manifest entry {path!r} has an invalid size")
        # A reference (s3://, gs://, http(s)://, file://, wandb-artifact://...) names where
        # its bytes are; its digest is an ETag, an MD5 or the URI itself, and it may have no
        # size (the Python SDK writes none for unchecked references, wandb-core 0).
        ref = entry.get("ref")
        if ref is not None and (not isinstance(ref, str) or ":" not in ref):
            raise GraphQLError(f"manifest entry {path!r} has an invalid ref {ref!r}")
        if entry.get("extra") is not None and not isinstance(entry["extra"], dict):
            raise GraphQLError(f"manifest entry {path!r}: extra must be an object")
        birth = entry.get("birthArtifactID")
        if birth is not None and not isinstance(birth, str):
            raise GraphQLError(f"manifest entry {path!r}: birthArtifactID must be a string")
        if ref is None and _md5_digest(entry["digest"]) is None:
            raise GraphQLError(f"manifest entry {path!r}: digest is not a base64 MD5")
    return contents


def _artifact_digest(contents: dict[str, dict[str, Any]]) -> str:
    """W&B's artifact digest: hex MD5 of a header and "{path}:{digest}" lines, by path."""
    text = "wandb-artifact-manifest-v1\n" + "".join(
        f"{path}:{contents[path]['digest']}\n" for path in sorted(contents)
    )
    return hashlib.md5(text.encode()).hexdigest()


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


def _encode(body: Any) -> tuple[bytes, str | None]:
    """An answer's payload and Content-Type: bytes as a file, None as nothing, else JSON."""
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if body is None:
        return b"", None
    return json.dumps(body).encode(), "application/json"


def _error_body(message: str) -> dict[str, Any]:
    # The shape GraphQL servers use; wandb-core also reads it for non-GraphQL errors.
    return {"errors": [{"message": message}]}


def _node_id(type_name: str, key: str) -> str:
    """An opaque id like the server's: base64("<Type>:<key>")."""
    return base64.b64encode(f"{type_name}:{key}".encode()).decode()


def _decode_node_id(node_id: str) -> str | None:
    try:
        return base64.b64decode(node_id, validate=True).decode()
    except ValueError:
        return None


def _now() -> str:
    """A timestamp as W&B's API writes them (UTC, seconds, no zone suffix)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def _connection(
    items: list[Any], args: dict[str, Any], node: Callable[[Any], Any]
) -> dict[str, Any]:
    """A Relay connection over `items`, paged by the field's `after` and `first`."""
    after, first = args.get("after"), args.get("first")
    start = 0
    if after is not None:
        match = re.fullmatch(r"cursor:(\d+)", _decode_node_id(after) or "")
        if match is None:
            raise HttpError(400, f"invalid cursor {after!r}")
        start = int(match[1]) + 1
    if first is not None and (type(first) is not int or first < 0):
        raise HttpError(400, "first must be a non-negative Int")
    end = len(items) if first is None else min(start + first, len(items))
    edges = [
        {
            "__typename": "Edge",
            "node": node(items[i]),
            "cursor": base64.b64encode(f"cursor:{i}".encode()).decode(),
        }
        for i in range(start, end)
    ]
    page_info = {
        "__typename": "PageInfo",
        "endCursor": edges[-1]["cursor"] if edges else after,
        "hasNextPage": end < len(items),
    }
    return {
        "__typename": "Connection",
        "totalCount": len(items),
        "edges": edges,
        "pageInfo": page_info,
    }


def _sample(lines: list[str], samples: Any) -> list[str]:
    """At most `samples` of the lines, evenly spaced and keeping the first and last."""
    if samples is None or len(lines) <= samples:
        return list(lines)
    if type(samples) is not int or samples < 1:
        raise HttpError(400, "samples must be a positive Int")
    if samples == 1:
        return [lines[-1]]
    step = (len(lines) - 1) / (samples - 1)
    return [lines[round(i * step)] for i in range(samples)]


def _step_range(lines: list[str], args: dict[str, Any]) -> list[str]:
    """The history lines with minStep <= _step < maxStep (either bound may be absent)."""
    low, high = args.get("minStep"), args.get("maxStep")
    if low is None and high is None:
        return list(lines)
    steps = [json.loads(line).get("_step") for line in lines]
    return [
        line
        for line, step in zip(lines, steps, strict=True)
        if type(step) is int and (low is None or step >= low) and (high is None or step < high)
    ]


def _sampled_history(history: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    """sampledHistory for one spec ({"keys": [...], "samples": n, "minStep"?, "maxStep"?} as a
    JSONString): the rows in the step range that have all the keys, cut down to them.

    Here maxStep is inclusive, unlike history(maxStep:): wandb-core 0.31.0 asks for the page
    [0, 1) of scan_history(keys=...) as {"minStep": 0, "maxStep": 0, "samples": 1}."""
    try:
        parsed = json.loads(spec)
        keys, samples = parsed["keys"], parsed.get("samples")
        low, high = parsed.get("minStep"), parsed.get("maxStep")
    except (TypeError, ValueError, KeyError):
        raise HttpError(400, f"invalid sampledHistory spec {spec!r}") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise HttpError(400, f"sampledHistory spec keys must be a list of strings: {spec!r}")
    keys = list(dict.fromkeys(keys))
    steps = [row.get("_step") for row in history]
    rows = [
        {k: row[k] for k in keys}
        for row, step in zip(history, steps, strict=True)
        if all(k in row for k in keys)
        and (low is None or (type(step) is int and step >= low))
        and (high is None or (type(step) is int and step <= high))
    ]
    picked = _sample([json.dumps(row) for row in rows], samples)
    return [json.loads(row) for row in picked]


def _history_keys(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Run.historyKeys: the last step and, per key, how often each JSON type was logged."""
    counts: dict[str, dict[str, int]] = {}
    for row in history:
        for key, value in row.items():
            kind = value.get("_type", "map") if isinstance(value, dict) else _json_type_name(value)
            per_type = counts.setdefault(key, {})
            per_type[kind] = per_type.get(kind, 0) + 1
    keys = {
        key: {"typeCounts": [{"type": t, "count": n} for t, n in per_type.items()]}
        for key, per_type in counts.items()
    }
    last_step = max((row["_step"] for row in history if type(row.get("_step")) is int), default=-1)
    return {"lastStep": last_step, "keys": keys}


def _json_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "nil" if value is None else "list"


def _random_run_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


# --------------------------------------------------------------------------- mini GraphQL
#
# The read operations of the public API (`READ_OPERATIONS`) are executed for real: the query
# is parsed, and its selection set (fields, aliases, arguments, fragments, @include/@skip)
# picks from a tree of nodes whose fields are values or resolvers (functions of the field's
# arguments). A selected field that the fake does not serve is a 400 naming it, so a client
# asking for something the fake cannot answer fails loudly instead of reading a made-up null.


@dataclass
class _Var:
    name: str


@dataclass
class _Selection:
    name: str = ""  # field name; "" for a fragment spread or inline fragment
    alias: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)  # values may hold _Var
    directives: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    selections: list[_Selection] | None = None
    spread: str | None = None  # fragment name, for "...Name"
    type_condition: str | None = None  # for "... on Type" and fragment definitions


@dataclass(frozen=True)
class _Type:
    """A variable's declared type: a named type or a list of `item`, maybe non-null (!)."""

    name: str | None  # None for a list
    non_null: bool
    item: _Type | None = None

    def __str__(self) -> str:
        text = self.name if self.item is None else f"[{self.item}]"
        return f"{text}!" if self.non_null else str(text)


@dataclass
class _Operation:
    name: str | None
    defaults: dict[str, Any]  # variable defaults
    selections: list[_Selection]
    types: dict[str, _Type] = field(default_factory=dict)  # declared variables


_GQL_TOKEN = re.compile(
    r"""(?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
    |(?P<punct>\.\.\.|[!$&():=@\[\]{|}])
    |(?P<name>[_A-Za-z][_0-9A-Za-z]*)
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<block>\"\"\"(?:\\\"\"\"|[^"]|"(?!""))*\"\"\")
    |(?P<string>"(?:\\.|[^"\\\n])*")""",
    re.VERBOSE,
)
# Object types that implement an interface (or belong to a union) a fragment may name.
_GQL_SUPERTYPES = {
    "ArtifactSequence": ("ArtifactCollection",),
    "ArtifactPortfolio": ("ArtifactCollection",),
}


class _GraphQLParser:
    """A parser for the executable subset of GraphQL documents that clients send."""

    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = _GQL_TOKEN.match(text, position)
            if match is None:
                raise HttpError(400, f"GraphQL syntax error at {text[position : position + 20]!r}")
            position = match.end()
            if match.lastgroup != "skip":
                self.tokens.append((match.lastgroup or "", match.group()))
        self.position = 0

    def document(self) -> tuple[list[_Operation], dict[str, _Selection]]:
        operations, fragments = [], {}
        while self.position < len(self.tokens):
            if self.peek("{"):
                operations.append(_Operation(None, {}, self.selection_set()))
            elif self.peek("fragment"):
                self.take()
                name = self.take("name")
                self.expect("on")
                fragment = _Selection(spread=name, type_condition=self.take("name"))
                fragment.directives = self.directives()
                fragment.selections = self.selection_set()
                fragments[name] = fragment
            else:
                if self.take("name") not in ("query", "mutation", "subscription"):
                    raise HttpError(400, "GraphQL syntax error: expected an operation")
                operation_name = self.take("name") if self.peek_kind("name") else None
                defaults, types = self.variable_definitions()
                self.directives()
                operations.append(_Operation(operation_name, defaults, self.selection_set(), types))
        return operations, fragments

    def variable_definitions(self) -> tuple[dict[str, Any], dict[str, _Type]]:
        defaults: dict[str, Any] = {}
        types: dict[str, _Type] = {}
        if not self.peek("("):
            return defaults, types
        self.take()
        while not self.peek(")"):
            self.expect("$")
            name = self.take("name")
            self.expect(":")
            if name in types:
                raise HttpError(400, f"variable ${name} is declared twice")
            types[name] = self.type_reference()
            if self.peek("="):
                self.take()
                defaults[name] = self.value()
            self.directives()
        self.take()
        return defaults, types

    def type_reference(self) -> _Type:
        if self.peek("["):
            self.take()
            item = self.type_reference()
            self.expect("]")
            named = None
        else:
            item, named = None, self.take("name")
        non_null = self.peek("!")
        if non_null:
            self.take()
        return _Type(named, non_null, item)

    def selection_set(self) -> list[_Selection]:
        self.expect("{")
        selections = []
        while not self.peek("}"):
            if self.peek("..."):
                self.take()
                if self.peek_kind("name") and not self.peek("on"):
                    selections.append(_Selection(spread=self.take(), directives=self.directives()))
                    continue
                fragment = _Selection()
                if self.peek("on"):
                    self.take()
                    fragment.type_condition = self.take("name")
                fragment.directives = self.directives()
                fragment.selections = self.selection_set()
                selections.append(fragment)
                continue
            selection = _Selection(name=self.take("name"))
            if self.peek(":"):
                self.take()
                selection.alias, selection.name = selection.name, self.take("name")
            selection.arguments = self.arguments()
            selection.directives = self.directives()
            if self.peek("{"):
                selection.selections = self.selection_set()
            selections.append(selection)
        self.take()
        if not selections:
            raise HttpError(400, "GraphQL syntax error: empty selection set")
        return selections

    def arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if self.peek("("):
            self.take()
            while not self.peek(")"):
                name = self.take("name")
                self.expect(":")
                arguments[name] = self.value()
            self.take()
        return arguments

    def directives(self) -> list[tuple[str, dict[str, Any]]]:
        directives = []
        while self.peek("@"):
            self.take()
            directives.append((self.take("name"), self.arguments()))
        return directives

    def value(self) -> Any:
        kind, text = self.tokens[self.position] if self.position < len(self.tokens) else ("", "")
        if text == "$":
            self.take()
            return _Var(self.take("name"))
        if text == "[":
            self.take()
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take()
            return items
        if text == "{":
            self.take()
            fields = {}
            while not self.peek("}"):
                name = self.take("name")
                self.expect(":")
                fields[name] = self.value()
            self.take()
            return fields
        self.take()
        if kind == "number":
            return json.loads(text)
        if kind == "string":
            return json.loads(text)
        if kind == "block":
            return text[3:-3]
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)  # or an enum
        raise HttpError(400, f"GraphQL syntax error: unexpected {text!r}")

    def peek(self, text: str) -> bool:
        return self.position < len(self.tokens) and self.tokens[self.position][1] == text

    def peek_kind(self, kind: str) -> bool:
        return self.position < len(self.tokens) and self.tokens[self.position][0] == kind

    def take(self, kind: str | None = None) -> str:
        if self.position >= len(self.tokens):
            raise HttpError(400, "GraphQL syntax error: unexpected end of the document")
        token_kind, text = self.tokens[self.position]
        if kind is not None and token_kind != kind:
            raise HttpError(400, f"GraphQL syntax error: expected a {kind}, got {text!r}")
        self.position += 1
        return text

    def expect(self, text: str) -> None:
        if self.take() != text:
            raise HttpError(400, f"GraphQL syntax error: expected {text!r}")


# Built-in and W&B scalars a variable value is checked against (other types, e.g. enums and
# input objects, are checked where they are used).
_SCALARS: dict[str, Callable[[Any], bool]] = {
    "String": lambda v: isinstance(v, str),
    "ID": lambda v: isinstance(v, str) or (type(v) is int),
    "Int": lambda v: type(v) is int and -(2**31) <= v < 2**31,
    "Int64": lambda v: type(v) is int,
    "Float": lambda v: type(v) in (int, float),
    "Boolean": lambda v: isinstance(v, bool),
    "JSONString": lambda v: isinstance(v, str),
}


def _check_variable(where: str, declared: _Type, value: Any) -> None:
    """A variable value must fit its declared type (GraphQL input coercion: 400 otherwise)."""
    if value is None:
        if declared.non_null:
            raise HttpError(400, f"variable {where} of type {declared} must not be null")
        return
    if declared.item is not None:
        items = value if isinstance(value, list) else [value]  # a single value is a list of one
        for i, item in enumerate(items):
            _check_variable(f"{where}[{i}]", declared.item, item)
        return
    valid = _SCALARS.get(declared.name or "")
    if valid is not None and not valid(value):
        raise HttpError(400, f"variable {where} of type {declared} got {value!r}")


class _Executor:
    """Runs one operation's selection set against a tree of nodes (see above)."""

    def __init__(self, query: str, operation_name: str, variables: dict[str, Any]):
        operations, self.fragments = _GraphQLParser(query).document()
        operation = next((o for o in operations if o.name == operation_name), None)
        if operation is None:
            raise HttpError(400, f"the document defines no operation {operation_name!r}")
        self.selections = operation.selections
        self.types = operation.types
        # Variables the operation does not declare are ignored (the Python SDK sends
        # UseArtifact's "usedAs" undeclared); declared ones must fit their types.
        self.variables = {**operation.defaults, **variables}
        for name, declared in self.types.items():
            _check_variable(f"${name}", declared, self.variables.get(name))

    def run(self, root: dict[str, Any]) -> Any:
        return self.select(root, self.selections, "")

    def select(self, value: Any, selections: list[_Selection], path: str) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self.select(item, selections, f"{path}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, dict) or "__typename" not in value:
            raise HttpError(400, f"{path} is a scalar: it takes no selection set")
        fields: dict[str, list[_Selection]] = {}
        self.collect(value["__typename"], selections, fields)
        result = {}
        for key, same_key in fields.items():
            first = same_key[0]
            where = f"{path}.{key}".lstrip(".")
            if first.name == "__typename":
                result[key] = value["__typename"]
                continue
            if first.name not in value:
                raise HttpError(
                    400,
                    f"field {value['__typename']}.{first.name} ({where}) is not served by the fake",
                )
            resolved = value[first.name]
            arguments = {k: self.evaluate(v) for k, v in first.arguments.items()}
            if callable(resolved):
                resolved = resolved(arguments)
            elif arguments:
                raise HttpError(400, f"the fake takes no arguments for {where}")
            subselections = [s for sel in same_key for s in sel.selections or []]
            if subselections:
                result[key] = self.select(resolved, subselections, where)
            elif isinstance(resolved, dict) and "__typename" in resolved:
                raise HttpError(400, f"{where} is an object: it needs a selection set")
            else:
                result[key] = resolved
        return result

    def collect(
        self, typename: str, selections: list[_Selection], fields: dict[str, list[_Selection]]
    ) -> None:
        for selection in selections:
            if not self.included(selection):
                continue
            if selection.spread is not None:
                fragment = self.fragments.get(selection.spread)
                if fragment is None:
                    raise HttpError(400, f"unknown fragment {selection.spread!r}")
                selection = fragment
                if not self.included(fragment):
                    continue
            if selection.selections is not None and not selection.name:
                condition = selection.type_condition
                if condition in (None, typename) or condition in _GQL_SUPERTYPES.get(typename, ()):
                    self.collect(typename, selection.selections, fields)
                continue
            fields.setdefault(selection.alias or selection.name, []).append(selection)

    def included(self, selection: _Selection) -> bool:
        for name, arguments in selection.directives:
            condition = self.evaluate(arguments.get("if"))
            if (name == "include" and condition is not True) or (name == "skip" and condition):
                return False
        return True

    def evaluate(self, value: Any) -> Any:
        if isinstance(value, _Var):
            if value.name not in self.types:
                raise HttpError(400, f"variable ${value.name} is not declared by the operation")
            return self.variables.get(value.name)
        if isinstance(value, list):
            return [self.evaluate(item) for item in value]
        if isinstance(value, dict):
            return {k: self.evaluate(v) for k, v in value.items()}
        return value


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
