"""Using and downloading artifacts, ours against the official SDK: ``run.use_artifact`` (and
``wandb.use_artifact``) by every name form, the properties of what it returns, the use
recorded on the server as lineage, ``download()``, ``file()`` and ``get_entry()``, the
download cache, integrity and free-space checks, and the memory a large download takes
(wandb-artifacts-resume.md §1.6-1.7).

The official SDK logs the artifacts once (fixture `logged`) on a fake W&B server
(fake_wandb.py, subclassed here as `Fake`), with S3 references on moto, which checks every
request's signature and IAM policy (a Lambda role's credentials, session token included), and
http and file:// references; ours logs the same "ds" in a project of its own. Readers then
run, one process each, under ``import wandb`` or ``import wandb_nexus as wandb``:

- "official": the official SDK reads what the official SDK logged (the expectations' proof);
- "nexus": ours reads what the official SDK logged (cross-reading);
- "nexus-reads-nexus": ours reads, in another process, what ours logged.

(wandb 0.31 ignores ``?versionId=`` in add_reference("s3://...") and records the newest
version, so versioned references are tested by a version written after logging.)

The cache, integrity, free-space and memory tests run for "official" and "nexus" on what the
official SDK logged; files fetched are counted in the fake's requests, split into phases by
marks the scripts send. Where the two SDKs legitimately differ, ours is held to its spec in the
nexus branch: exception classes (ours may raise wandb_nexus.CommError or UsageError) and the
checks the official SDK does not make (the bytes of a downloaded file against its digest; the
free space, checked before any file is fetched and named in the error). One test holds ours to
a wandb behaviour the spec left open: each download root gets files of its own
(`test_changes_at_one_root_do_not_reach_another`). Every reader script catches each step's
exception and reports it, so a test names the step that failed."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from test_artifacts import (
    HTTP_FILES,
    S3,
    S3_OBJECTS,
    SDKS,
    Once,
    ReferenceServer,
    World,
    b64md5,
    s3_with_iam,
)

from fake_wandb import DEFAULT_ENTITY, ArtifactState, FakeWandb, Request

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="the official wandb SDK is not installed"
)

ENTITY = DEFAULT_ENTITY

# --------------------------------------------------------------------------- the sources

# Files a writer finds in its home (written by the test before it starts), and what "ds" v0
# stores of them, by entry path.
SOURCES = {
    "local.txt": b"local file\n",
    "src/a.txt": b"tree a\n",
    "src/sub/b.txt": b"tree b\n",
    "src/sub/deeper/c.bin": bytes(range(256)) * 4,
    "refs/referenced.txt": b"referenced file\n",
    "refs/dir/r1.txt": b"ref one\n",
    "refs/dir/deeper/r2.txt": b"ref two\n",
    "weights.bin": b"single weights\n",
}
NEW_TEXT = "new file \u00e9\n"
DS_STORED = {
    "top/local.txt": SOURCES["local.txt"],
    "tree/a.txt": SOURCES["src/a.txt"],
    "tree/sub/b.txt": SOURCES["src/sub/b.txt"],
    "tree/sub/deeper/c.bin": SOURCES["src/sub/deeper/c.bin"],
    "made/new.txt": NEW_TEXT.encode(),
}
# The references of "ds" v0 as downloaded: http (with an ETag, and one unchecked), file://
# (a file and a directory of the writer's home), S3 (an object, a prefix, and an object of a
# versioned bucket that gets a newer version after logging: the version logged is the one
# downloaded, by its versionId).
DS_REFERENCED = {
    "data.bin": HTTP_FILES["/data.bin"][0],
    "web/plain.txt": HTTP_FILES["/plain.txt"][0],
    "fileref/referenced.txt": SOURCES["refs/referenced.txt"],
    "fileref/dir/r1.txt": SOURCES["refs/dir/r1.txt"],
    "fileref/dir/deeper/r2.txt": SOURCES["refs/dir/deeper/r2.txt"],
    "obj.bin": S3_OBJECTS["bkt"]["obj.bin"],
    "s3dir/a.txt": S3_OBJECTS["bkt"]["dir/a.txt"],
    "s3dir/sub/b.txt": S3_OBJECTS["bkt"]["dir/sub/b.txt"],
    "versioned.txt": b"versioned: as logged\n",
}
DS_V0 = {**DS_STORED, **DS_REFERENCED}
DS_V1 = {"only.txt": b"version one\n"}
DS_METADATA = {"rows": 3, "ratio": 0.5, "nested": {"list": [1, "x", None], "flag": True}}
FAR = {"far.txt": b"far away\n"}  # "ds" of project "elsewhere"
SINGLE = {"weights.bin": SOURCES["weights.bin"]}
NEWER_VERSION = b"versioned: newer\n"  # written to the versioned object after logging
DRIFT_BEFORE, DRIFT_AFTER = b"drift: as logged\n", b"drift: changed since\n"
ENTRY_PATHS = (
    "tree/sub/b.txt",
    "s3dir/sub/b.txt",
    "versioned.txt",
    "data.bin",
    "fileref/dir/r1.txt",
)

# Only the official writer logs these, in project "src", for the cache, integrity, space and
# memory tests.
CACHED = {
    "x.txt": b"cached x\n",
    "sub/y.txt": b"cached y\n",
    "sub/deeper/z.bin": bytes(range(255, -1, -1)) * 16,
    "w.txt": b"cached w\n",
}
BAD = hashlib.shake_256(b"fragile").digest(1 << 16)  # "deep/bad.bin": served corrupted
FLIP = len(BAD) // 2
CORRUPTED = BAD[:FLIP] + bytes([BAD[FLIP] ^ 0xFF]) + BAD[FLIP + 1 :]  # same size
FRAGILE = {"good.txt": b"good\n", "deep/bad.bin": BAD}
HUGE = {"small.txt": b"small\n", "claimed.bin": b"claimed\n"}
CLAIMED_SIZE = 1 << 50  # what the manifest of "huge" is made to claim for claimed.bin: 1 PiB
BIG_SIZE = 100 * 1024 * 1024
MEMORY_BUDGET_KIB = 60 * 1024  # peak RSS growth allowed while downloading BIG_SIZE bytes

EXTRA_SOURCES = {
    **{f"cached/{p}": data for p, data in CACHED.items()},
    **{f"fragile/{p}": data for p, data in FRAGILE.items()},
    **{f"huge/{p}": data for p, data in HUGE.items()},
    "far.txt": FAR["far.txt"],
}

# Logs, as run "writer" of project argv[2]: "ds" v0 (files, directories, a new file, metadata,
# description, tags, aliases best and exp-1; references of every kind) and v1 (aliases best and
# latest move to it), "single" (one file), "typed" (type model) and "drifting" (an S3 object
# that changes after logging, argv[4]). argv[1]: the http server; argv[3]: the key of the
# object of bucket vbkt (versioned) that "ds" v0 refers to. With argv[5] == "full" also
# "cached", "fragile", "huge" and "big" (a file of BIG_SIZE bytes the test wrote), and, as run
# "writer-far" of project "elsewhere", another "ds".
WRITE_SCRIPT = f"""
import json
import sys
from pathlib import Path

http, project, versioned_key, drift_key, full = sys.argv[1:6]
here = Path.cwd().as_uri()

run = wandb.init(project=project, id="writer")
ds = wandb.Artifact("ds", type="dataset", description="the dataset", metadata={DS_METADATA!r})
ds.add_file("local.txt", name="top/local.txt")
ds.add_dir("src", name="tree")
with ds.new_file("made/new.txt", encoding="utf-8") as f:
    f.write({NEW_TEXT!r})
ds.add_reference(http + "/data.bin")
ds.add_reference(http + "/plain.txt", name="web/plain.txt", checksum=False)
ds.add_reference(here + "/refs/referenced.txt", name="fileref/referenced.txt")
ds.add_reference(here + "/refs/dir", name="fileref/dir")
ds.add_reference("s3://bkt/obj.bin")
ds.add_reference("s3://bkt/dir", name="s3dir")
ds.add_reference("s3://vbkt/" + versioned_key, name="versioned.txt")
run.log_artifact(ds, aliases=["best", "exp-1"], tags=["raw", "first cut"])

v1 = wandb.Artifact("ds", type="dataset")
with v1.new_file("only.txt") as f:
    f.write("version one\\n")
run.log_artifact(v1, aliases=["best"])

single = wandb.Artifact("single", type="model")
single.add_file("weights.bin")
run.log_artifact(single)
typed = wandb.Artifact("typed", type="model")
with typed.new_file("t.txt") as f:
    f.write("typed\\n")
run.log_artifact(typed)
drifting = wandb.Artifact("drifting", type="dataset")
drifting.add_reference("s3://bkt/" + drift_key, name="drift.txt")
run.log_artifact(drifting)

if full == "full":
    for name in ("cached", "fragile", "huge"):
        art = wandb.Artifact(name, type="dataset")
        art.add_dir(name)
        run.log_artifact(art)
    big = wandb.Artifact("big", type="dataset")
    big.add_file("big.bin")
    run.log_artifact(big)
run.finish()

if full == "full":
    far = wandb.init(project="elsewhere", id="writer-far")
    art = wandb.Artifact("ds", type="dataset")
    art.add_file("far.txt")
    far.log_artifact(art)
    far.finish()
print("RESULT", json.dumps(None))
"""

# What every reader script starts with: `step` (runs a call and keeps its value as {"ok":
# value}, or the exception it raised as {"error": [class names of its MRO, message]}), `tree`
# (a directory as {path: hex}, or its paths only), `mark` (a request the fake records, to
# split what a process sent into phases), `control("heal")` (the fake stops corrupting) and
# `finish` (prints RESULT and what the steps got).
READER_PRELUDE = """
import json
import os
import sys
import urllib.request

BASE_URL = os.environ["WANDB_BASE_URL"]
got = {}


def failure(err):
    return {"error": [[c.__name__ for c in type(err).__mro__], str(err)]}


def step(label, call):
    try:
        got[label] = {"ok": call()}
    except Exception as err:
        got[label] = failure(err)
    return got[label].get("ok")


def tree(root, contents=True):
    found = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = os.path.join(parent, name)
            key = os.path.relpath(path, root).replace(os.sep, "/")
            if contents:
                with open(path, "rb") as f:
                    found[key] = f.read().hex()
            else:
                found[key] = None
    return found if contents else sorted(found)


def fetched(root):
    return [root, tree(root)]


def control(what):
    urllib.request.urlopen(BASE_URL + "/test/" + what).read()


def mark(label):
    control("mark/" + label)


def finish():
    print("RESULT", json.dumps(got, default=repr))
"""

PROPS = (
    "name",
    "type",
    "version",
    "aliases",
    "tags",
    "digest",
    "metadata",
    "description",
    "size",
    "id",
    "entity",
    "project",
    "qualified_name",
)

# Successful uses: label -> (name, type, through wandb.use_artifact rather than the run's,
# (project, collection, version index) it stands for). "{entity}" and "{project}" are the
# reader's.
USES: dict[str, tuple[str, str | None, bool, tuple[str, str, int]]] = {
    "alias": ("ds:best", None, False, ("{project}", "ds", 1)),
    "version, typed": ("ds:v0", "dataset", False, ("{project}", "ds", 0)),
    "bare name": ("ds", None, False, ("{project}", "ds", 1)),
    "module level": ("ds:exp-1", None, True, ("{project}", "ds", 0)),
    "project/name": ("elsewhere/ds:latest", None, False, ("elsewhere", "ds", 0)),
    "entity/project/name": ("{entity}/elsewhere/ds:v0", "dataset", False, ("elsewhere", "ds", 0)),
    "single": ("single:latest", "model", False, ("{project}", "single", 0)),
    "drifting": ("drifting:latest", None, False, ("{project}", "drifting", 0)),
}
# Uses that must fail: label -> (name, type).
FAILS: dict[str, tuple[str, str | None]] = {
    "wrong type": ("typed:latest", "dataset"),
    "missing version": ("ds:v9", None),
    "missing collection": ("nope:latest", None),
    "missing project": ("{entity}/nowhere/ds:v0", None),
}

# argv: entity, project, run id, USES and FAILS as JSON, ENTRY_PATHS as JSON.
READ_SCRIPT = (
    READER_PRELUDE
    + """
entity, project, run_id = sys.argv[1:4]
uses, fails, entry_paths = (json.loads(arg) for arg in sys.argv[4:7])
PROPS = __PROPS__
run = wandb.init(project=project, id=run_id)
used = {}


def props(art):
    found = {}
    for name in PROPS:
        try:
            found[name] = getattr(art, name)
        except Exception as err:
            found[name] = failure(err)
    return found


def use(name, type_, module_level):
    call = wandb.use_artifact if module_level else run.use_artifact
    name = name.format(entity=entity, project=project)
    return call(name, type=type_) if type_ else call(name)


for label, (name, type_, module_level, _) in uses.items():
    art = step("use " + label, lambda: use(name, type_, module_level))
    if art is not None:
        used[label] = art
        got["use " + label] = {"ok": props(art)}
for label, (name, type_) in fails.items():
    step(label, lambda: use(name, type_, False) and None)

step("download", lambda: fetched(used["module level"].download(root=os.path.join("dl", "v0"))))
step("default root", lambda: fetched(used["alias"].download()))


def read_file(path):
    with open(path, "rb") as f:
        return [str(path), f.read().hex()]


step("file", lambda: read_file(used["single"].file()))
step("file with root", lambda: read_file(used["single"].file(root="f")))


def entry(path):
    e = used["module level"].get_entry(path)
    return [e.path, e.digest, e.size, e.ref]


step("entries", lambda: {path: entry(path) for path in entry_paths})
step("no such entry", lambda: entry("nope.txt") and None)
step("drift", lambda: used["drifting"].download(root="drift") and None)
got["drift left"] = tree("drift", contents=False)
run.finish()
finish()
""".replace("__PROPS__", repr(PROPS))
)

# The official SDK's public API: the artifacts run argv[1] used, as [name, project].
USED_ARTIFACTS_SCRIPT = """
import json
import sys

used = wandb.Api().run(sys.argv[1]).used_artifacts()
print("RESULT", json.dumps(sorted([a.name, a.project] for a in used)))
"""

# Cache, first process (argv: run id, mark prefix): "cached" downloaded to a, then to b; files
# of b changed by the user; downloaded to b again; what a holds then.
CACHE_FIRST_SCRIPT = (
    READER_PRELUDE
    + """
import time

run_id, tag = sys.argv[1:3]
run = wandb.init(project="src", id=run_id)
art = run.use_artifact("cached:latest")
mark(tag + "-first")
step("a", lambda: fetched(art.download(root="a")))
mark(tag + "-second")
step("b", lambda: fetched(art.download(root="b")))
mark(tag + "-changes")
time.sleep(0.05)  # the user's changes come later than the download
with open(os.path.join("b", "x.txt"), "r+b") as f:
    f.write(b"CHANGED!")  # the same size
with open(os.path.join("b", "sub", "y.txt"), "ab") as f:
    f.write(b"appended\\n")
os.remove(os.path.join("b", "sub", "deeper", "z.bin"))
step("b again", lambda: fetched(art.download(root="b")))
run.finish()
finish()
"""
)

# Cache, second process ("a second cold start", argv: run id, mark prefix): the same cache,
# another home; download() to its default root (WANDB_ARTIFACT_DIR is set).
CACHE_SECOND_SCRIPT = (
    READER_PRELUDE
    + """
run_id, tag = sys.argv[1:3]
run = wandb.init(project="src", id=run_id)
art = run.use_artifact("cached:latest")
mark(tag + "-cold")
step("default root", lambda: fetched(art.download()))
run.finish()
finish()
"""
)

# Integrity (argv: run id): "fragile" while the fake corrupts deep/bad.bin, then again once
# it no longer does.
CORRUPT_SCRIPT = (
    READER_PRELUDE
    + """
run_id = sys.argv[1]
run = wandb.init(project="src", id=run_id)
art = run.use_artifact("fragile:latest")
step("corrupted", lambda: art.download(root="dl") and None)
got["left"] = tree("dl", contents=False)
control("heal")
step("healed", lambda: fetched(art.download(root="dl")))
run.finish()
finish()
"""
)

# Free space (argv: run id): "huge", whose manifest claims CLAIMED_SIZE bytes for a file.
SPACE_SCRIPT = (
    READER_PRELUDE
    + """
run_id = sys.argv[1]
run = wandb.init(project="src", id=run_id)
art = run.use_artifact("huge:latest")
step("download", lambda: art.download(root="dl") and None)
got["left"] = tree("dl", contents=False)
run.finish()
finish()
"""
)

# Memory (argv: run id): the process's peak RSS (KiB) once "big" is resolved, and after its
# download; then the file's size and MD5. The peak is VmHWM, not getrusage's ru_maxrss: Linux
# keeps ru_maxrss across execve, so a child of pytest starts with pytest's RSS as its peak
# (hundreds of MB, the fake's copy of "big" included) and a download that held the whole file
# in memory would not show.
MEMORY_SCRIPT = (
    READER_PRELUDE
    + """
import hashlib


def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


run_id = sys.argv[1]
run = wandb.init(project="src", id=run_id)
art = run.use_artifact("big:latest")
got["baseline"] = peak()
root = step("download", lambda: art.download(root="dl"))
got["peak"] = peak()


def digest(path):
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
    return [os.path.getsize(path), md5.hexdigest()]


step("file", lambda: digest(os.path.join(root, "big.bin")))
run.finish()
finish()
"""
)

# --------------------------------------------------------------------------- the world


class Fake(FakeWandb):
    """The fake W&B, and for the tests: GET /test/mark/<label> is answered 200 and only
    recorded (it splits what a process sent into phases); while `corrupt` holds bytes, an
    artifact file with exactly those bytes is served with one byte changed, by any URL,
    until GET /test/heal."""

    corrupt: bytes | None = None

    def _dispatch(
        self, method: str, kind: str, params: tuple[str, ...], raw: bytes, record: Request
    ) -> tuple[int, Any]:
        if kind == "unknown" and record.path.startswith("/test/"):
            if record.path == "/test/heal":
                self.corrupt = None
            return 200, None
        return super()._dispatch(method, kind, params, raw, record)

    def _download(self, params: tuple[str, ...], record: Request) -> tuple[int, Any]:
        status, data = super()._download(params, record)
        if self.corrupt is not None and data == self.corrupt:
            data = CORRUPTED
        return status, data


class Site(World):
    """test_artifacts' World (the fake, S3 on moto, the http references' server, a directory
    for the scripts' homes), whose scripts' environments take any override (their cache
    directory included)."""

    fake: Fake

    def env(self, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = super().env(home)
        env.update(extra or {})
        return env


@contextlib.contextmanager
def s3_admin(s3: S3) -> Iterator[Any]:
    """An S3 client to moto with IAM enforcement off while it is used (the role can only
    read): for the test's own changes to the buckets."""
    s3.moto.check_auth(enforced=False)
    try:
        yield s3.moto.client("s3")
    finally:
        s3.moto.check_auth()


@dataclass
class Logged:
    """What a writer logged: its SDK, project and home."""

    sdk: str
    project: str
    home: Path


class Setting:
    """The module's world and each writer's outcome (run once, on first need). Each writer
    has S3 objects of its own that change once it has logged them: a versioned one (a new
    version) and a plain one (its bytes, so its ETag)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.big_md5 = ""
        self.writers = Once(self._write)

    def _write(self, sdk: str) -> Logged:
        if sdk != "official":
            self.writers("official")  # "elsewhere" is the official writer's
        project = "src" if sdk == "official" else f"src-{sdk}"
        home = self.site.root / f"writer-{sdk}"
        sources = {**SOURCES, **(EXTRA_SOURCES if sdk == "official" else {})}
        for path, data in sources.items():
            (home / path).parent.mkdir(parents=True, exist_ok=True)
            (home / path).write_bytes(data)
        if sdk == "official":
            self.big_md5 = write_big_file(home / "big.bin")
        versioned_key, drift_key = f"v-{sdk}.txt", f"drift-{sdk}.txt"
        with s3_admin(self.site.s3) as client:
            client.put_object(Bucket="vbkt", Key=versioned_key, Body=DS_V0["versioned.txt"])
            client.put_object(Bucket="bkt", Key=drift_key, Body=DRIFT_BEFORE)
        full = "full" if sdk == "official" else "core"
        args = (self.site.refs.url, project, versioned_key, drift_key, full)
        self.site.run(sdk, home, WRITE_SCRIPT, *args)
        with s3_admin(self.site.s3) as client:
            client.put_object(Bucket="vbkt", Key=versioned_key, Body=NEWER_VERSION)
            client.put_object(Bucket="bkt", Key=drift_key, Body=DRIFT_AFTER)
        return Logged(sdk, project, home)


def write_big_file(path: Path) -> str:
    """BIG_SIZE random bytes at `path`, written in chunks; returns their MD5."""
    md5 = hashlib.md5()
    with path.open("wb") as f:
        for _ in range(BIG_SIZE // (1 << 22)):
            chunk = os.urandom(1 << 22)
            md5.update(chunk)
            f.write(chunk)
    return md5.hexdigest()


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setting]:
    refs = ReferenceServer()
    try:
        with s3_with_iam() as s3, Fake() as fake:
            yield Setting(Site(fake, s3, refs, tmp_path_factory.mktemp("use")))
        assert fake.internal_errors == []
    finally:
        refs.stop()


@pytest.fixture(scope="module")
def logged(setting: Setting) -> Once:
    return setting.writers


# (writer SDK, reader SDK), by test id.
READERS = {
    "official": ("official", "official"),
    "nexus": ("official", "nexus"),
    "nexus-reads-nexus": ("nexus", "nexus"),
}


@dataclass
class Read:
    """What a reader script reported (`got`), run by SDK `reader` as run `run_id` from
    `home`; for READ_SCRIPT, in the project `writer` logged to."""

    writer: Logged
    reader: str
    run_id: str
    home: Path
    got: Any

    @property
    def project(self) -> str:
        return self.writer.project

    def ok(self, label: str) -> Any:
        """What step `label` returned; the test fails, naming the step, if it raised."""
        assert label in self.got, f"{self.reader}: step {label!r} did not run"
        outcome = self.got[label]
        assert "error" not in outcome, f"{self.reader}: {label}: raised {describe(outcome)}"
        return outcome["ok"]

    def error(self, label: str) -> tuple[list[str], str]:
        """The exception step `label` raised (class names of its MRO, message)."""
        outcome = self.got[label]
        assert "error" in outcome, f"{self.reader}: {label}: no error (returned {outcome['ok']!r})"
        mro, message = outcome["error"]
        return mro, message


@pytest.fixture(scope="module")
def reads(setting: Setting, logged: Once) -> Once:
    """READ_SCRIPT, once per READERS id."""

    def read(case: str) -> Read:
        writer_sdk, reader = READERS[case]
        writer = logged(writer_sdk)
        run_id = f"reader-{reader}"
        home = setting.site.root / f"read-{case}"
        uses = {label: list(use) for label, use in USES.items()}
        args = (ENTITY, writer.project, run_id, json.dumps(uses), json.dumps(FAILS))
        got = setting.site.run(reader, home, READ_SCRIPT, *args, json.dumps(ENTRY_PATHS))
        return Read(writer, reader, run_id, home, got)

    return Once(read)


# --------------------------------------------------------------------------- helpers


def reader(sdk: str, home: Path, got: Any) -> Read:
    """A Read of a script other than READ_SCRIPT (for its ok() and error())."""
    return Read(Logged("official", "src", home), sdk, "", home, got)


def describe(outcome: dict[str, Any]) -> str:
    mro, message = outcome["error"]
    return f"{mro[0]}: {message}"


def hexed(files: dict[str, bytes]) -> dict[str, str]:
    return {path: data.hex() for path, data in files.items()}


def version_of(fake: FakeWandb, project: str, collection: str, index: int) -> ArtifactState:
    return fake.collection(ENTITY, project, collection).versions[index]


def assert_same_path(home: Path, returned: Any, expected: Path) -> None:
    """`returned` (absolute, or relative to the script's working directory `home`) is
    `expected`."""
    assert isinstance(returned, str), f"returned {returned!r}, not a path as a str"
    assert os.path.realpath(home / returned) == os.path.realpath(expected), (
        f"returned {returned!r}, not {os.path.relpath(expected, home)!r} (relative to the cwd)"
    )


def assert_raised(
    read: Read, label: str, official: tuple[str, ...], ours: tuple[str, ...], *names: str
) -> str:
    """Step `label` raised one of the classes the reader's SDK may raise, naming `names`."""
    mro, message = read.error(label)
    classes = official if read.reader == "official" else ours
    assert any(c in mro for c in classes), f"{label}: raised {mro[0]}, not one of {classes}"
    for name in names:
        assert name in message, f"{label}: {message!r} does not name {name!r}"
    return message


_ARTIFACT_FILE = re.compile(r"/artifacts/(\d+)/files/(.+)")
_ARTIFACT_API_FILE = re.compile(r"/artifactsV2/[^/]+/([^/]+)/([^/]+)/([^/]+)/.*/([^/]+)")


def file_gets(fake: FakeWandb, requests_: list[Request], collection: str) -> list[str]:
    """The artifact files of `collection` (project "src") that `requests_` fetched, by their
    directUrl (their path in the artifact) or on the API host (their file name)."""
    numbers = {str(a.number) for a in fake.collection(ENTITY, "src", collection).artifacts}
    found = []
    for r in requests_:
        if r.kind != "download":
            continue
        if (m := _ARTIFACT_FILE.fullmatch(r.path)) and m[1] in numbers:
            found.append(unquote(m[2]))
        elif (m := _ARTIFACT_API_FILE.fullmatch(r.path)) and m.groups()[:3] == (
            ENTITY,
            "src",
            collection,
        ):
            found.append(unquote(m[4]))
    return found


def since(fake: FakeWandb, start: int, end: int | None = None) -> list[Request]:
    return list(fake.requests[start:end])


def mark_index(fake: FakeWandb, label: str) -> int:
    (index,) = [i for i, r in enumerate(fake.requests) if r.path == f"/test/mark/{label}"]
    return index


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


# --------------------------------------------------------------------------- use_artifact


@pytest.mark.parametrize("case", READERS)
def test_use_artifact_resolves_every_name_form(setting: Setting, reads: Once, case: str) -> None:
    """run.use_artifact by name:alias, name:vN (with its type), a bare name (:latest),
    project/name:alias and entity/project/name:vN (another project than the run's), and
    wandb.use_artifact at module level, each resolves the version it names, with what was
    logged: type, version, aliases, tags, digest, metadata, description, size (the sum of
    the manifest's sizes), id, entity, project. Its name (and qualified name) keep the alias
    or version it was used by, as wandb keeps them (used by a bare name: the version it
    resolved to, "ds:v1")."""
    read: Read = reads(case)
    fake = setting.site.fake
    for label, (name, _, _, (project, collection, index)) in USES.items():
        project = project.format(project=read.project)
        art = version_of(fake, project, collection, index)
        contents = art.manifest["contents"]
        used_as = name.format(entity=ENTITY, project=read.project).rsplit("/", 1)[-1]
        # Used by a bare name, it is named by the version that name resolved to.
        used_as = used_as if ":" in used_as else f"{used_as}:{art.version}"
        got = read.ok("use " + label)
        errors = {k: v for k, v in got.items() if isinstance(v, dict) and "error" in v}
        assert not errors, f"use {label}: {errors}"
        assert {**got, "aliases": sorted(got["aliases"]), "tags": sorted(got["tags"])} == {
            "name": used_as,
            "type": art.type,
            "version": art.version,
            "aliases": sorted(art.aliases),
            "tags": sorted(art.tags),
            "digest": art.digest,
            "metadata": art.metadata or {},
            "description": art.description,
            "size": sum(e.get("size") or 0 for e in contents.values()),
            "id": art.id,
            "entity": ENTITY,
            "project": project,
            "qualified_name": f"{ENTITY}/{project}/{used_as}",
        }, f"use {label} ({name})"
    # What was logged, as logged: the fake's state is the writer's.
    v0 = version_of(fake, read.project, "ds", 0)
    assert (v0.description, v0.metadata, sorted(v0.tags)) == (
        "the dataset",
        DS_METADATA,
        ["first cut", "raw"],
    )
    assert sorted(v0.aliases) == ["exp-1"]
    assert sorted(version_of(fake, read.project, "ds", 1).aliases) == ["best", "latest"]


@pytest.mark.parametrize("case", READERS)
def test_use_is_recorded_as_lineage(setting: Setting, reads: Once, case: str) -> None:
    """Every successful use makes the run a user of the version on the server (its
    ArtifactState.used_by, which the fake fills from UseArtifact), including versions of
    another project; the official wandb.Api() lists exactly those as the run's
    used_artifacts(). A use that fails (wrong type) records nothing."""
    read: Read = reads(case)
    fake = setting.site.fake
    user = (ENTITY, read.project, read.run_id)
    expected = set()
    for label, (_, _, _, (project, collection, index)) in USES.items():
        project = project.format(project=read.project)
        art = version_of(fake, project, collection, index)
        assert user in art.used_by, f"use {label}: {collection}:v{index} of {project} not used"
        expected.add((f"{collection}:v{index}", project))
    typed = version_of(fake, read.project, "typed", 0)
    assert user not in typed.used_by, "a use refused for its type was recorded"

    home = setting.site.root / f"lineage-{case}"
    path = f"{ENTITY}/{read.project}/{read.run_id}"
    used = setting.site.run("official", home, USED_ARTIFACTS_SCRIPT, path)
    assert sorted(map(tuple, used)) == sorted(expected)


@pytest.mark.parametrize("case", READERS)
def test_missing_or_mistyped_artifact_raises(reads: Once, case: str) -> None:
    """A type= other than the artifact's, a version, collection or project that does not
    exist: use_artifact raises (wandb: CommError; ours: CommError or UsageError), naming what
    was asked for (ours also names the artifact refused for its type)."""
    read: Read = reads(case)
    official = ("CommError",)
    ours = ("CommError", "UsageError")
    nexus = read.reader == "nexus"
    # wandb: "type 'dataset' specified but this artifact is of type 'model'".
    assert_raised(read, "wrong type", official, ours, "dataset", "model", *["typed"] * nexus)
    # wandb: "artifact membership 'ds:v9' not found in 'fake-entity/src'".
    assert_raised(read, "missing version", official, ours, "ds", "v9")
    assert_raised(read, "missing collection", official, ours, "nope")
    # wandb: "project 'nowhere' not found under entity 'fake-entity'".
    assert_raised(read, "missing project", official, ours, "nowhere")


# --------------------------------------------------------------------------- download


@pytest.mark.parametrize("case", READERS)
def test_download_writes_every_file_byte_for_byte(setting: Setting, reads: Once, case: str) -> None:
    """download(root) puts every file of the version at root/<path>, byte for byte, and
    returns root: stored files (through their directUrl, which never gets the API key:
    the fake refuses that), http references from their host (never given the key), file://
    references from the writer's disk, and S3 references from moto with the role's
    credentials (moto checks them); of an object in a versioned bucket, the version logged
    (by its versionId), not the newer one written since.
    download() without a root goes to ./artifacts/<collection>:v<N>, whatever alias the
    artifact was used by."""
    read: Read = reads(case)
    root, files = read.ok("download")
    assert_same_path(read.home, root, read.home / "dl" / "v0")
    assert files == hexed(DS_V0)
    root, files = read.ok("default root")
    assert_same_path(read.home, root, read.home / "artifacts" / "ds:v1")
    assert files == hexed(DS_V1)

    fake, refs = setting.site.fake, setting.site.refs
    downloads = [r for r in fake.requests if r.kind == "download"]
    assert all(r.status == 200 for r in downloads), [
        (r.path, r.status) for r in downloads if r.status != 200
    ]
    signed = [r for r in downloads if not r.path.startswith(("/artifactsV2/", "/files/"))]
    assert not any("authorization" in r.headers for r in signed)
    assert not any("authorization" in headers for _, _, headers in refs.requests)


@pytest.mark.parametrize("case", READERS)
def test_file_and_get_entry(setting: Setting, reads: Once, case: str) -> None:
    """file() of a single-file artifact downloads it and returns its path: by default under
    ./artifacts/<the name it was used by> (wandb: "single:latest", not "single:v0"), else
    under the root given. get_entry(path) gives an entry's path, digest, size and ref as the
    manifest has them (a stored file, S3 objects of a prefix and by version, http and file://
    references); a path the artifact does not have raises KeyError naming it."""
    read: Read = reads(case)
    path, data = read.ok("file")
    assert_same_path(read.home, path, read.home / "artifacts" / "single:latest" / "weights.bin")
    assert data == SINGLE["weights.bin"].hex()
    path, data = read.ok("file with root")
    assert_same_path(read.home, path, read.home / "f" / "weights.bin")
    assert data == SINGLE["weights.bin"].hex()

    contents = version_of(setting.site.fake, read.project, "ds", 0).manifest["contents"]

    def counted(path: str, digest: str, size: int | None, ref: str | None) -> list[Any]:
        # A reference's missing size: None or 0 (as in test_artifacts).
        return [path, digest, (size or 0) if ref else size, ref]

    got = {path: counted(*entry) for path, entry in read.ok("entries").items()}
    assert got == {
        path: counted(
            path, contents[path]["digest"], contents[path].get("size"), contents[path].get("ref")
        )
        for path in ENTRY_PATHS
    }
    assert got["tree/sub/b.txt"] == ["tree/sub/b.txt", b64md5(b"tree b\n"), 7, None]
    assert got["s3dir/sub/b.txt"][3] == "s3://bkt/dir/sub/b.txt"
    assert_raised(read, "no such entry", ("KeyError",), ("KeyError",), "nope.txt")


@pytest.mark.parametrize("case", READERS)
def test_s3_object_changed_since_logging_is_refused(reads: Once, case: str) -> None:
    """An S3 reference whose object no longer has the ETag it was logged with (and no
    version that has it) is not downloaded: download() raises naming the object (wandb:
    FileNotFoundError "Couldn't find object version for bkt/<key> matching etag ..."; ours:
    naming s3://bkt/<key> and the artifact), and nothing is left at its path."""
    read: Read = reads(case)
    key = f"drift-{read.writer.sdk}.txt"
    if read.reader == "official":
        assert_raised(read, "drift", ("FileNotFoundError",), (), f"bkt/{key}")
    else:
        assert_raised(read, "drift", (), ("Exception",), f"s3://bkt/{key}", "drifting")
    assert "drift.txt" not in read.got["drift left"]


# --------------------------------------------------------------------------- cache


@dataclass
class CacheRuns:
    """CACHE_FIRST_SCRIPT then CACHE_SECOND_SCRIPT under one SDK, with one cache (under
    `base`); `start`: the index in fake.requests where the second began."""

    sdk: str
    base: Path
    first: Read
    second: Read
    start: int


@pytest.fixture(scope="module")
def cache_runs(setting: Setting, logged: Once) -> Once:
    def run(sdk: str) -> CacheRuns:
        logged("official")
        site = setting.site
        base = site.root / f"cache-{sdk}"
        first, second = base / "first", base / "second"
        env = {"WANDB_CACHE_DIR": str(base / "cache")}
        got = site.run(
            sdk, first, CACHE_FIRST_SCRIPT, f"cache-first-{sdk}", f"cache-{sdk}", env=env
        )
        # A second cold start: another home (cwd, HOME, TMPDIR), the same cache.
        env["WANDB_ARTIFACT_DIR"] = str(second / "arts")
        start = len(site.fake.requests)
        again = site.run(
            sdk, second, CACHE_SECOND_SCRIPT, f"cache-second-{sdk}", f"cache-{sdk}", env=env
        )
        return CacheRuns(sdk, base, reader(sdk, first, got), reader(sdk, second, again), start)

    return Once(run)


@pytest.mark.parametrize("sdk", SDKS)
def test_cache_serves_second_download_and_second_process(
    setting: Setting, cache_runs: Once, sdk: str
) -> None:
    """Downloads are cached by digest under $WANDB_CACHE_DIR: a second download() of the
    same artifact in the same process, to another root, and a download in a second process
    sharing the cache (a second cold start on Lambda, with another home and TMPDIR) fetch no
    file again, yet every file is at the new root; the first download fetched each file once,
    and the cache directory holds them. Files the user changed at a root (the same size,
    appended, deleted) are not trusted: download() to that root again restores them. The
    second process's download() goes to $WANDB_ARTIFACT_DIR/<collection>:v<N>."""
    runs: CacheRuns = cache_runs(sdk)
    fake = setting.site.fake
    want = hexed(CACHED)
    first = runs.first
    for label, root in (("a", "a"), ("b", "b"), ("b again", "b")):
        returned, files = first.ok(label)
        assert_same_path(first.home, returned, first.home / root)
        assert files == want, f"{label}: not the artifact's files"

    # Each file once the first time; not once more for the second root.
    marks = [mark_index(fake, f"cache-{sdk}-{m}") for m in ("first", "second", "changes")]
    once = file_gets(fake, since(fake, marks[0], marks[1]), "cached")
    assert sorted(once) == sorted(CACHED), "the first download did not fetch each file once"
    again = file_gets(fake, since(fake, marks[1], marks[2]), "cached")
    assert again == [], "the second download in the same process fetched files again"
    cached = set(files_under(runs.base / "cache").values())
    assert all(data in cached for data in CACHED.values()), "the cache does not hold the files"

    second = runs.second
    returned, files = second.ok("default root")
    assert_same_path(second.home, returned, second.home / "arts" / "cached:v0")
    assert files == want
    cold = file_gets(fake, since(fake, runs.start), "cached")
    assert cold == [], "the second process fetched files the cache holds"


# --------------------------------------------------------------------------- integrity


@pytest.mark.parametrize("sdk", SDKS)
def test_a_corrupted_file_is_refused_and_never_cached(
    setting: Setting, logged: Once, sdk: str
) -> None:
    """While storage serves one file of "fragile" with a byte changed (the same size), ours'
    download() raises naming the artifact and the file, leaves nothing at that file's path
    and nothing corrupted anywhere (cache, temporary files, root): once storage serves the
    right bytes, download() to the same root succeeds with them.

    The official SDK checks no digest on download: it keeps the corrupted bytes, at the root
    and in its cache, and later downloads serve them from there. Its case proves that the
    corruption reaches the client."""
    logged("official")
    site, fake = setting.site, setting.site.fake
    home = site.root / f"corrupt-{sdk}"
    fake.corrupt = BAD
    try:
        got = site.run(sdk, home, CORRUPT_SCRIPT, f"corrupt-{sdk}")
    finally:
        fake.corrupt = None
    read = reader(sdk, home, got)
    window = CORRUPTED[FLIP - 32 : FLIP + 32]
    corrupted = sorted(path for path, data in files_under(home).items() if window in data)
    healed_root, healed = read.ok("healed")
    assert_same_path(home, healed_root, home / "dl")
    if sdk == "official":
        assert got["corrupted"] == {"ok": None}
        assert healed == {**hexed(FRAGILE), "deep/bad.bin": CORRUPTED.hex()}
        assert any("/cache/" in path for path in corrupted)
        return
    assert_raised(read, "corrupted", (), ("Exception",), "fragile", "deep/bad.bin")
    assert "deep/bad.bin" not in got["left"], "the corrupted file was left at its path"
    assert healed == hexed(FRAGILE)
    assert corrupted == [], f"corrupted bytes left in {corrupted}"


# --------------------------------------------------------------------------- free space


@contextlib.contextmanager
def claimed_size(fake: FakeWandb, artifact: ArtifactState, path: str, size: int) -> Iterator[None]:
    """While in the block, the manifest of `artifact` (as served, and its sizes in GraphQL
    answers) says entry `path` has `size` bytes."""
    with fake._lock:
        before = artifact.manifest_bytes
        manifest = json.loads(before or b"{}")
        manifest["contents"][path]["size"] = size
        artifact.manifest_bytes = json.dumps(manifest).encode()
    try:
        yield
    finally:
        with fake._lock:
            artifact.manifest_bytes = before


def mentions_size(message: str, size: int, slack: float) -> bool:
    """`message` gives `size` bytes, to within `slack` (a fraction): as a number of bytes, or
    with a unit (k, kB, KiB, M, MB, MiB, ... P, PB, PiB; "kB" may be meant decimal or
    binary)."""
    scales: dict[str, tuple[int, ...]] = {"": (1,), "b": (1,), "byte": (1,), "bytes": (1,)}
    for power, prefix in enumerate("kmgtpe", start=1):
        scales[prefix] = scales[prefix + "b"] = (1000**power, 1024**power)
        scales[prefix + "ib"] = (1024**power,)
    for number, unit in re.findall(r"(\d[\d,_]*(?:\.\d+)?)\s*([A-Za-z]*)", message):
        value = float(re.sub(r"[,_]", "", number))
        for scale in scales.get(unit.lower(), ()):
            if abs(value * scale - size) <= slack * size:
                return True
    return False


@pytest.mark.parametrize("sdk", SDKS)
def test_too_little_free_space_is_refused_before_fetching(
    setting: Setting, logged: Once, sdk: str
) -> None:
    """An artifact whose manifest claims more bytes (1 PiB) than the cache's file system has
    free: download() raises, and never fetches that file. Ours checks before fetching any
    file, and its error names the artifact, the space needed and the space free (in any
    unit). wandb raises an OSError (ENOSPC, "Insufficient free space in <cache>") when it
    opens the file's cache entry, after emptying its cache to make room."""
    logged("official")
    site, fake = setting.site, setting.site.fake
    home = site.root / f"space-{sdk}"
    (huge,) = fake.collection(ENTITY, "src", "huge").versions
    start = len(fake.requests)
    with claimed_size(fake, huge, "claimed.bin", CLAIMED_SIZE):
        got = site.run(sdk, home, SPACE_SCRIPT, f"space-{sdk}")
    free = shutil.disk_usage(home).free
    fetched = file_gets(fake, since(fake, start), "huge")
    assert "claimed.bin" not in fetched
    assert "claimed.bin" not in got["left"]
    read = reader(sdk, home, got)
    if sdk == "official":
        # Usually ENOSPC; but wandb empties its cache to make room while other files of the
        # download are being written into it, so one of those can vanish first (ENOENT).
        message = assert_raised(read, "download", ("OSError",), ())
        assert f"[Errno {errno.ENOSPC}]" in message or f"[Errno {errno.ENOENT}]" in message
        return
    message = assert_raised(read, "download", (), ("Exception",), "huge")
    assert fetched == [], "files were fetched before the space was checked"
    assert mentions_size(message, CLAIMED_SIZE, 0.02), f"{message!r} names no space needed"
    slack = max(0.05, (256 << 20) / free)
    assert mentions_size(message, free, slack), f"{message!r} names no free space (~{free})"


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("sdk", SDKS)
def test_a_large_file_downloads_in_little_memory(setting: Setting, logged: Once, sdk: str) -> None:
    """A file of 100 MiB downloads whole (its size and MD5) while the downloading process's
    peak RSS grows by less than 60 MiB over its peak once the package is imported and the
    artifact resolved: the file is streamed, never held in memory."""
    logged("official")
    site = setting.site
    home = site.root / f"memory-{sdk}"
    got = site.run(sdk, home, MEMORY_SCRIPT, f"memory-{sdk}")
    read = reader(sdk, home, got)
    root = read.ok("download")
    assert_same_path(home, root, home / "dl")
    assert read.ok("file") == [BIG_SIZE, setting.big_md5]
    grown = got["peak"] - got["baseline"]
    assert grown < MEMORY_BUDGET_KIB, (
        f"peak RSS grew by {grown} KiB (from {got['baseline']} KiB) downloading {BIG_SIZE} bytes"
    )
