"""Rich data types logged by handlers running the way Lambda runs them (see
tests/test_lambda_runtime.py): a Table, two Images and a Histogram per invocation, from
tests/lambda_functions/media_functions.py, under the real awslambdaric in the read-only
sandbox, with the strict fake W&B server.

The environment is frozen once an invocation has ended, so whatever the server holds then
was delivered within the invocation: the response first, then the history rows, the media
files and the run_table artifact, committed."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from test_lambda_runtime import (
    assert_ended_in_time,
    assert_nothing_sent_while_handling,
    assert_response_never_waited_for_wandb,
    run_of,
    wandb_env,
)

from conftest import needs_sandbox
from fake_wandb import FakeWandb, RunState
from lambda_emulator import LambdaEmulator

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"
COLUMNS = ["id", "label", "prediction", "confidence"]

pytestmark = needs_sandbox


def event(invocation: int) -> dict[str, Any]:
    """What invocation number `invocation` logs (tests/lambda_functions/media_functions.py)."""
    colour = [40 * (invocation + 1), 7 * invocation, 255 - invocation]
    image = [[colour] * 8 for _ in range(6)]
    mask = [[[255 * ((x + y + invocation) % 2)] * 3 for x in range(5)] for y in range(4)]
    predictions = [
        [f"item-{invocation}-{n}", n % 3, (n + invocation) % 3, 0.5 + n / 8] for n in range(4)
    ]
    scores = [invocation + n / 20 for n in range(20)]
    return {
        "invocation": invocation,
        "predictions": predictions,
        "input": image,
        "mask": mask,
        "scores": scores,
    }


def decoded(png: bytes) -> list[list[list[int]]]:
    """A PNG's pixels as nested lists of RGB values."""
    assert png.startswith(b"\x89PNG")
    with PILImage.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        return [[list(rgb.getpixel((x, y))) for x in range(width)] for y in range(height)]


def media_paths(run: RunState) -> list[str]:
    return sorted(path for path in run.files if path.startswith("media/"))


def assert_media_arrived(fake: FakeWandb, run: RunState, events: list[dict[str, Any]]) -> None:
    """`run` holds one history row per event, in order, each once, with its table, images
    and histogram; each media file was uploaded once with what was logged; each table is
    one committed version of the run's run_table artifact."""
    assert [row["invocation"] for row in run.history] == [e["invocation"] for e in events]
    first_step = run.history[0]["_step"]
    assert [row["_step"] for row in run.history] == list(
        range(first_step, first_step + len(events))
    )
    collection = f"run-{run.name}-predictions"
    artifacts = fake.artifacts(collection)
    # One artifact version per logged table: none pending, none made twice.
    assert len(artifacts) == len(events), [(a.name, a.state) for a in artifacts]
    assert [a.state for a in artifacts] == ["COMMITTED"] * len(events)
    assert [a.version for a in artifacts] == [f"v{n}" for n in range(len(events))]
    assert artifacts[-1].aliases == ["latest"]
    expected_media = []
    for row, sent, artifact in zip(run.history, events, artifacts, strict=True):
        # The table: a file under media/table, and a committed artifact version.
        cell = row["predictions"]
        assert cell["_type"] == "table-file"
        assert cell["path"].startswith("media/table/predictions_")
        assert cell["path"].endswith(".table.json")
        assert (cell["nrows"], cell["ncols"]) == (4, 4)
        table = json.loads(run.files[cell["path"]])
        assert table["columns"] == COLUMNS and table["data"] == sent["predictions"]
        assert (artifact.type, artifact.run_name) == ("run_table", run.name)
        # The artifact's entry is the table as wandb stores it in an artifact (with its
        # column types), the media file only its columns and data, as in wandb.
        assert list(artifact.files) == ["predictions.table.json"]
        stored = json.loads(artifact.files["predictions.table.json"])
        assert stored["_type"] == "table"
        assert (stored["columns"], stored["data"]) == (COLUMNS, sent["predictions"])
        resolved = fake.resolve_client_artifact_url(cell["artifact_path"])
        assert resolved == (artifact, "predictions.table.json")
        # The two images: PNG files under media/images holding the logged pixels.
        for key in ("input", "mask"):
            image = row[key]
            assert image["_type"] == "image-file" and image["format"] == "png"
            assert image["path"].startswith(f"media/images/{key}_")
            assert image["path"].endswith(".png")
            assert (image["height"], image["width"]) == (len(sent[key]), len(sent[key][0]))
            assert decoded(run.files[image["path"]]) == sent[key]
            assert image["size"] == len(run.files[image["path"]])
            expected_media.append(image["path"])
        # The histogram is in the row itself: 10 bins over the scores.
        histogram = row["scores"]
        assert histogram["_type"] == "histogram"
        assert sum(histogram["values"]) == len(sent["scores"]) and len(histogram["values"]) == 10
        assert histogram["bins"][0] == min(sent["scores"])
        assert histogram["bins"][-1] == max(sent["scores"])
        expected_media.append(cell["path"])
    # No other media files, each uploaded once, and announced as uploaded.
    assert media_paths(run) == sorted(expected_media)
    assert set(expected_media) <= set(run.uploaded)
    puts = Counter(
        r.path for r in fake.requests if r.kind == "upload" and f"/{run.name}/media/" in r.path
    )
    assert sorted(puts.values()) == [1] * len(expected_media), puts
    # The summary shows the latest row's media.
    assert run.summary is not None
    assert run.summary["predictions"]["path"] == run.history[-1]["predictions"]["path"]
    assert run.summary["input"]["path"] == run.history[-1]["input"]["path"]


def assert_media_uploaded_after_the_response(fake: FakeWandb, lam: LambdaEmulator) -> None:
    """No media file or artifact upload reached W&B before its invocation's response."""
    for invocation in lam.invocations:
        assert invocation.responded_at is not None
        early = [
            r.path
            for r in fake.requests
            if r.kind == "upload"
            and invocation.dispatched_at <= r.received_at <= invocation.responded_at
        ]
        assert early == [], early


def test_media_of_each_invocation_arrive_after_the_response_once(fake: FakeWandb) -> None:
    fake.latency = 0.2  # every W&B request takes a fifth of a second
    with LambdaEmulator(
        FUNCTIONS, "media_functions.per_invocation", env=wandb_env(fake), timeout=20
    ) as lam:
        first = lam.invoke(event(0), pause=0.2)
        # Frozen now: the run, its media and its table artifact are on the server.
        run = run_of(fake, first)
        assert run.complete and run.exitcode == 0
        assert run.console[0].endswith("logged media of invocation 0")
        assert_media_arrived(fake, run, [event(0)])
        second = lam.invoke(event(1), pause=0.2)
        assert_media_arrived(fake, run_of(fake, second), [event(1)])
        # The first run got nothing more.
        assert_media_arrived(fake, run, [event(0)])
        assert lam.child_processes() == []
    assert [inv.body["step"] for inv in lam.invocations] == [1, 1]
    assert len(fake.runs()) == 2 and len(fake.artifacts()) == 2
    assert_ended_in_time(lam)
    assert_nothing_sent_while_handling(fake, lam)
    assert_response_never_waited_for_wandb(fake, lam)
    assert_media_uploaded_after_the_response(fake, lam)


def test_media_of_an_environments_run_arrive_once_across_frozen_invocations(
    fake: FakeWandb,
) -> None:
    fake.latency = 0.2
    with LambdaEmulator(
        FUNCTIONS, "media_functions.per_environment", env=wandb_env(fake), timeout=20
    ) as lam:
        sent = []
        for number in range(3):
            sent.append(event(number))
            lam.invoke(sent[-1], pause=0.2)
            run = fake.single_run()
            # Everything logged so far arrived before the freeze, once; the run stays open.
            assert_media_arrived(fake, run, sent)
            assert not run.complete
        assert [inv.body["step"] for inv in lam.invocations] == [1, 2, 3]
        # numpy and the media fit Lambda's smallest size (enforced where cgroups allow).
        assert lam.memory_mb == 128 and lam.peak_rss_mb() < 128
    assert_ended_in_time(lam)
    assert_nothing_sent_while_handling(fake, lam)
    assert_response_never_waited_for_wandb(fake, lam)
    assert_media_uploaded_after_the_response(fake, lam)
