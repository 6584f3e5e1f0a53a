"""Artifact logging, ours against the official SDK: one script body runs under ``import wandb``
and under ``import wandb_nexus as wandb`` against the same strict fake W&B server
(fake_wandb.py), with S3 references on a moto server that checks every request's signature and
IAM policy (a Lambda role's credentials, session token included) and http references on a
loopback server; what the fake holds from each is compared semantically (see `project_view`)
with what the official SDK left there and with what the sources say it must be.

Covered (wandb-artifacts-resume.md §1.1-1.5, §1.8): files, directories, new files, is_tmp,
the immutable policy, references of every kind (s3 object, prefix and versioned object, http
with and without ETag, file:// file and directory, unchecked ones, an unknown scheme),
description, metadata, tags, aliases and version numbering; a path given to log_artifact;
staging (a file changed after add_file is uploaded as it was); the same script offline, then
uploaded by the official ``wandb sync`` (and ours by our own sync); the official SDK
downloading what was logged; bad input; an upload that fails leaves nothing committed.

Each test runs for both SDKs ("official", "nexus") where the behaviour is shared: the official
cases prove the expectations, the nexus ones judge ours. Where the two legitimately differ
(exception classes, message texts, S3 references that name nothing) ours is held to its spec in
the nexus branch."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_serverless import Moto

from fake_wandb import (
    DEFAULT_ENTITY,
    ArtifactState,
    FakeWandb,
    HttpError,
    run_isolated,
    wandb_env,
    wandb_sync,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="the official wandb SDK is not installed"
)

SDKS = {"official": "wandb", "nexus": "wandb_nexus"}

# --------------------------------------------------------------------------- the sources

# Files the logging script writes in its working directory (its home) before it starts.
SOURCES = {
    "local.txt": "local file\n",
    "model.ckpt": "model weights\n",
    "frozen.txt": "frozen\n",
    "cached.txt": "cached\n",
    "src/a.txt": "tree a\n",
    "src/sub/b.txt": "tree b\n",
    "refs/referenced.txt": "referenced file\n",
    "refs/dir/r1.txt": "ref one\n",
    "refs/dir/deeper/r2.txt": "ref two\n",
    "weights.bin": "path weights\n",
    "pathdir/p.txt": "path dir p\n",
    "pathdir/q/r.txt": "path dir r\n",
}
NEW_TEXT = "new file \u00e9\n"  # written through new_file(encoding="utf-8")
RAW = bytes(range(256))  # written through new_file(mode="xb")
CHANGED = "changed after add_file\n"
# Entries LOG_SCRIPT reads back with get_entry: stored files and references of each kind.
ENTRY_PATHS = (
    "top/local.txt",
    "made/raw.bin",
    "data.bin",
    "web/plain.txt",
    "s3dir/sub/b.txt",
    "versioned.txt",
    "fileref/dir/deeper/r2.txt",
)
DS_METADATA = {"rows": 3, "ratio": 0.5, "nested": {"list": [1, "x", None], "flag": True}}

# Bucket "bkt" (plain), "vbkt" (versioned: v.txt has an older version), "private" (the role
# may not read it). "dir/empty" has no bytes: the official SDK leaves it out of a prefix.
S3_OBJECTS = {
    "bkt": {
        "obj.bin": b"s3 object\n",
        "dir/a.txt": b"s3 a\n",
        "dir/sub/b.txt": b"s3 b\n",
        "dir/empty": b"",
    },
    "private": {"secret.txt": b"secret\n"},
}
VERSIONED = (b"old v\n", b"new v\n")  # vbkt/v.txt, oldest first

# The http references' server: path -> (body, sends an ETag).
HTTP_FILES = {"/data.bin": (b"http data\n", True), "/plain.txt": (b"plain text\n", False)}

# Logs, as run "writer" of project argv[2] in mode argv[3] ("online" or "offline"): "ds" v0
# (files, directories, new files, references of every checked kind), "ds" v1, "unchecked"
# (references with checksum=False and an unknown scheme), and three artifacts by path. Online
# it also reads entries back with get_entry. Prints RESULT <json>. argv[1]: the http server.
LOG_SCRIPT = f"""
import json
import sys
from pathlib import Path

SOURCES = {SOURCES!r}
http, project, mode = sys.argv[1:4]
for path, text in SOURCES.items():
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
here = Path.cwd().as_uri()
got = {{}}

run = wandb.init(project=project, id="writer", mode=mode)
ds = wandb.Artifact("ds", type="dataset", description="the dataset", metadata={DS_METADATA!r})
ds.add_file("local.txt", name="top/local.txt")
Path("local.txt").write_text({CHANGED!r})  # staged: the upload keeps what was added
ds.add_file("model.ckpt", is_tmp=True)
# Not copied: the file itself is read at upload, by an absolute path (wandb keeps the path as
# given, and `wandb sync` runs elsewhere).
ds.add_file(str(Path("frozen.txt").resolve()), policy="immutable")
ds.add_file("cached.txt", skip_cache=True)
ds.add_dir("src", name="tree")
ds.add_dir("src")
with ds.new_file("made/new.txt", encoding="utf-8") as f:
    f.write({NEW_TEXT!r})
with ds.new_file("made/raw.bin", mode="xb") as f:
    f.write(bytes(range(256)))
ds.add_reference(http + "/data.bin")
ds.add_reference(http + "/plain.txt", name="web/plain.txt", checksum=False)
ds.add_reference(http + "/plain.txt", name="web/plain-checked.txt")
ds.add_reference(here + "/refs/referenced.txt", name="fileref/referenced.txt")
ds.add_reference(here + "/refs/dir", name="fileref/dir")
ds.add_reference("s3://bkt/obj.bin")
ds.add_reference("s3://bkt/dir", name="s3dir")
ds.add_reference("s3://vbkt/v.txt", name="versioned.txt")
got["ds"] = [ds.name, ds.type, ds.description, ds.metadata, ds.digest]
run.log_artifact(ds, aliases=["best", "exp-1"], tags=["raw", "first cut"])
Path("src/sub/b.txt").write_text("changed after log_artifact\\n")
if mode == "online":
    # wandb reads entries of logged artifacts only (get_entry needs wait()).
    if hasattr(ds, "wait"):
        ds.wait()
    got["entries"] = {{}}
    for path in {ENTRY_PATHS!r}:
        entry = ds.get_entry(path)
        got["entries"][path] = [entry.path, entry.digest, entry.size, entry.ref]

v1 = wandb.Artifact("ds", type="dataset")
with v1.new_file("only.txt") as f:
    f.write("version one\\n")
run.log_artifact(v1, aliases=["best"])

unchecked = wandb.Artifact("unchecked", type="refs")
unchecked.add_reference(here + "/refs/referenced.txt", name="file.txt", checksum=False)
unchecked.add_reference(here + "/refs/dir", name="dir", checksum=False)
unchecked.add_reference("s3://bkt/obj.bin", name="s3.bin", checksum=False)
unchecked.add_reference("s3://bkt/dir", name="s3dir", checksum=False)
unchecked.add_reference("s3://private/secret.txt", name="private.txt", checksum=False)
unchecked.add_reference(http + "/data.bin", name="h.bin", checksum=False)
unchecked.add_reference("custom://thing/x", name="custom/x")
got["unchecked"] = unchecked.digest
run.log_artifact(unchecked)

by_path = run.log_artifact("weights.bin")
module_level = wandb.log_artifact("pathdir")
named = run.log_artifact("weights.bin", name="named-weights", type="model", aliases=["prod"],
                         tags=["t"])
got["by path"] = [[a.name, a.type] for a in (by_path, module_level, named)]
run.finish()
print("RESULT", json.dumps(got))
"""

# The official SDK reads what project argv[2] of entity argv[1] holds: with wandb.Api() and
# from a run that uses the artifacts; every download as {path: hex of the bytes}.
DOWNLOAD_SCRIPT = """
import json
import os
import sys

import wandb

entity, project = sys.argv[1:3]


def tree(root):
    found = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root).replace(os.sep, "/")] = f.read().hex()
    return found


got = {}
api = wandb.Api()
names = ("ds:v0", "run-writer-weights.bin:v0", "run-writer-pathdir:latest", "named-weights:prod")
for name in names:
    art = api.artifact(f"{entity}/{project}/{name}")
    got[name] = [art.version, art.type, tree(art.download(root=os.path.join("api", name)))]
run = wandb.init(entity=entity, project=project, id="reader")
for alias in ("exp-1", "best"):
    art = run.use_artifact(f"ds:{alias}", type="dataset")
    root = art.download()
    got["used ds:" + alias] = [art.version, os.path.relpath(root), tree(root)]
run.finish()
print("RESULT", json.dumps(got))
"""

# Bad input, each call's outcome as null (no error; argv[3] "entries" gives the number of
# entries made) or [the exception's class names (its MRO), its message]. argv[1]: the http
# server, argv[2]: the project. Finally one valid log_artifact, so that what the refused
# ones sent can be told apart.
BAD_INPUT_SCRIPT = """
import json
import sys
from pathlib import Path

http, project = sys.argv[1:3]
Path("f.txt").write_text("f\\n")
Path("g.txt").write_text("g\\n")
Path("a-directory").mkdir()
got = {}


def outcome(case, call):
    try:
        result = call()
    except Exception as err:
        got[case] = [[c.__name__ for c in type(err).__mro__], str(err)]
    else:
        got[case] = len(result) if isinstance(result, list) else None


A = wandb.Artifact
outcome("missing file", lambda: A("a", "t").add_file("nope.txt"))
outcome("directory to add_file", lambda: A("a", "t").add_file("a-directory"))
outcome("missing directory", lambda: A("a", "t").add_dir("nowhere"))
outcome("name with /", lambda: A("a/b", "t"))
outcome("name of 129", lambda: A("long-" + "x" * 124, "t"))
outcome("name of 128", lambda: A("long-" + "x" * 123, "t"))
outcome("type wandb-", lambda: A("a", "wandb-history"))
outcome("unknown scheme without name", lambda: A("a", "t").add_reference("custom://x/y"))
outcome("missing s3 object", lambda: A("a", "t").add_reference("s3://bkt/nope.bin"))
outcome("empty s3 prefix", lambda: A("a", "t").add_reference("s3://bkt/nothing/"))
outcome("denied s3 object", lambda: A("a", "t").add_reference("s3://private/secret.txt"))


def same_name_twice():
    art = A("a", "t")
    art.add_file("f.txt", name="taken.txt")
    art.add_file("g.txt", name="taken.txt")


outcome("other file under a taken name", same_name_twice)

run = wandb.init(project=project, id="bad")
good = A("good", "dataset")
good.add_file("f.txt")
outcome("alias with /", lambda: run.log_artifact(good, aliases=["a/b"]))
outcome("alias with :", lambda: run.log_artifact(good, aliases=["v:1"]))
outcome("tag with !", lambda: run.log_artifact(good, tags=["bad!"]))
outcome("tag with a trailing space", lambda: run.log_artifact(good, tags=["ab "]))
outcome("path that does not exist", lambda: run.log_artifact("nope.txt"))
outcome("path with type wandb-", lambda: run.log_artifact("f.txt", type="wandb-x"))
outcome("good", lambda: run.log_artifact(good, aliases=["fine"], tags=["two  words", "x-y_z"]))
run.finish()
print("RESULT", json.dumps(got))
"""

# Logs "fragile" (two files) on a server whose storage refuses its uploads, then the same
# content again as a new artifact, which must go through. Prints RESULT <json>.
FAILED_UPLOAD_SCRIPT = """
import json
from pathlib import Path

Path("f.txt").write_text("payload\\n")
got = {}
run = wandb.init(project="fault", id="faulty")
for attempt in ("first", "second"):
    art = wandb.Artifact("fragile", type="dataset")
    art.add_file("f.txt")
    with art.new_file("g.txt") as f:
        f.write("more\\n")
    run.log_artifact(art)
    if not hasattr(art, "wait"):
        got[attempt] = "no wait()"
    else:
        try:
            art.wait()
            got[attempt] = None
        except Exception as err:
            got[attempt] = [[c.__name__ for c in type(err).__mro__], str(err)]
    run.log({"after": attempt})
run.finish()
print("RESULT", json.dumps(got))
"""


# wait(): two versions of "waited", each waited for; then, in an offline run, use_artifact and
# wait(). Prints RESULT <json>.
WAIT_SCRIPT = """
import json
import os

got = {}


def outcome(case, call):
    try:
        call()
    except Exception as err:
        got[case] = [[c.__name__ for c in type(err).__mro__], str(err)]
    else:
        got[case] = None


run = wandb.init(project="waiting", id="waiter")
art = wandb.Artifact("waited", type="dataset")
with art.new_file("a.txt") as f:
    f.write("a\\n")
try:
    got["before"] = art.version
except AttributeError as err:  # wandb: ArtifactNotLoggedError
    got["before"] = type(err).__name__
outcome("not logged", lambda: wandb.Artifact("never", type="dataset").wait())
run.log_artifact(art, aliases=["best"])
got["returns it"] = art.wait() is art and art.wait() is art
got["first"] = [art.version, art.name, sorted(art.aliases), art.entity, art.project, art.id]
second = wandb.Artifact("waited", type="dataset")
with second.new_file("b.txt") as f:
    f.write("b\\n")
got["second"] = [run.log_artifact(second).wait().version, sorted(second.aliases)]
got["downloaded"] = sorted(os.listdir(art.download(root="dl")))
run.finish()

offline = wandb.init(project="waiting", id="off", mode="offline")
outcome("use offline", lambda: offline.use_artifact("waited:latest"))
kept = wandb.Artifact("kept", type="dataset")
with kept.new_file("k.txt") as f:
    f.write("k\\n")
offline.log_artifact(kept)
outcome("wait offline", lambda: kept.wait())
offline.finish()
print("RESULT", json.dumps(got))
"""


# --------------------------------------------------------------------------- helpers


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class ReferenceServer:
    """An HTTP server on loopback for http:// references, answering GET and HEAD as any web
    server does: `HTTP_FILES` with their Content-Length and, for some, an ETag (what
    add_reference(checksum=True) records); 404 otherwise. Every request is kept as
    (method, path, lower-cased headers)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, with_body: bool) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((self.command, self.path, headers))
                body, etag = HTTP_FILES.get(self.path, (b"", False))
                self.send_response(200 if self.path in HTTP_FILES else 404)
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", f'"{md5_hex(body)}"')
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self.answer(True)

            def do_HEAD(self) -> None:
                self.answer(False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that reads the headers only and hangs up is no error

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class S3:
    """moto with IAM enforced: `credentials` are a Lambda-like role's (with a session token)
    that may read "bkt" and "vbkt" but not "private"."""

    moto: Moto
    credentials: dict[str, str] = field(repr=False)  # never in a test's output
    version_id: str = ""  # of vbkt/v.txt's newest version

    @property
    def secrets(self) -> list[str]:
        return [self.credentials["AWS_SECRET_ACCESS_KEY"], self.credentials["AWS_SESSION_TOKEN"]]


@contextlib.contextmanager
def s3_with_iam() -> Iterator[S3]:
    moto = Moto()
    try:
        s3 = moto.client("s3")
        for bucket, objects in S3_OBJECTS.items():
            s3.create_bucket(Bucket=bucket)
            for key, body in objects.items():
                s3.put_object(Bucket=bucket, Key=key, Body=body)
        s3.create_bucket(Bucket="vbkt")
        s3.put_bucket_versioning(Bucket="vbkt", VersioningConfiguration={"Status": "Enabled"})
        for body in VERSIONED:
            version_id = s3.put_object(Bucket="vbkt", Key="v.txt", Body=body)["VersionId"]
        buckets = [f"arn:aws:s3:::{b}{suffix}" for b in ("bkt", "vbkt") for suffix in ("", "/*")]
        reads = ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions"]
        credentials = moto.role_credentials("function", {"Action": reads, "Resource": buckets})
        moto.check_auth()
        yield S3(moto, credentials, version_id)
    finally:
        moto.stop()


@dataclass
class World:
    """What the module shares: the fake W&B, S3 on moto, the http references' server and a
    directory for the scripts' homes."""

    fake: FakeWandb
    s3: S3
    refs: ReferenceServer
    root: Path
    # Every script's stdout and stderr.
    outputs: list[str] = field(default_factory=list, repr=False)

    def env(self, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A script's environment: talks to the fake, keeps its files (cache, staging,
        config) under `home`, reaches S3 at moto with the role's credentials, and takes
        nothing from the developer's AWS setup."""
        env = {k: v for k, v in wandb_env(self.fake, home).items() if not k.startswith("AWS_")}
        env.update(
            WANDB_CACHE_DIR=str(home / "cache"),
            WANDB_DATA_DIR=str(home / "data"),
            WANDB_CONFIG_DIR=str(home / "config"),
            TMPDIR=str(home / "tmp"),
            AWS_ENDPOINT_URL=self.s3.moto.url,
            AWS_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(home / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
            **self.s3.credentials,
            **(extra or {}),
        )
        return env

    def run(
        self, sdk: str, home: Path, body: str, *args: str, env: dict[str, str] | None = None
    ) -> Any:
        """`body` under the official SDK or ours (``import ... as wandb``) in a subprocess
        with home and working directory `home`; it must succeed. Returns its RESULT."""
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        script = home / "script.py"
        script.write_text(f"import {SDKS[sdk]} as wandb\n{body}")
        cmd = [sys.executable, str(script), *args]
        result = run_isolated(cmd, self.env(home, env), 120, cwd=home)
        self.outputs += [result.stdout, result.stderr]
        assert result.returncode == 0, f"{sdk}:\n{result.stdout}\n{result.stderr}"
        (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        return json.loads(line.removeprefix("RESULT "))

    def log(self, sdk: str, project: str, mode: str) -> Logged:
        home = self.root / project
        # Offline, wandb writes the entity it was given into the artifact record, and `wandb
        # sync` uploads the artifact under that (an empty one when none was given: refused).
        env = {"WANDB_ENTITY": DEFAULT_ENTITY} if mode == "offline" else {}
        got = self.run(sdk, home, LOG_SCRIPT, self.refs.url, project, mode, env=env)
        return Logged(sdk, project, home, got)


@dataclass
class Logged:
    """What LOG_SCRIPT did under `sdk` in project `project`, from `home`."""

    sdk: str
    project: str
    home: Path
    got: dict[str, Any]

    @property
    def home_uri(self) -> str:
        return self.home.resolve().as_uri()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    refs = ReferenceServer()
    try:
        with s3_with_iam() as s3, FakeWandb() as fake:
            yield World(fake, s3, refs, tmp_path_factory.mktemp("artifacts"))
        assert fake.internal_errors == []
    finally:
        refs.stop()


class Once:
    """Runs `make(sdk)` once per SDK and keeps the outcome, a failure included (every test
    that needs it then fails with it)."""

    def __init__(self, make: Callable[[str], Any]) -> None:
        self.make = make
        self.done: dict[str, tuple[bool, Any]] = {}

    def __call__(self, sdk: str) -> Any:
        if sdk not in self.done:
            try:
                self.done[sdk] = (True, self.make(sdk))
            except Exception as err:  # kept, and raised to each test
                self.done[sdk] = (False, err)
        ok, value = self.done[sdk]
        if not ok:
            raise value
        return value


@pytest.fixture(scope="module")
def online(world: World) -> Once:
    """LOG_SCRIPT online, once per SDK, in project "online-<sdk>"."""
    return Once(lambda sdk: world.log(sdk, f"online-{sdk}", "online"))


# --------------------------------------------------------------------------- views


def entry_view(entry: dict[str, Any], home_uri: str) -> dict[str, Any]:
    """A manifest entry as it counts: digest, size, ref and extra. A reference without a size
    may say so with 0 (wandb-core) or no size (the Python SDK); the writer's home in file://
    refs is "<home>", and a digest that is the MD5 of its file:// ref (an unchecked one)
    "md5(<ref>)"."""
    ref = entry.get("ref")
    digest = entry["digest"]
    size = entry.get("size")
    if ref is not None:
        size = size or 0
        if ref.startswith("file://") and digest == b64md5(ref.encode()):
            digest = "md5(<ref>)"
        if home_uri:
            ref = ref.replace(home_uri, "<home>")
    return {"digest": digest, "size": size, "ref": ref, "extra": entry.get("extra") or {}}


def version_view(artifact: ArtifactState, home_uri: str) -> dict[str, Any]:
    contents = (artifact.manifest or {}).get("contents", {})
    return {
        "state": artifact.state,
        "version": artifact.version,
        "type": artifact.type,
        "aliases": sorted(artifact.aliases),
        "tags": sorted(artifact.tags),
        "description": artifact.description,
        "metadata": artifact.metadata,
        "logged_by": artifact.logged_by,
        "entries": {path: entry_view(e, home_uri) for path, e in contents.items()},
        "files": dict(artifact.files),
    }


def project_view(fake: FakeWandb, project: str, home_uri: str) -> dict[str, list[dict]]:
    """Every artifact (PENDING ones too) of `project`, by collection name, versions in order."""
    found: dict[str, list[ArtifactState]] = {}
    for artifact in fake.artifacts():
        if (artifact.entity, artifact.project) == (DEFAULT_ENTITY, project):
            found.setdefault(artifact.name, []).append(artifact)
    return {
        name: [
            version_view(a, home_uri)
            for a in sorted(versions, key=lambda a: (a.version_index is None, a.version_index))
        ]
        for name, versions in sorted(found.items())
    }


def stored(data: bytes) -> dict[str, Any]:
    return {"digest": b64md5(data), "size": len(data), "ref": None, "extra": {}}


def reference(ref: str, digest: str, size: int, **extra: str) -> dict[str, Any]:
    return {"digest": digest, "size": size, "ref": ref, "extra": extra}


def s3_reference(bucket: str, key: str, data: bytes, **extra: str) -> dict[str, Any]:
    return reference(f"s3://{bucket}/{key}", md5_hex(data), len(data), etag=md5_hex(data), **extra)


def unchecked(ref: str) -> dict[str, Any]:
    return reference(ref, ref, 0)


def source(path: str) -> bytes:
    return SOURCES[path].encode()


TMP_NAME = md5_hex(source("model.ckpt"))[:20] + ".ckpt"  # add_file(is_tmp=True)

# The files of "ds" v0 as stored (uploaded), by entry path.
DS_FILES = {
    "top/local.txt": source("local.txt"),  # as added, not as changed afterwards
    TMP_NAME: source("model.ckpt"),
    "frozen.txt": source("frozen.txt"),
    "cached.txt": source("cached.txt"),
    "tree/a.txt": source("src/a.txt"),
    "tree/sub/b.txt": source("src/sub/b.txt"),
    "a.txt": source("src/a.txt"),
    "sub/b.txt": source("src/sub/b.txt"),
    "made/new.txt": NEW_TEXT.encode(),
    "made/raw.bin": RAW,
}


def ds_references(http_url: str, version_id: str) -> dict[str, dict[str, Any]]:
    data, _ = HTTP_FILES["/data.bin"]
    return {
        "data.bin": reference(
            f"{http_url}/data.bin", md5_hex(data), len(data), etag=f'"{md5_hex(data)}"'
        ),
        "web/plain.txt": unchecked(f"{http_url}/plain.txt"),
        # Checked, but the server sends no ETag: the URL is the digest, the size is known.
        "web/plain-checked.txt": reference(f"{http_url}/plain.txt", f"{http_url}/plain.txt", 11),
        **{
            f"fileref/{path}": reference(
                f"<home>/refs/{name}", b64md5(source(f"refs/{name}")), len(source(f"refs/{name}"))
            )
            for path, name in (
                ("referenced.txt", "referenced.txt"),
                ("dir/r1.txt", "dir/r1.txt"),
                ("dir/deeper/r2.txt", "dir/deeper/r2.txt"),
            )
        },
        "obj.bin": s3_reference("bkt", "obj.bin", S3_OBJECTS["bkt"]["obj.bin"]),
        "s3dir/a.txt": s3_reference("bkt", "dir/a.txt", S3_OBJECTS["bkt"]["dir/a.txt"]),
        "s3dir/sub/b.txt": s3_reference("bkt", "dir/sub/b.txt", S3_OBJECTS["bkt"]["dir/sub/b.txt"]),
        "versioned.txt": s3_reference("vbkt", "v.txt", VERSIONED[-1], versionID=version_id),
    }


def unchecked_references(http_url: str) -> dict[str, dict[str, Any]]:
    def file_ref(path: str) -> dict[str, Any]:
        # The digest is the MD5 of the URI, but the size is the file's.
        return reference(f"<home>/refs/{path}", "md5(<ref>)", len(source(f"refs/{path}")))

    return {
        "file.txt": file_ref("referenced.txt"),
        "dir/r1.txt": file_ref("dir/r1.txt"),
        "dir/deeper/r2.txt": file_ref("dir/deeper/r2.txt"),
        "s3.bin": unchecked("s3://bkt/obj.bin"),
        "s3dir": unchecked("s3://bkt/dir"),
        "private.txt": unchecked("s3://private/secret.txt"),
        "h.bin": unchecked(f"{http_url}/data.bin"),
        "custom/x": unchecked("custom://thing/x"),
    }


def expected_view(http_url: str, version_id: str) -> dict[str, list[dict[str, Any]]]:
    """What LOG_SCRIPT must leave on the server."""

    def version(
        number: int,
        type_: str,
        files: dict[str, bytes],
        references: dict[str, dict[str, Any]] | None = None,
        aliases: tuple[str, ...] = ("latest",),
        **fields: Any,
    ) -> dict[str, Any]:
        return {
            "state": "COMMITTED",
            "version": f"v{number}",
            "type": type_,
            "aliases": sorted(aliases),
            "tags": sorted(fields.get("tags", [])),
            "description": fields.get("description"),
            "metadata": fields.get("metadata"),
            "logged_by": ["writer"],
            "entries": {
                **{path: stored(data) for path, data in files.items()},
                **(references or {}),
            },
            "files": files,
        }

    return {
        "ds": [
            version(
                0,
                "dataset",
                DS_FILES,
                ds_references(http_url, version_id),
                aliases=("exp-1",),  # "best" and "latest" moved on to v1
                tags=["raw", "first cut"],
                description="the dataset",
                metadata=DS_METADATA,
            ),
            version(1, "dataset", {"only.txt": b"version one\n"}, aliases=("best", "latest")),
        ],
        "named-weights": [
            version(
                0,
                "model",
                {"weights.bin": source("weights.bin")},
                aliases=("latest", "prod"),
                tags=["t"],
            )
        ],
        "run-writer-pathdir": [
            version(
                0,
                "unspecified",
                {"p.txt": source("pathdir/p.txt"), "q/r.txt": source("pathdir/q/r.txt")},
            )
        ],
        "run-writer-weights.bin": [
            version(0, "unspecified", {"weights.bin": source("weights.bin")})
        ],
        "unchecked": [version(0, "refs", {}, unchecked_references(http_url))],
    }


def assert_logged_as_expected(world: World, logged: Logged, official: Logged | None) -> None:
    """The fake holds what LOG_SCRIPT logged in `logged.project`; and, for ours, what the
    official SDK left in `official.project`."""
    view = project_view(world.fake, logged.project, logged.home_uri)
    assert view == expected_view(world.refs.url, world.s3.version_id)
    if official is not None:
        assert view == project_view(world.fake, official.project, official.home_uri)


def assert_no_secret_in(world: World, where: dict[str, bytes | str]) -> None:
    for name, text in where.items():
        data = text.encode() if isinstance(text, str) else text
        for secret in world.s3.secrets:
            assert secret.encode() not in data, f"an AWS secret is in {name}"


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- online


@pytest.mark.parametrize("sdk", SDKS)
def test_logged_online_arrives_committed_as_wandb_logs_it(
    world: World, online: Once, sdk: str
) -> None:
    """Every artifact LOG_SCRIPT logs arrives COMMITTED with the entries (path, digest, size,
    ref, extra), stored bytes, type, description, metadata, tags, aliases and version numbers
    the sources call for; ours with exactly what the official SDK left."""
    logged = online(sdk)
    assert_logged_as_expected(world, logged, online("official") if sdk == "nexus" else None)


@pytest.mark.parametrize("sdk", SDKS)
def test_staged_files_are_uploaded_as_they_were_added(world: World, online: Once, sdk: str) -> None:
    """policy="mutable": files are copied when added, so a file changed after add_file (or
    after log_artifact) is uploaded as it was; the artifact digest known before logging is
    the one the server got. Once uploaded, the copies are gone (as wandb removes them): the
    script left nothing in its home (the staging and temporary directories are there) but
    its sources, the run's directory and the artifact cache."""
    logged = online(sdk)
    left = sorted(
        str(path.relative_to(logged.home))
        for path in logged.home.rglob("*")
        if path.is_file() and path.relative_to(logged.home).parts[0] not in ("wandb", "cache")
    )
    assert left == sorted(["script.py", *SOURCES])
    (v0, _) = world.fake.collection(DEFAULT_ENTITY, logged.project, "ds").versions
    assert (logged.home / "local.txt").read_text() == CHANGED
    assert v0.files["top/local.txt"] == source("local.txt")
    assert (logged.home / "src/sub/b.txt").read_text() == "changed after log_artifact\n"
    assert v0.files["tree/sub/b.txt"] == v0.files["sub/b.txt"] == source("src/sub/b.txt")
    assert logged.got["ds"] == ["ds", "dataset", "the dataset", DS_METADATA, v0.digest]
    (unchecked_v0,) = world.fake.collection(DEFAULT_ENTITY, logged.project, "unchecked").versions
    assert logged.got["unchecked"] == unchecked_v0.digest


@pytest.mark.parametrize("sdk", SDKS)
def test_entries_read_back_and_path_names(world: World, online: Once, sdk: str) -> None:
    """get_entry gives each entry's path, digest, size and ref as the manifest has them; a
    path given to log_artifact names the artifact run-<run id>-<basename>, type
    "unspecified", unless name and type are given."""
    logged = online(sdk)
    (v0, _) = world.fake.collection(DEFAULT_ENTITY, logged.project, "ds").versions
    contents = v0.manifest["contents"]

    def counted(path: str, digest: str, size: int | None, ref: str | None) -> list[Any]:
        return [path, digest, (size or 0) if ref else size, ref]  # see entry_view

    got = {path: counted(*entry) for path, entry in logged.got["entries"].items()}
    entries = {
        path: counted(path, e["digest"], e.get("size"), e.get("ref"))
        for path, e in contents.items()
        if path in ENTRY_PATHS
    }
    assert sorted(got) == sorted(ENTRY_PATHS) and got == entries
    assert logged.got["by path"] == [
        ["run-writer-weights.bin", "unspecified"],
        ["run-writer-pathdir", "unspecified"],
        ["named-weights", "model"],
    ]


@pytest.mark.parametrize("sdk", SDKS)
def test_references_reach_s3_signed_and_http_without_the_key(
    world: World, online: Once, sdk: str
) -> None:
    """The S3 references were read with the role's credentials from moto (which checks
    signatures and the policy: the ETags, sizes and version id could come from nowhere else);
    the http references' host never saw W&B's key; no AWS secret reached W&B, the run's files
    or the script's output."""
    logged = online(sdk)
    (v0, _) = world.fake.collection(DEFAULT_ENTITY, logged.project, "ds").versions
    entries = v0.manifest["contents"]
    assert entries["versioned.txt"]["extra"]["versionID"] == world.s3.version_id
    assert entries["s3dir/sub/b.txt"]["digest"] == md5_hex(b"s3 b\n")
    assert not any("authorization" in headers for _, _, headers in world.refs.requests)
    sent = {f"request {i}": repr(r.body) for i, r in enumerate(world.fake.requests)}
    assert_no_secret_in(world, {**sent, **files_under(logged.home / "wandb")})
    assert_no_secret_in(world, {f"output {i}": out for i, out in enumerate(world.outputs)})


def test_ours_logs_what_the_official_sdk_logs(world: World, online: Once) -> None:
    """Side by side: everything the fake holds of ours equals the official SDK's."""
    official, ours = online("official"), online("nexus")
    assert project_view(world.fake, ours.project, ours.home_uri) == project_view(
        world.fake, official.project, official.home_uri
    )
    # What the scripts printed: the same, but for the digest of "unchecked" (MD5s of file://
    # URIs under each writer's own home), the writer's home in file:// refs, and a
    # reference's missing size, None or 0 (wandb says None before logging, 0 after).
    printed = {}
    for logged in (official, ours):
        got = copy.deepcopy(logged.got)
        del got["unchecked"]
        for entry in got["entries"].values():
            if entry[3] is not None:
                entry[2] = entry[2] or 0
                entry[3] = entry[3].replace(logged.home_uri, "<home>")
        printed[logged.sdk] = got
    assert printed["nexus"] == printed["official"]


# --------------------------------------------------------------------------- read back


def expected_download(http_url: str) -> dict[str, dict[str, str]]:
    """What the official SDK downloads of each artifact LOG_SCRIPT logged, as hex."""
    ds = {
        **DS_FILES,
        "data.bin": HTTP_FILES["/data.bin"][0],
        "web/plain.txt": HTTP_FILES["/plain.txt"][0],
        "web/plain-checked.txt": HTTP_FILES["/plain.txt"][0],
        "fileref/referenced.txt": source("refs/referenced.txt"),
        "fileref/dir/r1.txt": source("refs/dir/r1.txt"),
        "fileref/dir/deeper/r2.txt": source("refs/dir/deeper/r2.txt"),
        "obj.bin": S3_OBJECTS["bkt"]["obj.bin"],
        "s3dir/a.txt": S3_OBJECTS["bkt"]["dir/a.txt"],
        "s3dir/sub/b.txt": S3_OBJECTS["bkt"]["dir/sub/b.txt"],
        "versioned.txt": VERSIONED[-1],  # the version recorded, by its id
    }
    weights = {"weights.bin": source("weights.bin")}
    pathdir = {"p.txt": source("pathdir/p.txt"), "q/r.txt": source("pathdir/q/r.txt")}
    trees = {"ds": ds, "v1": {"only.txt": b"version one\n"}, "weights": weights, "dir": pathdir}
    return {name: {p: data.hex() for p, data in tree.items()} for name, tree in trees.items()}


@pytest.mark.parametrize("sdk", SDKS)
def test_the_official_sdk_downloads_what_was_logged(world: World, online: Once, sdk: str) -> None:
    """The official SDK, in a process of its own, downloads the logged artifacts with
    wandb.Api() and through run.use_artifact(...).download(): every stored file and every
    checked reference (S3 through boto3 from moto, http from its host, file:// from the
    writer's disk) byte for byte."""
    logged = online(sdk)
    home = world.root / f"reader-{sdk}"
    got = world.run("official", home, DOWNLOAD_SCRIPT, DEFAULT_ENTITY, logged.project)
    want = expected_download(world.refs.url)
    assert got == {
        "ds:v0": ["v0", "dataset", want["ds"]],
        "run-writer-weights.bin:v0": ["v0", "unspecified", want["weights"]],
        "run-writer-pathdir:latest": ["v0", "unspecified", want["dir"]],
        "named-weights:prod": ["v0", "model", want["weights"]],
        "used ds:exp-1": ["v0", os.path.join("artifacts", "ds:v0"), want["ds"]],
        "used ds:best": ["v1", os.path.join("artifacts", "ds:v1"), want["v1"]],
    }
    v0, v1 = world.fake.collection(DEFAULT_ENTITY, logged.project, "ds").versions
    assert v0.used_by == v1.used_by == [(DEFAULT_ENTITY, logged.project, "reader")]


# --------------------------------------------------------------------------- offline


def log_offline(world: World, sdk: str, project: str) -> Logged:
    """LOG_SCRIPT offline; then every source file it staged is changed, so that a sync that
    read the sources instead of the staged copies would upload something else (or fail the
    upload's MD5). The immutable file is left alone: that policy promises it stays."""

    def sent() -> list[Any]:
        # Not the telemetry probes (404) an earlier official process may still be sending.
        return [r for r in world.fake.requests if r.kind != "unknown"]

    before = len(sent())
    logged = world.log(sdk, project, "offline")
    assert len(sent()) == before  # offline: nothing was sent
    for path in ("local.txt", "model.ckpt", "cached.txt", "src/a.txt", "src/sub/b.txt"):
        (logged.home / path).write_text("changed before the sync\n")
    return logged


def our_sync(world: World, run_dir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m wandb_nexus sync <run_dir>`` against the fake; it must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "AWS_"))}
    env.update(WANDB_BASE_URL=world.fake.base_url, WANDB_API_KEY=world.fake.api_key)
    env["HOME"] = str(run_dir.parent)
    cmd = [sys.executable, "-m", "wandb_nexus", "sync", str(run_dir)]
    out = run_isolated(cmd, env, 120, cwd=run_dir.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.mark.parametrize("sdk", SDKS)
def test_offline_then_official_sync_arrives_as_online(world: World, sdk: str) -> None:
    """The same script offline, uploaded by the official `wandb sync`: every artifact arrives
    committed with the same contents as online, read from the staged copies (the record's
    local_path), which must still be there."""
    logged = log_offline(world, sdk, f"offline-{sdk}")
    (run_dir,) = (logged.home / "wandb").glob("offline-run-*")
    wandb_sync(run_dir, world.fake)
    assert_logged_as_expected(world, logged, None)
    assert_no_secret_in(world, files_under(run_dir))


def test_offline_then_our_sync_arrives_as_online(world: World) -> None:
    """Ours offline, uploaded by our own sync: the same as the official `wandb sync` makes of
    the official SDK's offline run; a second sync changes nothing."""
    logged = log_offline(world, "nexus", "offline-nexus-own-sync")
    (run_dir,) = (logged.home / "wandb").glob("offline-run-*")
    out = our_sync(world, run_dir)
    assert "synced to" in out.stdout, out.stdout
    assert_logged_as_expected(world, logged, None)
    before = copy.deepcopy(project_view(world.fake, logged.project, logged.home_uri))
    again = our_sync(world, run_dir)
    assert "already synced" in again.stdout, again.stdout
    assert project_view(world.fake, logged.project, logged.home_uri) == before


# --------------------------------------------------------------------------- bad input


def refusal(got: dict[str, Any], case: str) -> tuple[list[str], str]:
    """The exception `case` raised in BAD_INPUT_SCRIPT: its class names (MRO) and message."""
    outcome = got[case]
    assert isinstance(outcome, list), f"{case}: no error, {outcome!r}"
    return outcome[0], outcome[1]


def assert_refused(got: dict[str, Any], case: str, classes: tuple[str, ...], *names: str) -> None:
    """`case` raised an exception that is one of `classes` (or a subclass), whose message
    names each of `names`."""
    mro, message = refusal(got, case)
    assert any(c in mro for c in classes), f"{case}: raised {mro[0]}, not one of {classes}"
    for name in names:
        assert name in message, f"{case}: {message!r} does not name {name!r}"


@pytest.mark.parametrize("sdk", SDKS)
def test_bad_input_is_refused_clearly(world: World, sdk: str) -> None:
    """Each bad argument raises a clear exception where it is given, of the class wandb
    raises (ours: wandb_nexus.UsageError, a ValueError; a missing file or directory may be
    an OSError instead), naming what is wrong; nothing refused is logged, and no AWS secret
    is in any message."""
    project = f"bad-{sdk}"
    got = world.run(sdk, world.root / project, BAD_INPUT_SCRIPT, world.refs.url, project)
    nexus = sdk == "nexus"
    # What wandb raises, and what ours may raise instead: a UsageError for a bad argument,
    # for a file system problem that or an OSError (FileNotFoundError, IsADirectoryError...).
    usage = ("UsageError",) if nexus else ("ValueError",)
    path = ("ValueError", "OSError")[: 2 if nexus else 1]
    assert_refused(got, "missing file", path, "nope.txt")
    assert_refused(got, "directory to add_file", path, "a-directory")
    assert_refused(got, "missing directory", path, "nowhere")
    assert_refused(got, "path that does not exist", path, *(["nope.txt"] if nexus else []))
    assert_refused(got, "name with /", usage, "a/b")
    assert_refused(got, "name of 129", usage, "long-xxxx", "128")
    assert got["name of 128"] is None
    assert_refused(got, "type wandb-", usage, "wandb-history")
    assert_refused(got, "path with type wandb-", usage, "wandb-x")
    assert_refused(got, "unknown scheme without name", usage, "custom://x/y", "name")
    assert_refused(got, "other file under a taken name", usage, "taken.txt")
    # wandb's messages for aliases and tags name no value; ours name the one refused.
    for case, value in (
        ("alias with /", "a/b"),
        ("alias with :", "v:1"),
        ("tag with !", "bad!"),
        ("tag with a trailing space", "ab "),
    ):
        assert_refused(got, case, usage, *([value] if nexus else []))

    # S3, with checksum=True: wandb records a missing object, or a prefix with nothing under
    # it (S3 cannot tell the two apart), as no entry at all and no error; ours refuses both,
    # naming the URI. An object the role may not read: wandb raises CommError ("Unable to
    # connect to S3 (403)"); ours an error naming the URI.
    if nexus:
        assert_refused(got, "missing s3 object", path, "s3://bkt/nope.bin")
        assert_refused(got, "empty s3 prefix", path, "s3://bkt/nothing/")
        assert_refused(got, "denied s3 object", path, "s3://private/secret.txt")
    else:
        assert got["missing s3 object"] == got["empty s3 prefix"] == 0
        assert_refused(got, "denied s3 object", ("CommError",), "403")
    assert_no_secret_in(world, {case: json.dumps(outcome) for case, outcome in got.items()})

    # Only the valid log_artifact sent anything: one version, with its aliases and tags.
    assert got["good"] is None
    assert project_view(world.fake, project, "") == {
        "good": [
            {
                "state": "COMMITTED",
                "version": "v0",
                "type": "dataset",
                "aliases": ["fine", "latest"],
                "tags": ["two  words", "x-y_z"],
                "description": None,
                "metadata": None,
                "logged_by": ["bad"],
                "entries": {"f.txt": stored(b"f\n")},
                "files": {"f.txt": b"f\n"},
            }
        ]
    }


# --------------------------------------------------------------------------- failed upload


class RefusingStorage(FakeWandb):
    """The fake W&B whose storage refuses (403, as for a bad signature) every upload of the
    first artifact created, its files and its manifest; later artifacts upload normally."""

    def _upload(self, params: tuple[str, ...], raw: bytes, record: Any) -> tuple[int, Any]:
        if params[0] in ("artifact", "manifest") and params[1] == "1":
            raise HttpError(403, "refused: the signature does not match")
        return super()._upload(params, raw, record)


@pytest.mark.parametrize("sdk", SDKS)
def test_a_failed_upload_commits_nothing(world: World, sdk: str) -> None:
    """An artifact whose files cannot be uploaded is never committed (no CommitArtifact is
    even sent for it): wait() reports it; the run goes on and ends well, and the same content
    logged again afterwards becomes v0 with all its files."""
    home = world.root / f"fault-{sdk}"
    with RefusingStorage() as fake:
        script_world = World(fake, world.s3, world.refs, world.root)
        got = script_world.run(sdk, home, FAILED_UPLOAD_SCRIPT)
    assert fake.internal_errors == []

    failed, retried = fake.artifacts("fragile")
    assert (failed.number, failed.state, failed.version) == (1, "PENDING", None)
    commits = [
        r.body["variables"]["artifactID"] for r in fake.requests if r.operation == "CommitArtifact"
    ]
    assert failed.id not in commits
    assert (retried.state, retried.version, retried.aliases) == ("COMMITTED", "v0", ["latest"])
    assert retried.files == {"f.txt": b"payload\n", "g.txt": b"more\n"}
    state = fake.single_run()
    assert state.complete and state.exitcode == 0
    assert [row["after"] for row in state.history] == ["first", "second"]

    if got["first"] != "no wait()":
        assert got["first"] is not None, "wait() did not report the failed upload"
        mro, message = got["first"]
        if sdk == "official":
            assert "ValueError" in mro and "uploads (2/2) have failed" in message
        else:
            assert "fragile" in message, message
        assert got["second"] is None


# --------------------------------------------------------------------------- wait


@pytest.mark.parametrize("sdk", SDKS)
def test_wait_gives_the_saved_version(world: World, sdk: str) -> None:
    """artifact.wait() after run.log_artifact() returns the artifact once W&B holds it,
    now with W&B's version (v0, then v1 for the next), name ``name:v<N>``, aliases, entity,
    project and id (ArtifactByID, as wandb asks), and downloadable; before it is logged it
    raises. An offline run cannot use an artifact (a TypeError, as in wandb) nor wait for
    one (ours: an OfflineError naming it)."""
    with FakeWandb() as fake:
        script_world = World(fake, world.s3, world.refs, world.root)
        got = script_world.run(sdk, world.root / f"wait-{sdk}", WAIT_SCRIPT)
        (first, second) = fake.artifacts("waited")
    assert fake.internal_errors == []
    # Before it is saved: wandb raises, ours has no version yet.
    assert got["before"] == (None if sdk == "nexus" else "ArtifactNotLoggedError")
    assert got["returns it"] is True
    assert got["first"] == [
        "v0",
        "waited:v0",
        ["best", "latest"],
        first.entity,
        "waiting",
        first.id,
    ]
    assert got["second"] == ["v1", ["latest"]] and second.version == "v1"
    assert got["downloaded"] == ["a.txt"]
    assert [r.operation for r in fake.requests].count("ArtifactByID") >= 2
    assert got["not logged"] is not None
    use_offline, wait_offline = got["use offline"], got["wait offline"]
    assert use_offline is not None and "TypeError" in use_offline[0], use_offline
    assert wait_offline is not None, "wait() of an offline run's artifact did not raise"
    if sdk == "nexus":
        assert "OfflineError" in use_offline[0] and "waited:latest" in use_offline[1]
        assert "OfflineError" in wait_offline[0] and "kept" in wait_offline[1]


def test_a_single_tag_or_alias_string_is_one_item(tmp_path: Path) -> None:
    """log_artifact(aliases="best", tags="raw data") gives the artifact the one alias and the
    one tag, not one per character."""
    import wandb_nexus

    run = wandb_nexus.init(project="p", mode="offline", dir=str(tmp_path))
    art = wandb_nexus.Artifact("ds", type="dataset")
    with art.new_file("x.txt") as f:
        f.write("x")
    run.log_artifact(art, aliases="best", tags="raw data")
    run.finish()
    assert (art.aliases, art.tags) == (["latest", "best"], ["raw data"])
