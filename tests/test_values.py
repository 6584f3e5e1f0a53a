"""What values can be logged and how they are encoded; bad values raise a clear error and
keep what was logged before."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

import wandb_nexus as wandb

import wandb_log
from conftest import run_records


def logged_records(data: dict) -> list:
    """The records of a run that logged `data` once."""
    run = wandb.init()
    run.log(data)
    run.finish()
    return run_records(run)


def logged_row(data: dict) -> dict:
    row = wandb_log.history_rows(logged_records(data))[0]
    return {k: v for k, v in row.items() if not k.startswith("_")}


def logged_json(value: object) -> str:
    records = logged_records({"v": value})
    history = next(r.history for r in records if r.WhichOneof("record_type") == "history")
    return next(i.value_json for i in history.item if wandb_log.item_path(i) == ("v",))


def test_scalars_and_containers() -> None:
    row = logged_row(
        {
            "i": -7,
            "f": 2.5,
            "t": True,
            "s": 'héllo "q"\n',
            "n": None,
            "l": [1, 2.0, "x", None, [True]],
            "tu": (1, 2),
            "d": {"a": {"b": {"c": 1}}},
            "empty": {},
        }
    )
    assert row == {
        "i": -7,
        "f": 2.5,
        "t": True,
        "s": 'héllo "q"\n',
        "n": None,
        "l": [1, 2.0, "x", None, [True]],
        "tu": [1, 2],
        "d": {"a": {"b": {"c": 1}}},
        "empty": {},
    }


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (1e21, "1e+21"),  # as Python's json writes it
        (2**70, str(2**70)),
        (-(2**64), str(-(2**64))),
        (True, "true"),
        (dt.datetime(2026, 11, 25, 8, 30, 1, 5), '"2026-11-25T08:30:01.000005"'),
        (dt.date(2026, 1, 2), '"2026-01-02"'),
    ],
)
def test_encodings(value: object, encoded: str) -> None:
    assert logged_json(value) == encoded


def test_numpy_scalars_and_arrays() -> None:
    np = pytest.importorskip("numpy")
    row = logged_row(
        {
            "f32": np.float32(0.5),
            "f64": np.float64(0.25),
            "i64": np.int64(-3),
            "u8": np.uint8(200),
            "b": np.bool_(True),
            "arr": np.arange(4).reshape(2, 2),
            "farr": np.array([0.5, np.nan]),
        }
    )
    assert row["f32"] == 0.5 and row["f64"] == 0.25 and row["i64"] == -3 and row["u8"] == 200
    assert row["b"] is True
    assert row["arr"] == [[0, 1], [2, 3]]
    assert row["farr"][0] == 0.5 and row["farr"][1] != row["farr"][1]


def test_numpy_is_not_imported_by_us() -> None:
    import subprocess
    import sys

    code = (
        "import sys, wandb_nexus as w\n"
        "r = w.init(mode='disabled'); r.log({'a': 1}); r.finish()\n"
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("data", "key", "type_name"),
    [
        ({"obj": object()}, "obj", "object"),
        ({"d": {"inner": Decimal("1.5")}}, "d.inner", "Decimal"),
        ({"l": [1, {1, 2}]}, r"l.\[1\]", "set"),
        ({"b": b"bytes"}, "b", "bytes"),
    ],
)
def test_unsupported_values_name_key_and_type(data: dict, key: str, type_name: str) -> None:
    run = wandb.init()
    run.log({"kept": 1})
    with pytest.raises(wandb.UnsupportedValueError, match=rf"{key}.*{type_name}"):
        run.log(data)
    with pytest.raises(TypeError):
        run.log(data)
    run.log({"kept": 2})
    run.finish()
    assert [r["kept"] for r in wandb_log.history_rows(run_records(run))] == [1, 2]


def test_non_string_keys_are_refused() -> None:
    run = wandb.init()
    with pytest.raises(wandb.UnsupportedValueError, match="keys must be strings"):
        run.log({"d": {1: "x"}})
    with pytest.raises(wandb.UnsupportedValueError, match="expected a dict"):
        run.log([("a", 1)])  # type: ignore[arg-type]


def test_cyclic_structure_is_refused() -> None:
    run = wandb.init()
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with pytest.raises(wandb.UnsupportedValueError, match="nested deeper than 100"):
        run.log({"c": cyclic})


def test_config_and_summary_values_are_checked_too() -> None:
    with pytest.raises(wandb.UnsupportedValueError, match=r"set config \"bad\".*object"):
        wandb.init(config={"bad": object()})
    assert wandb.run is None
    run = wandb.init()
    with pytest.raises(TypeError, match=r"set summary \"s\".*object"):
        run.summary["s"] = object()
    run.finish()
    assert "s" not in wandb_log.summary(run_records(run))
