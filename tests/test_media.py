"""Rich data types, ours against the official SDK: one script (`MEDIA_SCRIPT`) logs images
(numpy RGB/grey/RGBA/float arrays, a PIL image, PNG and JPEG files, a list of two, one under a
nested key), a Table with scalar, None, list and Image cells, a Table of a pandas DataFrame,
histograms (explicit and numpy's automatic one), Html, Audio, a confusion matrix and a line
chart, and an image and a long array set in the summary. It runs as a subprocess under
``import wandb`` and under ``import wandb_nexus as wandb``, and the results are compared:

- offline: the two ``.wandb`` logs (read with `wandb_log`, whose decoding is wandb's own
  protobuf), the media files and the run_table artifacts' staged files. What legitimately
  differs is normalised away (`normalise`): PNG and WAV bytes are encoder-specific, so images
  are compared by their JSON fields and decoded pixels, and each side's sha256, size and path
  are checked against its own file; artifact client ids are random.
- `wandb sync` (official) and ``python -m wandb_nexus sync`` of our offline run: what the fake
  W&B server holds afterwards is the whole run, its media and its committed artifacts.
- online against the fake: what the server holds from each SDK, then read back with the
  official ``wandb.Api()`` (history, summary, an image download, tables from their artifacts).
- re-logging one Table object: one file, one artifact version, as wandb does.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]
from PIL import Image as PILImage

import wandb_nexus

import wandb_log
from conftest import run_records, sync_command
from fake_wandb import (
    DEFAULT_ENTITY,
    ArtifactState,
    FakeWandb,
    RunState,
    run_isolated,
    wandb_env,
    wandb_sync,
)

SDKS = {"official": "wandb", "nexus": "wandb_nexus"}
ENTITY = DEFAULT_ENTITY  # set at init: an offline run's ArtifactRecord then carries it
RUN_ID = "mediarun"

# The inputs, as code: prepended to the scripts, and exec'd here to check what was stored.
INPUTS = """
import numpy as np
import pandas as pd

RGB = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)
FLIPPED = RGB[::-1].copy()
GREY = (np.arange(5 * 7, dtype=np.uint8) * 7).reshape(5, 7)
RGBA = (np.arange(4 * 3 * 4, dtype=np.uint8) * 5 + 3).reshape(4, 3, 4)
FLOATS = np.linspace(0.0, 255.0, 4 * 4 * 3).reshape(4, 4, 3)  # cast to uint8, not rescaled
PIL_PIXELS = (np.arange(3 * 5 * 3, dtype=np.uint8) * 5).reshape(3, 5, 3)
PNG_PIXELS = (np.arange(4 * 5 * 3, dtype=np.uint8) * 4).reshape(4, 5, 3)
JPG_PIXELS = np.full((6, 4, 3), 128, dtype=np.uint8)
SOUND = np.sin(np.linspace(0.0, 6.28, 800)) * 0.5
SAMPLE_RATE = 8000
DF = pd.DataFrame({"a": [1, 2, 3], "b": ["p", "q", "r"], "c": [0.25, 0.5, 0.75]})
TABLE_COLUMNS = ["i", "f", "s", "b", "n", "l", "img"]
# The "img" cells, RGB and GREY, are added by the script.
TABLE_ROWS = [[1, 0.5, "x", True, None, [1, 2]], [2, 1.5, "y", False, None, [3]]]
HISTOGRAM = [1, 2, 2, 3, 3, 3, 10]
"""

# argv: project, PNG path, JPEG path. The comments give each row's step.
MEDIA_SCRIPT = """
import sys

from PIL import Image as PILImage

project, png_path, jpg_path = sys.argv[1:4]
run = wandb.init(entity=ENTITY, project=project, id=RUN_ID)
run.log({"rgb": wandb.Image(RGB, caption="rgb cap")})  # 0
run.log({"grey": wandb.Image(GREY), "rgba": wandb.Image(RGBA), "floats": wandb.Image(FLOATS)})
run.log(  # 2
    {
        "pil": wandb.Image(PILImage.fromarray(PIL_PIXELS)),
        "png": wandb.Image(png_path),
        "jpg": wandb.Image(jpg_path),
    }
)
run.log({"imgs": [wandb.Image(RGB, caption="a"), wandb.Image(FLIPPED, caption="b")]})  # 3
run.log({"nested": {"img": wandb.Image(GREY)}})  # 4
rows = [[*row, wandb.Image(image)] for row, image in zip(TABLE_ROWS, [RGB, GREY])]
run.log({"tbl": wandb.Table(columns=TABLE_COLUMNS, data=rows)})  # 5
run.log({"df": DF})  # 6: a DataFrame logged directly becomes a Table
run.log(  # 7
    {
        "hist": wandb.Histogram(HISTOGRAM),
        "auto": np.linspace(0.0, 1.0, 40),  # more than 32 values: a 32-bin histogram
        "small": np.arange(10.0),  # up to 32: a list
    }
)
run.log({"html": wandb.Html("<p>hello</p>")})  # 8
run.log({"audio": wandb.Audio(SOUND, sample_rate=SAMPLE_RATE, caption="beep")})  # 9
cm = wandb.plot.confusion_matrix(
    y_true=[0, 1, 2, 1], preds=[0, 2, 2, 1], class_names=["a", "b", "c"]
)
run.log({"cm": cm})  # 10, as "cm_table"
line = wandb.Table(columns=["x", "y"], data=[[1, 1], [2, 4], [3, 9]])
run.log({"line": wandb.plot.line(line, "x", "y", title="Sq")})  # 11, as "line_table"
run.summary["sum_img"] = wandb.Image(RGB)
run.summary["arr"] = np.arange(40.0)  # more than 32 values: statistics in the summary
run.finish()
"""

TABLE_KEYS = ("tbl", "df", "cm_table", "line_table")
IMAGE_KEYS = ("rgb", "grey", "rgba", "floats", "pil", "png", "jpg", "img", "sum_img")
# Files only the official SDK uploads (its pip freeze); the run files both write (config,
# summary, metadata, console) are not media and are not compared here.
IGNORED_FILES = {"requirements.txt"}
SUMMARY_FILE = "wandb-summary.json"

# The same Table object logged twice under its key and once under another. argv: project.
RELOG_SCRIPT = """
import sys

run = wandb.init(entity=ENTITY, project=sys.argv[1], id=RUN_ID)
table = wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])
run.log({"t": table})
run.log({"t": table, "x": 1})
if sys.argv[2:] == ["add_data"]:
    table.add_data(3, "z")
run.log({"other": table})
run.finish()
"""

# Reads each run of argv[1:] ("entity/project/id") back with wandb.Api() and prints one JSON
# line per run: history, summary, files, the "rgb" image's bytes (downloaded) and the tables
# from their run_table artifacts (downloaded), image cells as mode and pixels.
READ_BACK_SCRIPT = """
import base64
import json
import os
import sys

import numpy as np
import wandb

def cell(value):
    if isinstance(value, wandb.Image):
        return {"mode": value.image.mode, "pixels": np.asarray(value.image).tolist()}
    return value.item() if isinstance(value, np.generic) else value

api = wandb.Api()
for path in sys.argv[1:]:
    run = api.run(path)
    image = run.summary["rgb"]["path"]
    root = os.path.join("downloads", run.project)
    run.file(image).download(root=root)
    with open(os.path.join(root, image), "rb") as f:
        image_bytes = base64.b64encode(f.read()).decode()
    tables = {}
    for key in ("tbl", "df"):
        artifact = api.artifact(f"{run.entity}/{run.project}/run-{run.id}-{key}:latest")
        table = artifact.get(key)
        rows = [[cell(c) for c in row] for row in table.data]
        tables[key] = {"columns": table.columns, "data": rows, "version": artifact.version}
    result = {
        "history": run.history(pandas=False),
        "summary": run.summary_metrics,
        "files": sorted(f.name for f in run.files()),
        "image": image,
        "image_bytes": image_bytes,
        "tables": tables,
        "logged": sorted([a.name, a.type] for a in run.logged_artifacts()),
    }
    print("RESULT", json.dumps(result))
"""

# --------------------------------------------------------------------------- helpers


@cache
def inputs() -> dict[str, Any]:
    """The arrays and values of `INPUTS`."""
    namespace: dict[str, Any] = {}
    exec(INPUTS, namespace)
    return namespace


def script_text(sdk: str, body: str, run_id: str) -> str:
    return (
        f"import {SDKS[sdk]} as wandb\n{INPUTS}\nENTITY = {ENTITY!r}\nRUN_ID = {run_id!r}\n{body}"
    )


def run_script(
    fake: FakeWandb,
    home: Path,
    sdk: str,
    body: str,
    *args: str,
    offline: bool = False,
    run_id: str = RUN_ID,
) -> None:
    """`body` under the official SDK or ours, in a subprocess with HOME, WANDB_DIR and working
    directory `home`, talking to `fake` (or offline); it must succeed."""
    home.mkdir(parents=True, exist_ok=True)
    script = home / "script.py"
    script.write_text(script_text(sdk, body, run_id))
    env = wandb_env(fake, home, {"WANDB_MODE": "offline"} if offline else None)
    result = run_isolated([sys.executable, str(script), *args], env, 120, cwd=home)
    assert result.returncode == 0, f"{sdk}:\n{result.stdout}\n{result.stderr}"


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_digest(digests: dict[str, str]) -> str:
    """wandb's artifact digest over {entry path: entry digest} (wandb-media.md §4.1)."""
    lines = "".join(f"{path}:{digests[path]}\n" for path in sorted(digests))
    return hashlib.md5(f"wandb-artifact-manifest-v1\n{lines}".encode()).hexdigest()


def user_keys(data: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (data or {}).items() if not k.startswith("_")}


def pixels(data: bytes) -> tuple[str, np.ndarray]:
    image = PILImage.open(io.BytesIO(data))
    return image.mode, np.asarray(image)


def media_dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object with a `_type` inside `value`."""
    if isinstance(value, dict):
        if "_type" in value:
            yield value
        for inner in value.values():
            yield from media_dicts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from media_dicts(inner)


def referenced_files(value: Any) -> set[str]:
    """The run files that media JSON inside `value` points at."""
    paths: set[str] = set()
    for media in media_dicts(value):
        if isinstance(media.get("path"), str):
            paths.add(media["path"])
        paths.update(media.get("filenames", []))
    return paths


def client_ids(value: Any) -> set[str]:
    """The artifact client ids (not sequence ids) that table JSON inside `value` refers to."""
    ids = set()
    for media in media_dicts(value):
        if "artifact_path" in media:
            match = CLIENT_URL.fullmatch(media["artifact_path"])
            assert match and not match[2], media["artifact_path"]
            ids.add(match[1])
    return ids


# --------------------------------------------------------------------------- normalising

# The file name of a media file: <subdir>/<leaf key>_<step or "summary">_<sha256[:20]><ext>.
MEDIA_NAME = re.compile(
    r"media/(?P<subdir>images|table|html|audio)/(?P<key>[\w.-]+)_(?P<step>\d+|summary)"
    r"_(?P<sha>[0-9a-f]{20})(?P<ext>\.table\.json|\.\w+)"
)
SUBDIRS = {
    "image-file": "images",
    "table-file": "table",
    "html-file": "html",
    "audio-file": "audio",
}
CLIENT_URL = re.compile(r"wandb-client-artifact://([0-9a-z]{128})(:latest)?/(.+\.table\.json)")

Reader = Callable[[str], bytes]


def checked_name(path: str, read: Reader, kind: str, key: str, step: int | None) -> str:
    """Checks that the file at `path` exists, is named as wandb names it and that the sha256
    in its name is its own; returns the name with that hash as <sha>."""
    match = MEDIA_NAME.fullmatch(path)
    assert match, f"{path} is not named <subdir>/<key>_<step>_<sha20><ext>"
    assert (match["subdir"], match["key"]) == (SUBDIRS[kind], key), path
    if step is not None:  # history; a summary value may come from any step or be "summary"
        assert match["step"] == str(step), path
    assert sha256(read(path)).startswith(match["sha"]), f"{path}: the name's hash is not its own"
    return path.replace(match["sha"], "<sha>")


def normalise(value: Any, read: Reader, key: str, step: int | None) -> Any:
    """`value` (a history or summary value under leaf key `key`) with what legitimately differs
    between SDKs replaced by placeholders, after checking it: the bytes of encoded images and
    audio (sha256, size for images, the hash in the name; each checked against its file) and
    artifact client ids (checked for form)."""
    if isinstance(value, list):
        return [normalise(v, read, key, step) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("_type")
    if kind in SUBDIRS:
        path = value["path"]
        data = read(path)
        assert (value["sha256"], value["size"]) == (sha256(data), len(data)), path
        name = checked_name(path, read, kind, key, step)
        if kind == "image-file":
            assert name.endswith("." + value["format"]), name
            return {**value, "sha256": "<sha256>", "size": "<size>", "path": name}
        if kind == "audio-file":  # same size (a WAV header and 16-bit samples)
            return {**value, "sha256": "<sha256>", "path": name}
        if kind == "table-file":
            table = dict(value)
            for field, latest in (("artifact_path", False), ("_latest_artifact_path", True)):
                match = CLIENT_URL.fullmatch(value[field])
                assert match and bool(match[2]) == latest, value[field]
                table[field] = value[field].replace(match[1], "<client id>")
            return table
        return value  # html: the same bytes from both
    if kind == "images/separated":
        names = [checked_name(p, read, "image-file", key, step) for p in value["filenames"]]
        return {**value, "filenames": names}
    return {k: normalise(v, read, k, step) for k, v in value.items()}


def normalised_rows(rows: list[dict[str, Any]], read: Reader) -> list[dict[str, Any]]:
    return [
        {
            **{k: normalise(v, read, k, row["_step"]) for k, v in user_keys(row).items()},
            "_step": row["_step"],
        }
        for row in rows
    ]


def normalised_summary(summary: dict[str, Any] | None, read: Reader) -> dict[str, Any]:
    summary = summary or {}
    values = {k: normalise(v, read, k, None) for k, v in user_keys(summary).items()}
    return {**values, "_step": summary.get("_step")}


def table_view(text: bytes, entries: dict[str, bytes]) -> Any:
    """A run_table artifact's `<key>.table.json`, parsed, with each image cell's path and
    sha256 checked against the artifact's entries and replaced (PNG bytes differ by SDK)."""
    table = json.loads(text)
    # Written as json.dump(sort_keys=True) writes: sorted keys, ", " and ": ".
    assert text.decode() == json.dumps(table, sort_keys=True)
    for row in table["data"]:
        for i, cell in enumerate(row):
            if isinstance(cell, dict) and cell.get("_type") == "image-file":
                data = entries[cell["path"]]
                assert cell["path"] == f"media/images/{hashlib.md5(data).hexdigest()[:20]}.png"
                assert cell["sha256"] == sha256(data)
                row[i] = {**cell, "path": "<md5>", "sha256": "<sha256>"}
    return table


def entry_name(path: str) -> str:
    """An artifact entry's path, an embedded image's hash (of PNG bytes) replaced."""
    return re.sub(r"^media/images/[0-9a-f]{20}\.png$", "media/images/<md5>.png", path)


# --------------------------------------------------------------------------- offline runs


@dataclass
class OfflineRun:
    sdk: str
    run_dir: Path
    records: list[Any]

    @property
    def files_dir(self) -> Path:
        return self.run_dir / "files"

    def read(self, path: str) -> bytes:
        return (self.files_dir / path).read_bytes()

    @property
    def history(self) -> list[dict[str, Any]]:
        return wandb_log.history_rows(self.records)

    @property
    def summary(self) -> dict[str, Any]:
        return wandb_log.summary(self.records)

    @property
    def artifacts(self) -> dict[str, Any]:
        """ArtifactRecords by name; each name once."""
        found = [r.artifact for r in self.records if r.WhichOneof("record_type") == "artifact"]
        by_name = {a.name: a for a in found}
        assert len(by_name) == len(found)
        return by_name

    def staged(self, name: str) -> dict[str, bytes]:
        """An ArtifactRecord's entries, read from their staged copies (local_path)."""
        contents = self.artifacts[name].manifest.contents
        return {e.path: Path(e.local_path).read_bytes() for e in contents}

    def image(self, key: str) -> bytes:
        """The file of the image logged (or set in the summary) under `key`."""
        value = self.summary["nested"]["img"] if key == "img" else self.summary[key]
        return self.read(value["path"])


@pytest.fixture(scope="module")
def media_fake() -> Iterator[FakeWandb]:
    """One fake for the module: the offline runs must send it nothing, the online runs and
    the read back use it."""
    with FakeWandb() as fake:
        yield fake
    assert fake.internal_errors == []


@pytest.fixture(scope="module")
def input_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The PNG and JPEG that the script logs by path."""
    folder = tmp_path_factory.mktemp("inputs")
    png, jpg = folder / "in.png", folder / "in.jpg"
    PILImage.fromarray(inputs()["PNG_PIXELS"]).save(png)
    PILImage.fromarray(inputs()["JPG_PIXELS"]).save(jpg, quality=90)
    return png, jpg


def offline_media_run(
    fake: FakeWandb, home: Path, sdk: str, project: str, input_files: tuple[Path, Path]
) -> OfflineRun:
    requests = len(fake.requests)
    run_script(fake, home, sdk, MEDIA_SCRIPT, project, *map(str, input_files), offline=True)
    assert len(fake.requests) == requests  # offline: nothing was sent
    (run_dir,) = (home / "wandb").glob(f"offline-run-*-{RUN_ID}")
    return OfflineRun(sdk, run_dir, wandb_log.read_records(run_dir / f"run-{RUN_ID}.wandb"))


@pytest.fixture(scope="module")
def offline(
    media_fake: FakeWandb,
    input_files: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, OfflineRun]:
    """`MEDIA_SCRIPT` run offline by each SDK."""
    return {
        sdk: offline_media_run(
            media_fake, tmp_path_factory.mktemp(f"offline-{sdk}"), sdk, "media", input_files
        )
        for sdk in SDKS
    }


def test_offline_history_and_summary_match_the_official_sdk(
    offline: dict[str, OfflineRun],
) -> None:
    official, ours = offline["official"], offline["nexus"]
    rows = normalised_rows(official.history, official.read)
    assert [row["_step"] for row in rows] == list(range(12))
    assert [sorted(user_keys(row)) for row in rows] == [
        ["rgb"],
        ["floats", "grey", "rgba"],
        ["jpg", "pil", "png"],
        ["imgs"],
        ["nested"],
        ["tbl"],
        ["df"],
        ["auto", "hist", "small"],
        ["html"],
        ["audio"],
        ["cm_table"],
        ["line_table"],
    ]
    assert rows[0]["rgb"] == {
        "_type": "image-file",
        "caption": "rgb cap",
        "sha256": "<sha256>",
        "size": "<size>",
        "path": "media/images/rgb_0_<sha>.png",
        "format": "png",
        "width": 6,
        "height": 8,
    }
    assert rows[7]["auto"]["_type"] == "histogram" and len(rows[7]["auto"]["values"]) == 32
    assert rows[7]["small"] == list(range(10))
    assert normalised_rows(ours.history, ours.read) == rows

    summary = normalised_summary(official.summary, official.read)
    assert summary["sum_img"]["path"] == "media/images/sum_img_summary_<sha>.png"
    assert summary["arr"]["_type"] == "numpy.ndarray" and summary["arr"]["size"] == 40
    assert summary["_step"] == 11
    assert normalised_summary(ours.summary, ours.read) == summary


def test_offline_images_decode_to_the_same_pixels(offline: dict[str, OfflineRun]) -> None:
    """Each of our images decodes to the official's pixels (and mode), which are the input's.
    (The JPEG, lossy, is compared as bytes: `test_offline_images_from_files_are_copied`.)"""
    values = inputs()
    expected = {
        "rgb": ("RGB", values["RGB"]),
        "grey": ("L", values["GREY"]),
        "rgba": ("RGBA", values["RGBA"]),
        "floats": ("RGB", values["FLOATS"].astype(np.uint8)),
        "pil": ("RGB", values["PIL_PIXELS"]),
        "png": ("RGB", values["PNG_PIXELS"]),
        "img": ("L", values["GREY"]),
        "sum_img": ("RGB", values["RGB"]),
    }
    official, ours = offline["official"], offline["nexus"]
    for key in IMAGE_KEYS:
        if key == "jpg":
            continue
        theirs, mine = official.image(key), ours.image(key)
        mode, pixels_ours = pixels(mine)
        assert (mode, pixels_ours.tolist()) == (pixels(theirs)[0], pixels(theirs)[1].tolist()), key
        assert (mode, pixels_ours.tolist()) == (expected[key][0], expected[key][1].tolist()), key

    images = [ours.summary["imgs"], official.summary["imgs"]]
    for run, grouped in zip((ours, official), images, strict=True):
        decoded = [pixels(run.read(name)) for name in grouped["filenames"]]
        assert [(m, p.tolist()) for m, p in decoded] == [
            ("RGB", values["RGB"].tolist()),
            ("RGB", values["FLIPPED"].tolist()),
        ]


def test_offline_images_from_files_are_copied(
    offline: dict[str, OfflineRun], input_files: tuple[Path, Path]
) -> None:
    png, jpg = input_files
    for run in offline.values():
        assert run.image("png") == png.read_bytes()
        assert run.image("jpg") == jpg.read_bytes()
        assert (run.summary["png"]["format"], run.summary["jpg"]["format"]) == ("png", "jpg")


def test_offline_audio_matches_the_official_sdk(offline: dict[str, OfflineRun]) -> None:
    """The same WAV header, length and samples as the official's, within one step of the
    input."""
    official, ours = (offline[sdk] for sdk in SDKS)
    theirs, mine = (run.read(run.summary["audio"]["path"]) for run in (official, ours))
    assert mine[:44] == theirs[:44] and len(mine) == len(theirs)
    info = soundfile.info(io.BytesIO(mine))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    theirs_samples, _ = soundfile.read(io.BytesIO(theirs), dtype="int16")
    samples, _ = soundfile.read(io.BytesIO(mine), dtype="int16")
    assert np.abs(samples.astype(int) - theirs_samples).max() <= 1
    assert np.abs(samples / 32768 - inputs()["SOUND"]).max() < 2 / 32768


def test_offline_audio_samples_are_the_official_ones(offline: dict[str, OfflineRun]) -> None:
    official, ours = (offline[sdk] for sdk in SDKS)
    assert ours.summary["audio"]["sha256"] == official.summary["audio"]["sha256"]


def test_offline_table_run_files_are_the_official_ones(offline: dict[str, OfflineRun]) -> None:
    """A table's run file (columns and data, media cells as class names) is byte for byte the
    official's, and so is its name."""
    official, ours = (offline[sdk] for sdk in SDKS)
    for key in TABLE_KEYS:
        path = official.summary[key]["path"]
        assert ours.summary[key]["path"] == path
        assert ours.read(path) == official.read(path)
    assert json.loads(ours.read(ours.summary["tbl"]["path"])) == {
        "columns": inputs()["TABLE_COLUMNS"],
        "data": [[*row, "Image"] for row in inputs()["TABLE_ROWS"]],
    }


def table_artifact_json(run: OfflineRun, key: str) -> Any:
    entries = run.staged(f"run-{RUN_ID}-{key}")
    return table_view(entries[f"{key}.table.json"], entries)


def test_offline_table_artifacts_hold_the_official_json(offline: dict[str, OfflineRun]) -> None:
    """The artifact's `<key>.table.json` is the official's except for image cells' path and
    sha256 (checked against the artifact's own entries)."""
    official, ours = (offline[sdk] for sdk in SDKS)
    for key in TABLE_KEYS:
        theirs = table_artifact_json(official, key)
        assert table_artifact_json(ours, key) == theirs, key
    tbl = table_artifact_json(ours, "tbl")
    assert tbl["columns"] == inputs()["TABLE_COLUMNS"]
    assert [row[:-1] for row in tbl["data"]] == inputs()["TABLE_ROWS"]
    assert (tbl["nrows"], tbl["ncols"], tbl["log_mode"]) == (2, 7, "IMMUTABLE")
    for key in ("df", "cm_table", "line_table"):  # no images: byte for byte
        name = f"run-{RUN_ID}-{key}"
        assert ours.staged(name) == official.staged(name)


def test_offline_table_artifact_list_column_type(offline: dict[str, OfflineRun]) -> None:
    official, ours = (offline[sdk] for sdk in SDKS)
    assert table_artifact_json(ours, "tbl") == table_artifact_json(official, "tbl")


def test_offline_table_artifact_images_decode_to_the_logged_pixels(
    offline: dict[str, OfflineRun],
) -> None:
    for run in offline.values():
        entries = run.staged(f"run-{RUN_ID}-tbl")
        table = json.loads(entries["tbl.table.json"])
        cells = [row[-1] for row in table["data"]]
        assert [(c["width"], c["height"], c["format"]) for c in cells] == [
            (6, 8, "png"),
            (7, 5, "png"),
        ]
        decoded = [pixels(entries[c["path"]]) for c in cells]
        assert [(m, p.tolist()) for m, p in decoded] == [
            ("RGB", inputs()["RGB"].tolist()),
            ("L", inputs()["GREY"].tolist()),
        ], run.sdk
        assert "size" not in cells[0]


def artifact_record_view(run: OfflineRun, key: str) -> dict[str, Any]:
    """An ArtifactRecord, checked for consistency (digests against the staged files, the
    artifact digest against the entries, client ids against the history's artifact paths),
    as comparable fields."""
    name = f"run-{RUN_ID}-{key}"
    record = run.artifacts[name]
    entries = run.staged(name)
    contents = list(record.manifest.contents)
    assert [e.path for e in contents] == sorted(entries)
    for entry in contents:
        data = entries[entry.path]
        assert (entry.digest, entry.size) == (b64md5(data), len(data)), entry.path
        assert Path(entry.local_path).is_absolute()
    assert record.digest == manifest_digest({e.path: e.digest for e in contents})
    for client_id in (record.client_id, record.sequence_client_id):
        assert re.fullmatch(r"[0-9a-z]{128}", client_id)
    table = run.summary[key]
    assert table["artifact_path"] == f"wandb-client-artifact://{record.client_id}/{key}.table.json"
    assert table["_latest_artifact_path"] == (
        f"wandb-client-artifact://{record.sequence_client_id}:latest/{key}.table.json"
    )
    manifest = record.manifest
    return {
        "fields": (record.run_id, record.entity, record.project, record.type, record.name),
        "aliases": list(record.aliases),
        "more": (record.description, record.metadata, record.user_created, record.finalize),
        "algorithm": record.digest_algorithm,
        "tags": list(record.tags),
        "ttl": record.ttl_duration_seconds,
        "manifest": (
            manifest.version,
            manifest.storage_policy,
            [(c.key, c.value_json) for c in manifest.storage_policy_config],
        ),
        "entries": [entry_name(e.path) for e in contents],
    }


def test_offline_artifact_records_match_the_official_sdk(offline: dict[str, OfflineRun]) -> None:
    official, ours = (offline[sdk] for sdk in SDKS)
    assert sorted(ours.artifacts) == sorted(official.artifacts)
    assert sorted(official.artifacts) == sorted(f"run-{RUN_ID}-{key}" for key in TABLE_KEYS)
    for key in TABLE_KEYS:
        theirs = artifact_record_view(official, key)
        assert artifact_record_view(ours, key) == theirs, key
    view = artifact_record_view(ours, "tbl")
    assert view["fields"] == (RUN_ID, ENTITY, "media", "run_table", f"run-{RUN_ID}-tbl")
    assert view["aliases"] == ["latest"] and view["algorithm"] == "MANIFEST_MD5"
    assert view["manifest"] == (1, "wandb-storage-policy-v1", [("storageLayout", '"V2"')])
    assert view["entries"] == ["media/images/<md5>.png"] * 2 + ["tbl.table.json"]
    for key in ("df", "cm_table", "line_table"):  # same entries: same digest
        name = f"run-{RUN_ID}-{key}"
        assert ours.artifacts[name].digest == official.artifacts[name].digest


def test_offline_files_are_announced_before_use(offline: dict[str, OfflineRun]) -> None:
    """Every media file is announced once by a FilesRecord (NOW) before the first history or
    summary record that refers to it, a table's ArtifactRecord comes before the history row
    that refers to it, and both SDKs announce the same files (by name, hashes aside)."""
    announced: dict[str, list[str]] = {}
    for sdk, run in offline.items():
        files: list[str] = []
        artifacts: set[str] = set()
        for record in run.records:
            kind = record.WhichOneof("record_type")
            if kind == "files":
                for item in record.files.files:
                    assert item.policy == 0 and item.path not in files  # NOW, once
                    files.append(item.path)
            elif kind == "artifact":
                artifacts.add(record.artifact.client_id)
            elif kind in ("history", "summary"):
                rows = wandb_log.history_rows([record]) or [wandb_log.summary([record])]
                assert referenced_files(rows[0]) <= set(files), (sdk, kind)
                if kind == "history":
                    assert client_ids(rows[0]) <= artifacts, sdk
        media = [f for f in files if f.startswith("media/")]
        on_disk = {
            str(p.relative_to(run.files_dir))
            for p in (run.files_dir / "media").rglob("*")
            if p.is_file()
        }
        assert set(media) == on_disk, sdk
        announced[sdk] = sorted(re.sub(r"_[0-9a-f]{20}\.", "_<sha>.", f) for f in media)
    assert announced["nexus"] == announced["official"]
    assert len(announced["official"]) == 17


def test_offline_chart_config_matches_the_official_sdk(offline: dict[str, OfflineRun]) -> None:
    official, ours = (wandb_log.config(offline[sdk].records)["_wandb"] for sdk in SDKS)
    assert sorted(official["visualize"]) == ["cm", "line"]
    assert official["visualize"]["line"]["panel_config"]["panelDefId"] == "wandb/line/v0"
    assert ours["visualize"] == official["visualize"]


# --------------------------------------------------------------------------- DataFrame


def test_dataframe_logged_directly_is_a_table(clean_env: Path) -> None:
    frame = inputs()["DF"]
    run = wandb_nexus.init(project="df", mode="offline")
    run.log({"df": wandb_nexus.Table(dataframe=frame)})
    run.log({"direct": frame})
    run.finish()
    rows = wandb_log.history_rows(run_records(run))
    as_table, direct = rows[0]["df"], rows[1]["direct"]
    assert direct["_type"] == "table-file" and direct["sha256"] == as_table["sha256"]


def test_table_of_a_dataframe_given_as_data() -> None:
    table = wandb_nexus.Table(data=inputs()["DF"])
    assert table.columns == ["a", "b", "c"]
    assert table.data == [[1, "p", 0.25], [2, "q", 0.5], [3, "r", 0.75]]


# --------------------------------------------------------------------------- sync


def assert_synced(fake: FakeWandb, run: OfflineRun, project: str) -> RunState:
    """The fake holds all of `run`: its history rows and summary, every media file as
    written, and each ArtifactRecord as a committed v0 with the staged files, which the
    history's artifact paths resolve to."""
    state = fake.run_state(ENTITY, project, RUN_ID)
    assert state.complete and state.exitcode == 0

    def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in row.items() if k not in ("_runtime", "_timestamp")} for row in rows
        ]

    assert plain(state.history) == plain(run.history)
    assert len(state.history) == 12
    assert user_keys(state.summary) == user_keys(run.summary)

    media = {
        str(p.relative_to(run.files_dir)): p.read_bytes()
        for p in (run.files_dir / "media").rglob("*")
        if p.is_file()
    }
    assert {path: state.files.get(path) for path in media} == media
    # The run files (output.log stays empty: the script prints nothing).
    assert set(state.files) - set(media) == {"config.yaml", "wandb-metadata.json", SUMMARY_FILE}
    assert user_keys(json.loads(state.files[SUMMARY_FILE])) == user_keys(run.summary)
    assert sorted(state.uploaded) == sorted(state.files)
    normalised_rows(state.history, state.files.__getitem__)  # checks names and hashes
    assert (
        state.config_values["_wandb"]["visualize"]
        == wandb_log.config(run.records)["_wandb"]["visualize"]
    )

    for name, record in run.artifacts.items():
        (artifact,) = fake.artifacts(name)
        assert (artifact.entity, artifact.project, artifact.type) == (ENTITY, project, "run_table")
        assert (artifact.state, artifact.version, artifact.aliases) == (
            "COMMITTED",
            "v0",
            ["latest"],
        )
        assert artifact.digest == record.digest
        assert artifact.files == run.staged(name)
        key = name.removeprefix(f"run-{RUN_ID}-")
        resolved = fake.resolve_client_artifact_url((state.summary or {})[key]["artifact_path"])
        assert resolved == (artifact, f"{key}.table.json")
    return state


def test_official_sync_of_our_offline_run(
    fake: FakeWandb, input_files: tuple[Path, Path], tmp_path: Path
) -> None:
    run = offline_media_run(fake, tmp_path / "home", "nexus", "wsync", input_files)
    wandb_sync(run.run_dir, fake)
    assert_synced(fake, run, "wsync")


def test_our_sync_of_our_offline_run(
    fake: FakeWandb, input_files: tuple[Path, Path], tmp_path: Path
) -> None:
    run = offline_media_run(fake, tmp_path / "home", "nexus", "oursync", input_files)
    out = sync_command(str(run.run_dir))
    assert "synced to" in out.stdout, out.stdout
    state = assert_synced(fake, run, "oursync")
    assert all(r.status == 200 for r in fake.requests if r.kind != "unknown")

    # Uploading again sends nothing new: no second artifact version.
    requests = len(fake.requests)
    assert "already synced" in sync_command(str(run.run_dir)).stdout
    assert len(fake.requests) == requests
    versions = {name: fake.collection(ENTITY, "oursync", name).versions for name in run.artifacts}
    assert [len(v) for v in versions.values()] == [1] * len(TABLE_KEYS)
    assert len(state.history) == 12


# --------------------------------------------------------------------------- online


@dataclass
class OnlineRun:
    sdk: str
    project: str
    run_id: str
    home: Path
    state: RunState

    @property
    def path(self) -> str:
        return f"{ENTITY}/{self.project}/{self.run_id}"

    def artifacts(self, fake: FakeWandb) -> dict[str, ArtifactState]:
        """Its artifacts, by table key."""
        found = [a for a in fake.artifacts() if a.project == self.project]
        return {a.name.removeprefix(f"run-{self.run_id}-"): a for a in found}


@pytest.fixture(scope="module")
def online(
    media_fake: FakeWandb,
    input_files: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, OnlineRun]:
    """`MEDIA_SCRIPT` run online against `media_fake` by each SDK, as run "media-<sdk>" of
    project "online-<sdk>". (Different ids: the fake lists a run's logged artifacts by run id
    alone, whatever the project.)"""
    runs = {}
    for sdk in SDKS:
        home = tmp_path_factory.mktemp(f"online-{sdk}")
        project, run_id = f"online-{sdk}", f"media-{sdk}"
        files = map(str, input_files)
        run_script(media_fake, home, sdk, MEDIA_SCRIPT, project, *files, run_id=run_id)
        state = media_fake.run_state(ENTITY, project, run_id)
        runs[sdk] = OnlineRun(sdk, project, run_id, home, state)
    return runs


def server_view(fake: FakeWandb, run: OnlineRun) -> dict[str, Any]:
    """What the server holds of a run, normalised as `normalise` does, each media file checked
    against its JSON; tables' artifacts (checked for consistency) with their files."""
    state = run.state
    read = state.files.__getitem__
    artifacts = {}
    for key, artifact in run.artifacts(fake).items():
        contents = (artifact.manifest or {}).get("contents", {})
        assert {p: (e["digest"], e["size"]) for p, e in contents.items()} == {
            p: (b64md5(data), len(data)) for p, data in artifact.files.items()
        }
        assert artifact.digest == manifest_digest({p: e["digest"] for p, e in contents.items()})
        resolved = fake.resolve_client_artifact_url((state.summary or {})[key]["artifact_path"])
        assert resolved == (artifact, f"{key}.table.json")
        artifacts[key] = {
            "type": artifact.type,
            "state": (artifact.state, artifact.version, artifact.aliases),
            "run": (artifact.run_name, artifact.logged_by) == (run.run_id, [run.run_id]),
            "files": sorted(entry_name(p) for p in artifact.files),
            "table": table_view(artifact.files[f"{key}.table.json"], artifact.files),
        }
    return {
        "history": normalised_rows(state.history, read),
        "summary": normalised_summary(state.summary, read),
        "files": sorted(
            re.sub(r"_[0-9a-f]{20}\.", "_<sha>.", f) for f in set(state.files) - IGNORED_FILES
        ),
        "uploaded": sorted(state.uploaded) == sorted(state.files),
        "visualize": state.config_values["_wandb"]["visualize"],
        "artifacts": artifacts,
        "end": (state.complete, state.exitcode),
    }


def test_online_server_holds_what_the_official_sdk_sends(
    media_fake: FakeWandb, online: dict[str, OnlineRun]
) -> None:
    official = server_view(media_fake, online["official"])
    assert len(official["history"]) == 12 and official["end"] == (True, 0)
    assert sorted(official["artifacts"]) == sorted(TABLE_KEYS)
    assert official["artifacts"]["tbl"]["state"] == ("COMMITTED", "v0", ["latest"])
    assert official["artifacts"]["tbl"]["run"] and official["uploaded"]
    assert "media/images/sum_img_summary_<sha>.png" in official["files"]
    assert server_view(media_fake, online["nexus"]) == official

    # What we uploaded is what we wrote.
    ours = online["nexus"]
    (run_dir,) = (ours.home / "wandb").glob(f"run-*-{ours.run_id}")
    for path in referenced_files(ours.state.history) | referenced_files(ours.state.summary):
        assert ours.state.files[path] == (run_dir / "files" / path).read_bytes(), path


def test_online_artifacts_carry_the_history_step(
    media_fake: FakeWandb, online: dict[str, OnlineRun]
) -> None:
    official, ours = (
        {key: a.history_step for key, a in online[sdk].artifacts(media_fake).items()}
        for sdk in SDKS
    )
    assert official == dict(zip(TABLE_KEYS, (5, 6, 10, 11), strict=True))
    assert ours == official


def test_online_read_back_with_the_official_api(
    media_fake: FakeWandb, online: dict[str, OnlineRun], tmp_path: Path
) -> None:
    """The official wandb.Api(), with a HOME of its own (no cache), reads both runs back: the
    history and summary the server holds, our image as uploaded, our tables from their
    artifacts with the logged rows and images."""
    reader = tmp_path / "reader"
    reader.mkdir()
    (reader / "read.py").write_text(READ_BACK_SCRIPT)
    paths = [online[sdk].path for sdk in SDKS]
    env = wandb_env(media_fake, reader)
    result = run_isolated([sys.executable, "read.py", *paths], env, 120, cwd=reader)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    official, ours = (json.loads(line.removeprefix("RESULT ")) for line in lines)

    state = online["nexus"].state
    assert ours["history"] == state.history
    assert ours["summary"] == state.summary
    assert ours["files"] == sorted(state.files)
    image = base64.b64decode(ours["image_bytes"])
    assert image == state.files[ours["image"]]
    assert pixels(image)[1].tolist() == inputs()["RGB"].tolist()
    images = [{"mode": "RGB", "pixels": inputs()["RGB"].tolist()}]
    images.append({"mode": "L", "pixels": inputs()["GREY"].tolist()})
    assert ours["tables"]["tbl"] == {
        "columns": inputs()["TABLE_COLUMNS"],
        "data": [[*row, image] for row, image in zip(inputs()["TABLE_ROWS"], images, strict=True)],
        "version": "v0",
    }
    frame = inputs()["DF"]
    assert ours["tables"]["df"] == {
        "columns": list(frame.columns),
        "data": frame.values.tolist(),
        "version": "v0",
    }
    run_id = online["nexus"].run_id
    assert ours["logged"] == sorted([f"run-{run_id}-{key}:v0", "run_table"] for key in TABLE_KEYS)

    # The same as the official run's, read the same way.
    official_files = online["official"].state.files.__getitem__
    assert normalised_rows(ours["history"], state.files.__getitem__) == normalised_rows(
        official["history"], official_files
    )
    assert normalised_summary(ours["summary"], state.files.__getitem__) == normalised_summary(
        official["summary"], official_files
    )
    assert ours["tables"] == official["tables"]
    official_id = online["official"].run_id
    assert ours["logged"] == [
        [name.replace(official_id, run_id), kind] for name, kind in official["logged"]
    ]


# --------------------------------------------------------------------------- re-logging


def relog_records(fake: FakeWandb, home: Path, sdk: str, *args: str) -> list[Any]:
    run_script(fake, home, sdk, RELOG_SCRIPT, "relog", *args, offline=True)
    (run_dir,) = (home / "wandb").glob(f"offline-run-*-{RUN_ID}")
    return wandb_log.read_records(run_dir / f"run-{RUN_ID}.wandb")


def relog_view(records: list[Any]) -> dict[str, Any]:
    rows = [user_keys(row) for row in wandb_log.history_rows(records)]
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    files = [
        item.path
        for r in records
        if r.WhichOneof("record_type") == "files"
        for item in r.files.files
        if item.path.startswith("media/")
    ]
    return {
        "rows": [json.dumps(row, sort_keys=True) for row in rows],
        "artifacts": [(a.name, a.client_id, a.sequence_client_id) for a in artifacts],
        "files": files,
    }


def test_relogging_a_table_reuses_its_file_and_artifact(
    media_fake: FakeWandb, tmp_path: Path
) -> None:
    views = {sdk: relog_view(relog_records(media_fake, tmp_path / sdk, sdk)) for sdk in SDKS}
    for sdk, view in views.items():
        ((name, client_id, sequence_id),) = view["artifacts"]  # one artifact
        assert name == f"run-{RUN_ID}-t", sdk
        assert len(view["files"]) == 1 and view["files"][0].startswith("media/table/t_0_"), sdk
        first, second, other = (json.loads(row) for row in view["rows"])
        assert first["t"] == second["t"] == other["other"], sdk
        assert first["t"]["artifact_path"] == f"wandb-client-artifact://{client_id}/t.table.json"
        assert sequence_id in first["t"]["_latest_artifact_path"]
    official, ours = views["official"], views["nexus"]
    assert ours["files"] == official["files"]
    strip = [re.sub(r"[0-9a-z]{128}", "<id>", row) for row in ours["rows"]]
    assert strip == [re.sub(r"[0-9a-z]{128}", "<id>", row) for row in official["rows"]]


def test_relogging_a_table_online_makes_one_artifact_version(
    fake: FakeWandb, tmp_path: Path
) -> None:
    run_script(fake, tmp_path, "nexus", RELOG_SCRIPT, "relog-online")
    state = fake.run_state(ENTITY, "relog-online", RUN_ID)
    (artifact,) = fake.artifacts()
    assert (artifact.name, artifact.state, artifact.version) == (
        f"run-{RUN_ID}-t",
        "COMMITTED",
        "v0",
    )
    assert len(fake.collection(ENTITY, "relog-online", artifact.name).versions) == 1
    tables = [row["t"] for row in state.history[:2]] + [state.history[2]["other"]]
    assert all(table == tables[0] for table in tables)
    assert [f for f in state.files if f.startswith("media/")] == [tables[0]["path"]]
    resolved = fake.resolve_client_artifact_url(tables[0]["artifact_path"])
    assert resolved == (artifact, "t.table.json")


def test_relogging_a_table_changed_by_add_data(media_fake: FakeWandb, tmp_path: Path) -> None:
    views = {
        sdk: relog_view(relog_records(media_fake, tmp_path / sdk, sdk, "add_data")) for sdk in SDKS
    }
    official = views["official"]
    assert len(official["artifacts"]) == 1 and len(official["files"]) == 1
    assert json.loads(official["rows"][2])["other"]["nrows"] == 3
    ours = views["nexus"]
    assert ours["files"] == official["files"]
    assert len(ours["artifacts"]) == 1
    strip = [re.sub(r"[0-9a-z]{128}", "<id>", row) for row in ours["rows"]]
    assert strip == [re.sub(r"[0-9a-z]{128}", "<id>", row) for row in official["rows"]]


# --------------------------------------------------------------------------- histograms


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int16, np.uint8])
@pytest.mark.parametrize("bins", [1, 3, 64, 512])
def test_histograms_bin_as_numpy_does(dtype: type, bins: int) -> None:
    """The same counts and edges as numpy.histogram, float32 data in float32, values on edges
    included, contiguous, strided and list input alike."""
    rng = np.random.default_rng(bins)
    samples = [
        rng.normal(size=100_003) * 100,
        np.array([5.0, 5.0]),
        rng.integers(0, 200, size=1001),
        np.arange(7),
        np.array([0.1] * 5 + [0.3]),
    ]
    for data in (sample.astype(dtype) for sample in samples):
        expected = [part.tolist() for part in np.histogram(data, bins=bins)]
        for given in (data, data[::-1][::-1].copy(), np.repeat(data, 2)[::2]):
            histogram = wandb_nexus.Histogram(given, num_bins=bins)
            assert [histogram.histogram, histogram.bins] == expected
    as_list = wandb_nexus.Histogram([1, 2, 2, 3], num_bins=4)
    assert (as_list.histogram, as_list.bins) == ([1, 0, 2, 1], [1.0, 1.5, 2.0, 2.5, 3.0])


# --------------------------------------------------------------------------- array-likes


class FakeTensor:
    """Enough of a torch tensor: its type's module is torch, and it converts as torch does."""

    __module__ = "torch"

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.ndim = array.ndim

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        return self

    def permute(self, *axes: int) -> FakeTensor:
        return FakeTensor(self.array.transpose(axes))

    def numpy(self) -> np.ndarray:
        return self.array


class FakeEagerTensor:
    """A TensorFlow eager tensor's conversion: `.numpy()`."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def numpy(self) -> np.ndarray:
        return self._array


class FakeJaxArray:
    """A JAX array's conversion: `__array__()`, and no `__array_interface__`."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __array__(self) -> np.ndarray:
        return self._array


def test_tensors_and_other_array_likes_are_logged_as_their_arrays(clean_env: Path) -> None:
    hwc = inputs()["RGB"]
    chw = FakeTensor(hwc.transpose(2, 0, 1))
    scores = np.linspace(0.0, 1.0, 40)
    run = wandb_nexus.init(project="tensors", mode="offline")
    run.log(
        {
            "numpy": wandb_nexus.Image(hwc),
            "torch": wandb_nexus.Image(chw),
            "eager": wandb_nexus.Image(FakeEagerTensor(hwc)),
            "jax": wandb_nexus.Image(FakeJaxArray(hwc)),
            "hist": wandb_nexus.Histogram(FakeTensor(scores)),
            "auto": FakeTensor(scores),
            "table": wandb_nexus.Table(columns=["a", "b"], data=FakeTensor(np.eye(2))),
        }
    )
    run.finish()
    (row,) = wandb_log.history_rows(run_records(run))
    digests = {row[key]["sha256"] for key in ("numpy", "torch", "eager", "jax")}
    assert len(digests) == 1, "every array-like gives the numpy array's image"
    expected = [part.tolist() for part in np.histogram(scores, bins=64)]
    assert [row["hist"]["values"], row["hist"]["bins"]] == expected
    auto = [part.tolist() for part in np.histogram(scores, bins=32)]
    assert [row["auto"]["values"], row["auto"]["bins"]] == auto
    assert row["table"]["nrows"] == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32])
def test_long_arrays_in_a_row_bin_as_numpy_does(clean_env: Path, dtype: type) -> None:
    """More than 32 values in log() become wandb's 32-bin histogram of the array, binned as
    numpy bins that dtype (float32 in float32)."""
    scores = (np.random.default_rng(7).normal(size=1000) * 10).astype(dtype)
    run = wandb_nexus.init(project="auto", mode="offline")
    run.log({"scores": scores, "strided": scores[::2]})
    run.finish()
    (row,) = wandb_log.history_rows(run_records(run))
    for key, data in (("scores", scores), ("strided", scores[::2])):
        expected = [part.tolist() for part in np.histogram(data, bins=32)]
        assert [row[key]["values"], row[key]["bins"]] == expected, key
