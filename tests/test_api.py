"""The wandb-like API: init, log with wandb's step semantics, config, summary, define_metric,
finish, context-manager use and the module-level helpers."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

import wandb_nexus as wandb

import wandb_log
from conftest import run_records


def test_init_from_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "env-project")
    monkeypatch.setenv("WANDB_ENTITY", "env-entity")
    monkeypatch.setenv("WANDB_TAGS", "a,b")
    monkeypatch.setenv("WANDB_RUN_GROUP", "g")
    run = wandb.init(project="arg-project", name="my-run", notes="n", job_type="train")
    assert (run.project, run.entity, run.name) == ("arg-project", "env-entity", "my-run")
    assert run.mode == "offline" and run.offline and run.url is None
    assert len(run.id) == 8 and run.path == f"env-entity/arg-project/{run.id}"
    assert wandb.run is run
    run.finish()
    assert wandb.run is None
    record = next(r.run for r in run_records(run) if r.WhichOneof("record_type") == "run")
    assert (record.project, record.entity, record.display_name) == (
        "arg-project",
        "env-entity",
        "my-run",
    )
    assert list(record.tags) == ["a", "b"]
    assert (record.run_group, record.job_type, record.notes) == ("g", "train", "n")


def test_a_run_offline_for_want_of_a_key_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    for asked in (None, "online"):
        if asked:
            monkeypatch.setenv("WANDB_MODE", asked)
        with pytest.warns(UserWarning, match=r"no W&B API key .* WANDB_API_KEY_SECRET_ARN"):
            run = wandb.init(project="keyless")
        run.finish()
        assert run.offline
    monkeypatch.setenv("WANDB_MODE", "offline")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # offline as asked for: nothing to explain
        wandb.init(project="keyless").finish()


def test_run_directory_layout(clean_env: Path) -> None:
    run = wandb.init(id="abc123")
    run.finish()
    sync_dir = Path(run.sync_dir)
    assert sync_dir.parent == clean_env / "wandb"
    assert sync_dir.name.startswith("offline-run-") and sync_dir.name.endswith("-abc123")
    assert (sync_dir / "run-abc123.wandb").read_bytes()[:7] == b":W&B\xe1\xbe\x00"
    files = sorted(p.name for p in (sync_dir / "files").iterdir())
    assert files == ["config.yaml", "output.log", "wandb-metadata.json", "wandb-summary.json"]
    assert run.dir == str(sync_dir / "files")


def steps_of(run: wandb.Run) -> list[dict]:
    rows = wandb_log.history_rows(run_records(run))
    return [{k: v for k, v in row.items() if k not in ("_runtime", "_timestamp")} for row in rows]


def test_step_semantics_match_wandb() -> None:
    run = wandb.init()
    run.log({"a": 1})  # step 0
    run.log({"b": 2}, commit=False)  # pending at step 1
    run.log({"c": 3})  # step 1 gets b and c
    run.log({"d": 4}, step=5)  # step 1 -> 5, pending
    run.log({"e": 5}, step=5)  # merged into step 5
    with pytest.warns(UserWarning, match="step 2 is older than the current step 5"):
        run.log({"old": 1}, step=2)
    run.log({"f": 6}, step=7)  # flushes 5, pending at 7
    run.log({"g": 7}, step=7, commit=True)  # flushes 7
    run.log({"h": 8})  # step 8
    assert run.step == 9
    run.finish()
    assert steps_of(run) == [
        {"a": 1, "_step": 0},
        {"b": 2, "c": 3, "_step": 1},
        {"d": 4, "e": 5, "_step": 5},
        {"f": 6, "g": 7, "_step": 7},
        {"h": 8, "_step": 8},
    ]


def test_pending_row_is_written_at_finish() -> None:
    run = wandb.init()
    run.log({"x": 1}, step=3)
    run.finish()
    assert steps_of(run) == [{"x": 1, "_step": 3}]


def test_later_keys_overwrite_and_nested_dicts_merge() -> None:
    run = wandb.init()
    run.log({"a": 1, "d": {"x": 1}}, commit=False)
    run.log({"a": 2, "d": {"y": 2}})
    run.finish()
    assert steps_of(run) == [{"a": 2, "d": {"x": 1, "y": 2}, "_step": 0}]


def test_history_items_are_keys_or_nested_keys_with_json_values() -> None:
    run = wandb.init()
    run.log({"loss": 0.5, "d": {"x": float("nan")}, "inf": float("-inf")})
    run.finish()
    history = next(r.history for r in run_records(run) if r.WhichOneof("record_type") == "history")
    # A top-level key goes in `key`, as the official SDK writes it; a nested one as its path.
    assert {i.key for i in history.item if not i.nested_key} >= {"loss", "inf", "_step"}
    items = {wandb_log.item_path(i): i.value_json for i in history.item}
    assert items[("loss",)] == "0.5"
    assert items[("d", "x")] == "NaN"
    assert items[("inf",)] == "-Infinity"
    assert items[("_step",)] == "0"
    assert history.step.num == 0
    assert float(items[("_runtime",)]) >= 0 and float(items[("_timestamp",)]) > 1.7e9


def test_timestamp_and_step_from_user() -> None:
    run = wandb.init()
    run.log({"_timestamp": 123.5, "_step": 99, "v": 1})
    run.finish()
    assert steps_of(run) == [{"v": 1, "_step": 0}]
    assert wandb_log.history_rows(run_records(run))[0]["_timestamp"] == 123.5


def test_config_access_and_updates() -> None:
    run = wandb.init(config={"lr": 0.1, "nested": {"a": 1}})
    assert run.config.lr == 0.1 and run.config["nested"] == {"a": 1}
    run.config.batch = 32
    run.config["opt"] = "adam"
    run.config.update({"nested": {"b": 2}}, epochs=3)
    assert "batch" in run.config and len(run.config) == 5
    assert run.config.get("missing", 7) == 7
    with pytest.raises(AttributeError):
        _ = run.config.missing
    run.finish()
    assert run.config.as_dict()["epochs"] == 3
    assert run.config.nested == {"a": 1, "b": 2}
    assert wandb_log.config(run_records(run)) == {
        "_wandb": {},
        "lr": 0.1,
        "nested": {"a": 1, "b": 2},
        "batch": 32,
        "opt": "adam",
        "epochs": 3,
    }
    config_yaml = (Path(run.dir) / "config.yaml").read_text()
    assert "lr:\n    value: 0.1\n" in config_yaml
    assert "nested:\n    value:\n        a: 1\n        b: 2\n" in config_yaml


def test_config_from_argparse_namespace() -> None:
    import argparse

    run = wandb.init(config=argparse.Namespace(lr=0.5, layers=3))
    assert run.config.layers == 3
    run.finish()


def test_summary_tracks_latest_values_and_user_values() -> None:
    run = wandb.init()
    run.log({"loss": 2.0, "d": {"x": 1}})
    run.log({"loss": 1.0})
    assert run.summary["loss"] == 1.0
    assert run.summary["d"] == {"x": 1}
    run.summary["best"] = 3
    run.summary.update({"note": "ok"})
    del run.summary["note"]
    assert "note" not in run.summary and run.summary.get("note", "gone") == "gone"
    with pytest.raises(KeyError):
        del run.summary["never-set"]
    run.finish()
    stored = wandb_log.summary(run_records(run))
    assert stored["loss"] == 1.0 and stored["best"] == 3 and stored["_step"] == 1
    assert "note" not in stored and stored["_wandb"] == {"runtime": 0}
    summary_file = (Path(run.dir) / "wandb-summary.json").read_text()
    assert '"best":3' in summary_file and '"loss":1.0' in summary_file


def test_define_metric_summaries_and_step_metric() -> None:
    run = wandb.init()
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch", summary="min,max,mean")
    run.define_metric("acc", summary="best", goal="maximize")
    run.log({"epoch": 0})
    for loss, acc in ((3.0, 0.1), (1.0, 0.7), (2.0, 0.5)):
        run.log({"val/loss": loss, "acc": acc})
    run.finish()
    rows = wandb_log.history_rows(run_records(run))
    assert all(row["epoch"] == 0 for row in rows)
    stored = wandb_log.summary(run_records(run))
    assert stored["val/loss"] == {"min": 1.0, "max": 3.0, "mean": 2.0}
    assert stored["acc"] == {"best": 0.7}
    metrics = [r.metric for r in run_records(run) if r.WhichOneof("record_type") == "metric"]
    assert [m.name or m.glob_name for m in metrics] == ["epoch", "val/*", "acc"]
    assert metrics[1].step_metric == "epoch" and metrics[1].options.step_sync
    assert metrics[2].goal == 2


def test_define_metric_rejects_bad_arguments() -> None:
    run = wandb.init()
    with pytest.raises(wandb.UsageError, match="goal"):
        run.define_metric("x", goal="upwards")
    with pytest.raises(ValueError, match="unknown summary"):
        run.define_metric("x", summary="median")


def test_finish_records_exit_and_is_idempotent() -> None:
    run = wandb.init()
    run.log({"a": 1})
    run.finish(exit_code=3)
    run.finish()
    records = run_records(run)
    assert wandb_log.kinds(records)[-1] == "exit"
    assert records[-1].exit.exit_code == 3
    assert [r.num for r in records] == list(range(1, len(records) + 1))


def test_context_manager_exit_codes() -> None:
    with wandb.init() as ok:
        ok.log({"a": 1})
    assert run_records(ok)[-1].exit.exit_code == 0
    with pytest.raises(RuntimeError), wandb.init() as failed:
        failed.log({"a": 1})
        raise RuntimeError("boom")
    assert run_records(failed)[-1].exit.exit_code == 1
    assert wandb_log.history_rows(run_records(failed))[0]["a"] == 1


def test_module_level_log_and_finish() -> None:
    with pytest.raises(wandb.UsageError, match="init"):
        wandb.log({"a": 1})
    run = wandb.init()
    wandb.log({"a": 1})
    wandb.define_metric("a", summary="max")
    wandb.log({"a": 5})
    wandb.finish()
    assert wandb.run is None and run.finished
    assert [row["a"] for row in wandb_log.history_rows(run_records(run))] == [1, 5]


def test_use_after_finish_is_a_clear_error_and_keeps_data() -> None:
    run = wandb.init()
    run.log({"a": 1})
    run.finish()
    with pytest.raises(wandb.UsageError, match="finished"):
        run.log({"a": 2})
    with pytest.raises(ValueError, match="finished"):
        run.summary["x"] = 1
    with pytest.raises(wandb.UsageError, match="finished"):
        run.config.update({"x": 1})
    assert wandb_log.history_rows(run_records(run))[0]["a"] == 1


def test_reinit_choices() -> None:
    first = wandb.init()
    assert wandb.init() is first
    second = wandb.init(reinit="finish_previous")
    assert first.finished and second is not first
    third = wandb.init(reinit="create_new")
    assert not second.finished and wandb.run is third
    third.finish()
    assert wandb.run is second
    with pytest.raises(wandb.UsageError, match="reinit"):
        wandb.init(reinit="sometimes")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project": "a/b"}, "project"),
        ({"entity": "x?y"}, "entity"),
        ({"id": "bad:id"}, "run id"),
        ({"mode": "sideways"}, "mode"),
        ({"resume": "later"}, "resume"),
        ({"tags": "single"}, "tags"),
    ],
)
def test_bad_init_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(wandb.UsageError, match=message):
        wandb.init(**kwargs)
    assert wandb.run is None


def test_disabled_mode_writes_nothing(clean_env: Path) -> None:
    run = wandb.init(mode="disabled", config={"a": 1})
    run.log({"x": 1})
    run.summary["y"] = 2
    assert run.summary["y"] == 2 and run.sync_dir is None
    run.finish()
    assert list(clean_env.iterdir()) == []


def test_nan_and_infinity_in_summary() -> None:
    run = wandb.init()
    run.log({"n": float("nan"), "i": float("inf")})
    assert math.isnan(run.summary["n"]) and run.summary["i"] == math.inf
    run.finish()


def test_flush_makes_logged_rows_readable_while_the_run_is_open() -> None:
    run = wandb.init()
    run.log({"a": 1})
    run.log({"b": 2}, commit=False)
    run.flush()
    rows = wandb_log.history_rows(run_records(run))
    assert [row.get("a") for row in rows] == [1]
    run.finish()
