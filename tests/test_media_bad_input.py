"""Bad input to the rich data types (Image, Table, Histogram, Audio): each is refused with an
error of our types (InvalidValueError, a ValueError, when a value is built; UnsupportedValueError,
a TypeError naming the key, when log() cannot take it) whose message names the problem, and
refusing it loses nothing logged before or after and leaves no trace of the bad value: no
history row, no file under files/media, no FilesRecord or artifact record announcing one.

Runs are offline (no API key), in the fresh working directory of `clean_env`."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import wandb_nexus as wandb
from wandb_nexus.errors import InvalidValueError, UnsupportedValueError

import wandb_log
from conftest import run_records

# --- helpers -------------------------------------------------------------------------------


def logged_rows(run: wandb.Run) -> list[dict[str, Any]]:
    rows = wandb_log.history_rows(run_records(run))
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]


def media_on_disk(run: wandb.Run) -> list[str]:
    """Files under the run's files/media, relative to files/."""
    assert run.sync_dir is not None
    files = Path(run.sync_dir) / "files"
    return sorted(str(p.relative_to(files)) for p in (files / "media").rglob("*") if p.is_file())


def announced_files(run: wandb.Run) -> list[str]:
    """Paths of every FilesRecord of the run's log."""
    return [
        item.path
        for record in run_records(run)
        if record.WhichOneof("record_type") == "files"
        for item in record.files.files
    ]


def png_header(width: int, height: int) -> bytes:
    """A PNG file whose header claims `width` x `height` (8-bit RGB), without pixel data: an
    image reader that trusts the header must not allocate for it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def real_png(path: Path, value: int, size: tuple[int, int] = (3, 3)) -> bytes:
    """Writes a small uniform PNG (through the run's own encoder) and returns its bytes."""
    from PIL import Image as PILImage

    PILImage.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)
    return path.read_bytes()


def assert_refused_without_trace(
    bad: Callable[[wandb.Run], object],
    error: type[Exception],
    match: str,
) -> Exception:
    """Logs {"ok": 1}, then `bad(run)`, which must raise `error` matching `match`, then
    {"ok": 3}: both good rows are kept and nothing of the bad call is. Returns the error."""
    run = wandb.init()
    run.log({"ok": 1})
    with pytest.raises(error, match=match) as refused:
        bad(run)
    run.log({"ok": 3})
    run.finish()
    assert logged_rows(run) == [{"ok": 1}, {"ok": 3}]
    assert media_on_disk(run) == []
    assert [p for p in announced_files(run) if p.startswith("media/")] == []
    assert "artifact" not in wandb_log.kinds(run_records(run))
    # Our errors are also the standard ones code already catches.
    standard = TypeError if issubclass(error, UnsupportedValueError) else ValueError
    assert isinstance(refused.value, standard)
    return refused.value


def log_image(make: Callable[[], Any]) -> Callable[[wandb.Run], object]:
    return lambda run: run.log({"ok": 2, "img": wandb.Image(make())})


# --- images --------------------------------------------------------------------------------


def float_image_with(value: float) -> np.ndarray:
    image = np.full((4, 4, 3), 0.5)
    image[1, 2, 0] = value
    return image


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: np.zeros((4, 4, 2), np.uint8), r"unsupported array shape \[4, 4, 2\]"),
        (lambda: np.zeros((2, 4, 4, 3), np.uint8), r"unsupported array shape \[2, 4, 4, 3\]"),
        (lambda: np.zeros((4,), np.uint8), r"unsupported array shape \[4\]"),
        (lambda: np.zeros((0, 4), np.uint8), r"an image cannot be empty"),
        (lambda: np.zeros((4, 4), np.complex64), r'unsupported array dtype "<c8"'),
        (lambda: np.zeros((4, 4), object), r"unsupported array type \"\|O\""),
        (lambda: np.array([["a", "b"], ["c", "d"]]), r'unsupported array dtype "<U1"'),
        (lambda: np.array([[b"a", b"b"]]), r'unsupported array dtype "\|S1"'),
        (lambda: float_image_with(math.nan), r"pixel values must be finite"),
        (lambda: float_image_with(math.inf), r"pixel values must be finite"),
        (lambda: float_image_with(-math.inf).astype(np.float32), r"pixel values must be finite"),
        (lambda: [[0, 1], [2, 3]], r"Image needs a numpy array, a PIL image or a path, got list"),
        (lambda: np.zeros((10001, 10000), np.uint8), r"at most 100 megapixels, got 10000x10001"),
    ],
    ids=[
        "HxWx2",
        "4-D",
        "1-D",
        "empty",
        "complex",
        "object",
        "strings",
        "bytes",
        "nan",
        "inf",
        "-inf-float32",
        "list",
        "over-100-megapixels",
    ],
)
def test_bad_image_arrays_are_refused(make: Callable[[], Any], match: str) -> None:
    assert_refused_without_trace(log_image(make), InvalidValueError, match)


def test_squeezable_arrays_are_images_as_in_wandb() -> None:
    # numpy's squeeze first, as wandb: 1xHxWx3 is an HxWx3 image (the 4-D case above is not).
    image = wandb.Image(np.zeros((1, 5, 4, 3), np.uint8))
    assert (image.width, image.height) == (4, 5)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.png", None, r"cannot read .*missing\.png.*No such file"),
        ("x.png", b"hello, I am not an image\n", r"x\.png is not an image file wandb can show"),
        ("empty.png", b"", r"empty\.png is not an image file wandb can show"),
        ("cut.png", png_header(4, 4)[:12], r"cut\.png is not an image file wandb can show"),
        ("picture.txt", png_header(4, 4), r"picture\.txt is not a PNG, JPEG, GIF, BMP or WebP"),
        ("huge.png", png_header(20000, 20000), r"at most 100 megapixels, got 20000x20000"),
        ("over.png", png_header(10001, 10000), r"at most 100 megapixels, got 10001x10000"),
    ],
    ids=[
        "missing",
        "text-named-png",
        "empty-file",
        "cut-short-png",
        "png-named-txt",
        "huge",
        "just-over",
    ],
)
def test_bad_image_files_are_refused(name: str, content: bytes | None, match: str) -> None:
    if content is not None:
        Path(name).write_bytes(content)
    assert_refused_without_trace(log_image(lambda: name), InvalidValueError, match)
    assert_refused_without_trace(log_image(lambda: Path(name)), InvalidValueError, match)


def test_an_image_of_exactly_100_megapixels_by_its_header_is_accepted() -> None:
    Path("edge.png").write_bytes(png_header(10000, 10000))
    image = wandb.Image("edge.png")
    assert (image.width, image.height) == (10000, 10000)


def test_a_non_string_caption_is_converted() -> None:
    pixels = np.zeros((2, 3), np.uint8)
    assert wandb.Image(pixels, caption=5).caption == "5"
    assert wandb.Image(wandb.Image(pixels, caption=1.5)).caption == "1.5"
    run = wandb.init()
    run.log({"a": wandb.Image(pixels, caption=5), "b": wandb.Image(pixels, caption=["x", 1])})
    run.finish()
    (row,) = logged_rows(run)
    assert row["a"]["caption"] == "5" and row["b"]["caption"] == "['x', 1]"
    assert (row["a"]["width"], row["a"]["height"]) == (3, 2)


# The core copies an array whole before checking its size: refusing an oversized image costs
# as much memory again as the image (on Lambda, enough to be killed instead of getting the
# error). Measured by the peak RSS: the copy goes to address space mimalloc has already
# reserved, so neither strace nor RLIMIT_AS sees it.
MEMORY_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import wandb_nexus as wandb

    def status_kb(field):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith(field)).split()[1])

    pixels = np.full((10001, 10000), 7, np.uint8)  # 100 MB, in memory
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak RSS (VmHWM) starts again from the RSS now
    before = status_kb("VmRSS:")
    try:
        wandb.Image(pixels)
    except wandb.InvalidValueError as err:
        error = str(err)
    print(json.dumps({"error": error, "grew_mb": (status_kb("VmHWM:") - before) / 1024}))
    """
)


# Logs 400 distinct 256x256x3 images (75 MiB of pixels) as fast as it can, each Image made
# and dropped in the loop: the writer, encoding each in about a millisecond, falls behind.
FLOOD_SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import numpy as np
    import wandb_nexus as wandb

    def status_kb(field):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith(field)).split()[1])

    frames = np.random.default_rng(0).integers(0, 256, (8, 256, 256, 3), dtype=np.uint8)
    run = wandb.init(project="flood", mode="offline")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = status_kb("VmRSS:")
    for i in range(400):
        frame = frames[i % 8].copy()
        frame[0, 0, 0] = i % 256
        frame[0, 0, 1] = i // 256
        run.log({"img": wandb.Image(frame)})
    grew = (status_kb("VmHWM:") - before) / 1024
    run.finish()
    images = os.listdir(os.path.join(run.dir, "media", "images"))
    print(json.dumps({"grew_mb": grew, "images": len(images)}))
    """
)


def run_python(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    """Runs `source` in a fresh interpreter with this one's path."""
    script = tmp_path / "script.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
    )


def run_script(tmp_path: Path, source: str) -> Any:
    """Runs `source` as `run_python` does; it must succeed. Returns its JSON output."""
    out = run_python(tmp_path, source)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_images_logged_faster_than_they_are_encoded_hold_bounded_memory(tmp_path: Path) -> None:
    """Queued images weigh on the writer's backlog by their pixels, so `log()` waits for the
    writer rather than holding every image logged in memory (75 MiB here)."""
    result = run_script(tmp_path, FLOOD_SCRIPT)
    assert result["images"] == 400
    assert result["grew_mb"] < 35, result  # 65 MiB when queued images weighed nothing


def test_an_oversized_image_array_is_refused_before_it_is_copied(tmp_path: Path) -> None:
    result = run_script(tmp_path, MEMORY_SCRIPT)
    assert "at most 100 megapixels" in result["error"]
    assert result["grew_mb"] < 30, result


def test_a_huge_broadcast_image_is_refused_by_its_size() -> None:
    huge = np.broadcast_to(np.uint8(0), (2**20, 2**20))  # a terapixel of one byte
    with pytest.raises(InvalidValueError, match="at most 100 megapixels"):
        wandb.Image(huge)


# --- image files that change after they are given ------------------------------------------


def test_an_image_file_deleted_before_log_is_not_logged_as_null() -> None:
    original = real_png(Path("plot.png"), 10)
    image = wandb.Image("plot.png")
    os.remove("plot.png")
    run = wandb.init()
    run.log({"ok": 1})
    try:
        run.log({"ok": 2, "gone": image})
        refused = None
    except (InvalidValueError, UnsupportedValueError) as err:
        refused = err
    run.log({"ok": 3})
    run.finish()
    rows = logged_rows(run)
    if refused is not None:  # refused at log(), naming the key: nothing of it is kept
        assert "gone" in str(refused)
        assert rows == [{"ok": 1}, {"ok": 3}]
        assert media_on_disk(run) == []
    else:  # or read when it was given: the image is logged whole
        cell = rows[1]["gone"]
        assert cell is not None and cell["_type"] == "image-file", rows
        stored = Path(run.sync_dir or "") / "files" / cell["path"]
        assert stored.read_bytes() == original


def test_an_image_file_overwritten_after_log_keeps_what_was_logged() -> None:
    rng = np.random.default_rng(0)
    run = wandb.init()
    # A few big images queued first keep the writer busy while the file changes.
    for _ in range(8):
        run.log({"busy": wandb.Image(rng.integers(0, 255, (800, 800, 3), dtype=np.uint8))})
    logged = []
    for value, size in ((10, (3, 3)), (200, (5, 4))):
        logged.append(real_png(Path("plot.png"), value, size))
        run.log({"plot": wandb.Image("plot.png")})
    run.finish()
    rows = [row["plot"] for row in logged_rows(run) if "plot" in row]
    assert [(row["height"], row["width"]) for row in rows] == [(3, 3), (5, 4)]
    stored = [(Path(run.sync_dir or "") / "files" / row["path"]).read_bytes() for row in rows]
    assert stored == logged


# --- tables --------------------------------------------------------------------------------


def test_a_row_with_the_wrong_number_of_cells_is_refused_at_construction() -> None:
    def bad(run: wandb.Run) -> None:
        run.log({"ok": 2, "t": wandb.Table(columns=["a", "b"], data=[[1, 2], [3]])})

    assert_refused_without_trace(
        bad, InvalidValueError, r"row 1 has 1 cells, but the table has 2 columns"
    )


def test_add_data_with_the_wrong_number_of_cells_is_refused_and_leaves_the_table() -> None:
    table = wandb.Table(columns=["a", "b"])
    table.add_data(1, 2)
    for cells in ((3,), (3, 4, 5), ()):
        with pytest.raises(InvalidValueError, match=r"expects 2 columns: \['a', 'b'\], found"):
            table.add_data(*cells)
    assert table.data == [[1, 2]]
    run = wandb.init()
    run.log({"t": table})
    run.finish()
    (row,) = logged_rows(run)
    assert (row["t"]["nrows"], row["t"]["ncols"]) == (1, 2)
    assert json.loads((Path(run.sync_dir or "") / "files" / row["t"]["path"]).read_text()) == {
        "columns": ["a", "b"],
        "data": [[1, 2]],
    }


def test_a_cell_of_an_unsupported_type_is_refused_at_construction() -> None:
    def bad(run: wandb.Run) -> None:
        run.log({"ok": 2, "t": wandb.Table(columns=["a", "b"], data=[[1, 2], [3, object()]])})

    assert_refused_without_trace(
        bad, InvalidValueError, r'row 1, column "b": object is not a supported value type'
    )


def test_a_cell_of_an_unsupported_type_added_later_is_refused_by_log_naming_the_key() -> None:
    table = wandb.Table(columns=["a", "b"], data=[[1, 2]])
    table.add_data(3, object())  # cells are checked when the table is logged

    def bad(run: wandb.Run) -> None:
        run.log({"ok": 2, "eval": {"t": table}})

    error = assert_refused_without_trace(bad, UnsupportedValueError, r"cannot log \"eval\.t\"")
    assert 'row 1, column "b": object is not a supported value type' in str(error)


def test_a_cell_of_an_unsupported_type_is_named_by_its_column() -> None:
    with pytest.raises(InvalidValueError) as refused:
        wandb.Table(columns=["a", "b"], data=[[1, object()]])
    assert "row 0" in str(refused.value)
    assert re.search(r"column ['\"]?b\b", str(refused.value)), str(refused.value)


def test_mixed_column_types_are_refused_at_construction_naming_row_and_column() -> None:
    # wandb raises TypeError in add_data; a Table built from data is checked at once here.
    def bad(run: wandb.Run) -> None:
        run.log({"ok": 2, "t": wandb.Table(columns=["a", "b"], data=[[1, "x"], ["y", "z"]])})

    assert_refused_without_trace(
        bad,
        InvalidValueError,
        r'row 1 has a string in column "a", which holds number values'
        r" \(pass allow_mixed_types=True to allow this\)",
    )


def test_mixed_column_types_added_later_are_refused_by_log_naming_key_row_and_column() -> None:
    # wandb raises TypeError at add_data; here add_data takes the row and log() refuses the
    # table with a TypeError (UnsupportedValueError) naming the key, the row and the column.
    table = wandb.Table(columns=["a", "b"])
    table.add_data(1, "x")
    table.add_data("y", "z")

    def bad(run: wandb.Run) -> None:
        run.log({"ok": 2, "t": table})

    error = assert_refused_without_trace(bad, UnsupportedValueError, r'cannot log "t"')
    assert 'row 1 has a string in column "a", which holds number values' in str(error)
    assert "allow_mixed_types=True" in str(error)


def test_allow_mixed_types_accepts_mixed_columns() -> None:
    built = wandb.Table(columns=["a", "b"], data=[[1, "x"], ["y", "z"]], allow_mixed_types=True)
    added = wandb.Table(columns=["a", "b"], allow_mixed_types=True)
    added.add_data(1, "x")
    added.add_data("y", None)
    added.add_data(2.5, True)
    run = wandb.init()
    run.log({"built": built, "added": added})
    run.finish()
    (row,) = logged_rows(run)
    files = Path(run.sync_dir or "") / "files"
    assert json.loads((files / row["built"]["path"]).read_text())["data"] == [
        [1, "x"],
        ["y", "z"],
    ]
    assert json.loads((files / row["added"]["path"]).read_text())["data"] == [
        [1, "x"],
        ["y", None],
        [2.5, True],
    ]
    assert sorted(media_on_disk(run)) == sorted([row["built"]["path"], row["added"]["path"]])


# --- histograms and audio ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: wandb.Histogram([]), r"cannot make a histogram of an empty sequence"),
        (lambda: wandb.Histogram(np.array([])), r"cannot make a histogram of an empty sequence"),
        (lambda: wandb.Histogram([math.nan] * 3), r"sequence that is all NaN"),
        (
            lambda: wandb.Histogram(np.full(3, np.nan, np.float32)),
            r"sequence that is all NaN",
        ),
        (lambda: wandb.Histogram([1.0, math.nan, 2.0]), r"with NaN or infinite values"),
        (lambda: wandb.Histogram(np.array([1.0, math.inf])), r"with NaN or infinite values"),
        (lambda: wandb.Histogram(["a", "b"]), r"item 0 of the sequence is not a number: 'a'"),
        (lambda: wandb.Histogram([1, 2, 3], num_bins=513), r"at most 512 bins, got 513"),
        (
            lambda: wandb.Histogram([1, 2, 3], num_bins=0),
            r"num_bins must be a whole number from 1 to 512",
        ),
        (
            lambda: wandb.Histogram(np_histogram=([1, 2, 3], [0, 1, 2])),
            r"len\(bins\) must be len\(values\) \+ 1, got 3 bins for 3 values",
        ),
        (
            lambda: wandb.Histogram(np_histogram=([1], [0, 1, 2, 3])),
            r"len\(bins\) must be len\(values\) \+ 1, got 4 bins for 1 values",
        ),
        (
            lambda: wandb.Histogram(np_histogram=([1], [0, 1], [2])),
            r"np_histogram must be a \(values, bins\) pair",
        ),
        (lambda: wandb.Histogram(), r"Histogram needs a sequence or np_histogram"),
        (
            lambda: wandb.Audio(np.zeros(100, np.float32)),
            r'Argument "sample_rate" is required when instantiating Audio with raw data',
        ),
        (
            lambda: wandb.Audio(np.full(10, np.nan, np.float32), sample_rate=100),
            r"audio samples must be finite",
        ),
        (lambda: wandb.Audio("missing.wav"), r"cannot read missing\.wav"),
    ],
    ids=[
        "empty",
        "empty-array",
        "all-nan",
        "all-nan-float32",
        "nan-mixed-in",
        "inf-mixed-in",
        "strings",
        "513-bins",
        "0-bins",
        "np-histogram-3-bins-3-values",
        "np-histogram-4-bins-1-value",
        "np-histogram-triple",
        "nothing",
        "audio-without-sample-rate",
        "audio-nan",
        "audio-missing-file",
    ],
)
def test_bad_histograms_and_audio_are_refused(make: Callable[[], Any], match: str) -> None:
    assert_refused_without_trace(
        lambda run: run.log({"ok": 2, "h": make()}), InvalidValueError, match
    )


def test_a_histogram_of_512_bins_is_accepted() -> None:
    histogram = wandb.Histogram([1, 2, 3], num_bins=512)
    assert len(histogram.histogram) == 512 and len(histogram.bins) == 513


def test_a_negative_number_of_bins_is_refused_clearly() -> None:
    with pytest.raises(InvalidValueError, match="bin"):
        wandb.Histogram([1, 2, 3], num_bins=-1)


# --- media in the config -------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: wandb.Image(np.zeros((2, 2), np.uint8)),
        lambda: wandb.Table(columns=["a"], data=[[1]]),
    ],
    ids=["image", "table"],
)
def test_media_in_the_config_is_refused_and_changes_nothing(make: Callable[[], Any]) -> None:
    kind = type(make()).__name__
    run = wandb.init(config={"lr": 0.1})
    run.log({"ok": 1})
    refusal = rf'cannot set config "{{}}": {kind} cannot be stored in the config \(log it instead\)'
    with pytest.raises(UnsupportedValueError, match=refusal.format("img")):
        run.config.update({"other": 2, "img": make()})
    with pytest.raises(UnsupportedValueError, match=refusal.format("img")):
        run.config["img"] = make()
    with pytest.raises(UnsupportedValueError, match=refusal.format("img")):
        run.config.img = make()
    with pytest.raises(UnsupportedValueError, match=refusal.format(r"nested\.img")):
        run.config.update({"nested": {"img": make()}})
    assert dict(run.config) == {"lr": 0.1}
    run.log({"ok": 3})
    run.finish()
    assert logged_rows(run) == [{"ok": 1}, {"ok": 3}]
    config = wandb_log.config(run_records(run))
    assert {k: v for k, v in config.items() if k != "_wandb"} == {"lr": 0.1}
    assert media_on_disk(run) == [] and announced_files(run) == []


def test_media_in_the_config_of_init_is_refused_and_starts_no_run() -> None:
    image = wandb.Image(np.zeros((2, 2), np.uint8))
    with pytest.raises(UnsupportedValueError, match=r'cannot set config "img": Image'):
        wandb.init(config={"lr": 0.1, "img": image})
    assert wandb.run is None
    assert not Path("wandb").exists() or list(Path("wandb").rglob("*.wandb")) == []


# --- not crashing, and not loading what is not used ----------------------------------------

CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import wandb_nexus as wandb

    run = wandb.init()
    run.log({"ok": 1})
    print(run.sync_dir, flush=True)
    bad = [
        lambda: wandb.Image(np.zeros((4, 4, 2), np.uint8)),
        lambda: wandb.Image(np.zeros((4, 4), np.complex128)),
        lambda: wandb.Image(np.full((4, 4), np.nan)),
        lambda: wandb.Image("missing.png"),
        lambda: wandb.Table(columns=["a"], data=[[1], [2, 3]]),
        lambda: wandb.Table(columns=["a"], data=[[object()]]),
        lambda: wandb.Histogram([]),
        lambda: wandb.Histogram([float("nan")]),
        lambda: wandb.Histogram([1], num_bins=513),
        lambda: run.config.update({"img": wandb.Image(np.zeros((2, 2), np.uint8))}),
    ]
    for make in bad:
        try:
            make()
        except (wandb.InvalidValueError, wandb.UnsupportedValueError):
            pass
    run.log({"ok": 2})
    # The last one is not caught: the program dies of it, as of any Python exception.
    run.log({"img": wandb.Image(np.zeros((2, 4, 4, 3), np.uint8))})
    """
)


def test_bad_media_do_not_crash_the_interpreter(tmp_path: Path) -> None:
    out = run_python(tmp_path, CRASH_SCRIPT)
    # An uncaught exception exits with 1 and its traceback (no abort, no Rust panic).
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.rstrip().endswith(
        "wandb_nexus.errors.InvalidValueError: unsupported array shape [2, 4, 4, 3] for an"
        " image (use HxW, HxWx1, HxWx3 or HxWx4)"
    ), out.stderr
    assert "panicked" not in out.stderr
    # The run was finished at exit, failed, with both good rows.
    sync_dir = Path(out.stdout.splitlines()[0])
    records = wandb_log.read_records(sync_dir / f"run-{sync_dir.name.rsplit('-', 1)[1]}.wandb")
    rows = wandb_log.history_rows(records)
    assert [row["ok"] for row in rows] == [1, 2]
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 1


LAZY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import wandb_nexus

    heavy = ("numpy", "PIL", "pandas", "wandb_nexus._media", "wandb_nexus.plot")
    loaded = lambda: sorted(m for m in heavy if m in sys.modules)
    after_import = loaded()
    # First access loads the data types, still without numpy, PIL or pandas.
    from wandb_nexus import Histogram, Table
    kinds = [wandb_nexus.Image.__name__, wandb_nexus.Audio.__name__, wandb_nexus.Html.__name__]
    table = Table(columns=["a"], data=[[1], [2]])
    histogram = Histogram([1, 2, 3], num_bins=3)
    html = wandb_nexus.Html("<p>hi</p>")
    after_use = loaded()
    plot = wandb_nexus.plot.line(table, "a", "a")
    print(json.dumps({
        "after_import": after_import,
        "kinds": [*kinds, Table.__name__, Histogram.__name__],
        "histogram": histogram.histogram,
        "html": "<p>hi</p>" in html.html,
        "after_use": after_use,
        "after_plot": loaded(),
        "plot": type(plot).__name__,
    }))
    """
)


def test_import_loads_no_data_libraries_and_media_types_load_on_first_use(
    tmp_path: Path,
) -> None:
    result = run_script(tmp_path, LAZY_SCRIPT)
    assert result["after_import"] == []
    assert result["kinds"] == ["Image", "Audio", "Html", "Table", "Histogram"]
    assert result["histogram"] == [1, 1, 1] and result["html"]
    assert result["after_use"] == ["wandb_nexus._media"]
    assert result["after_plot"] == ["wandb_nexus._media", "wandb_nexus.plot"]
    assert result["plot"] == "CustomChart"
