"""wandb_nexus.plot against the official wandb.plot (0.31.0): the same table and the same
panel config for the same input.

scikit-learn is not installed here, so pr_curve and roc_curve are checked against results
worked out by hand, scikit-learn's documented examples and tables recorded from the official
pr_curve/roc_curve run with scikit-learn 1.9.1; with scikit-learn importable, a randomized
comparison against the official functions runs too.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import wandb
import wandb.plot

from wandb_nexus import plot
from wandb_nexus._media import Table
from wandb_nexus.errors import InvalidValueError

# --- helpers -------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A numpy scalar (in an official table) as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


def same_cell(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def official_config(chart: Any, key: str) -> tuple[str, dict[str, Any]]:
    """What the official run.log stores for a chart logged under ``key``
    (wandb_run.py _serialize_custom_charts): the table key and the config value."""
    chart.set_key(key)
    assert chart.spec.config_key == ("_wandb", "visualize", key)
    return chart.spec.table_key, chart.spec.config_value


def assert_same_chart(official: Any, ours: plot.CustomChart, key: str = "k") -> None:
    """Same columns, same cells (type and value), same table key and config value."""
    assert isinstance(ours, plot.CustomChart)
    assert ours.table.columns == official.table.columns
    official_rows = [[plain(c) for c in row] for row in official.table.data]
    assert len(ours.table.data) == len(official_rows)
    for theirs, mine in zip(official_rows, ours.table.data, strict=True):
        assert len(theirs) == len(mine)
        assert all(same_cell(a, b) for a, b in zip(theirs, mine, strict=True)), (theirs, mine)
    table_key, table, config = ours._chart(key)
    assert table is ours.table
    assert (table_key, config) == official_config(official, key)
    # The config goes into the run's config as JSON.
    assert json.loads(json.dumps(config)) == config


def table_rows(chart: plot.CustomChart) -> list[list[Any]]:
    return [list(row) for row in chart.table.data]


# --- the chart object and its config -------------------------------------------------------


def test_config_value_is_wandbs_vega2_panel() -> None:
    chart = plot.line(Table(columns=["x", "y"], data=[[1, 1], [2, 4]]), "x", "y", title="Sq")
    table_key, table, config = chart._chart("line")
    assert table_key == "line_table"
    assert table is chart.table
    # The value recorded from the official SDK (docs/wandb-media.md §2.7).
    assert config == {
        "panel_type": "Vega2",
        "panel_config": {
            "panelDefId": "wandb/line/v0",
            "fieldSettings": {"x": "x", "y": "y", "stroke": None},
            "stringSettings": {"title": "Sq"},
            "transform": {"name": "tableWithLeafColNames"},
            "userQuery": {
                "queryFields": [
                    {
                        "name": "runSets",
                        "args": [{"name": "runSets", "value": "${runSets}"}],
                        "fields": [
                            {"name": "id", "fields": []},
                            {"name": "name", "fields": []},
                            {"name": "_defaultColorIndex", "fields": []},
                            {
                                "name": "summaryTable",
                                "args": [{"name": "tableKey", "value": "line_table"}],
                                "fields": [],
                            },
                        ],
                    }
                ]
            },
        },
    }
    assert chart.spec.key == "line"
    assert chart.spec.config_key == ("_wandb", "visualize", "line")


def test_split_table_and_nested_keys() -> None:
    table = Table(columns=["x", "y"], data=[[1, 2]])
    chart = plot.scatter(table, "x", "y", split_table=True)
    table_key, _, config = chart._chart("eval.scatter")
    assert table_key == "Custom Chart Tables/eval.scatter_table"
    query = config["panel_config"]["userQuery"]["queryFields"][0]["fields"][3]
    assert query["args"] == [{"name": "tableKey", "value": table_key}]
    # The same chart logged again under another key follows the new key.
    assert chart._chart("other")[0] == "Custom Chart Tables/other_table"


def test_spec_attributes_like_wandbs() -> None:
    table = Table(columns=["a", "b"], data=[["x", 1]])
    chart = plot.bar(table, "a", "b", title="T")
    assert chart.table is table
    assert chart.spec.spec_name == "wandb/bar/v0"
    assert chart.spec.fields == {"label": "a", "value": "b"}
    assert chart.spec.string_fields == {"title": "T"}
    assert chart.spec.panel_type == "Vega2"
    assert chart.spec.split_table is False
    with pytest.raises(ValueError):
        _ = chart.spec.table_key  # no key until it is logged
    chart.set_key("b")
    assert chart.spec.table_key == "b_table"
    # Changing the returned config does not change the chart.
    config = chart._chart("b")[2]
    config["panel_config"]["fieldSettings"]["label"] = "changed"
    assert chart._chart("b")[2]["panel_config"]["fieldSettings"]["label"] == "a"


def test_chart_key_must_be_a_string() -> None:
    chart = plot.histogram(Table(columns=["v"], data=[[1]]), "v")
    for key in ("", None, 3):
        with pytest.raises(InvalidValueError):
            chart._chart(key)  # type: ignore[arg-type]


# --- charts of the user's table -------------------------------------------------------------


@pytest.mark.parametrize("split_table", [False, True])
def test_table_charts_match_official(split_table: bool) -> None:
    data = [[1, 2.5, "a"], [2, 3.5, "b"], [3, 1.0, "a"]]
    columns = ["x", "y", "c"]
    ours_table = Table(columns=columns, data=data)
    official_table = wandb.Table(columns=columns, data=data)
    pairs = [
        (
            wandb.plot.line(
                official_table, "x", "y", stroke="c", title="L", split_table=split_table
            ),
            plot.line(ours_table, "x", "y", stroke="c", title="L", split_table=split_table),
        ),
        (
            wandb.plot.line(official_table, "x", "y", split_table=split_table),
            plot.line(ours_table, "x", "y", split_table=split_table),
        ),
        (
            wandb.plot.scatter(official_table, "x", "y", "S", split_table=split_table),
            plot.scatter(ours_table, "x", "y", "S", split_table=split_table),
        ),
        (
            wandb.plot.bar(official_table, "c", "y", title="B", split_table=split_table),
            plot.bar(ours_table, "c", "y", title="B", split_table=split_table),
        ),
        (
            wandb.plot.histogram(official_table, "y", title="H", split_table=split_table),
            plot.histogram(ours_table, "y", title="H", split_table=split_table),
        ),
        (
            wandb.plot_table(
                "me/custom/v1",
                official_table,
                {"x": "x", "y": "y"},
                {"title": "C"},
                split_table=split_table,
            ),
            plot.plot_table(
                "me/custom/v1",
                ours_table,
                {"x": "x", "y": "y"},
                {"title": "C"},
                split_table=split_table,
            ),
        ),
        (
            wandb.plot_table("me/custom/v1", official_table, {"x": "x"}),
            plot.plot_table("me/custom/v1", ours_table, {"x": "x"}),
        ),
    ]
    for official, ours in pairs:
        assert ours.table is ours_table
        assert_same_chart(official, ours, key="chart")


def test_default_titles_match_official() -> None:
    # Defaults read from each function's signature, so a changed default shows up here.
    import inspect

    for name in [
        "line",
        "scatter",
        "bar",
        "histogram",
        "line_series",
        "confusion_matrix",
        "pr_curve",
        "roc_curve",
        "plot_table",
    ]:
        official = inspect.signature(getattr(wandb.plot, name)).parameters
        ours = inspect.signature(getattr(plot, name)).parameters
        assert list(ours) == list(official), name
        for parameter in official:
            assert ours[parameter].default == official[parameter].default, (name, parameter)


def test_plot_table_wants_a_table() -> None:
    with pytest.raises(InvalidValueError, match=r"wandb_nexus\.Table"):
        plot.plot_table("wandb/line/v0", [[1, 2]], {"x": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match=r"wandb_nexus\.Table"):
        plot.line(wandb.Table(columns=["x"], data=[[1]]), "x", "x")
    with pytest.raises(InvalidValueError):
        plot.plot_table("wandb/line/v0", Table(columns=["x"], data=[[1]]), ["x"])  # type: ignore[arg-type]


# --- line_series -----------------------------------------------------------------------------


LINE_SERIES_CASES: list[tuple[Any, Any, dict[str, Any]]] = [
    ([0, 1, 2], [[10, 20, 30], [0.5, 0.25, 0.125]], {}),
    ([[0, 1, 2], [0, 2, 4, 6]], [[1, 2, 3], [4, 5, 6, 7]], {"keys": ["a", "b"], "title": "T"}),
    # Shorter x or y: the line stops at the shorter, as in wandb.
    ([0, 1, 2, 3], [[1, 2], [3, 4, 5, 6, 7]], {"xname": "epoch", "split_table": True}),
    (np.arange(4), np.arange(8).reshape(2, 4) * 0.5, {"keys": np.array(["p", "q"])}),
    ([np.arange(3), np.arange(3) + 10], [np.ones(3), np.zeros(3)], {}),
    (["a", "b"], [[1, None], [2, 3]], {}),
]


@pytest.mark.parametrize(("xs", "ys", "kwargs"), LINE_SERIES_CASES)
def test_line_series_matches_official(xs: Any, ys: Any, kwargs: dict[str, Any]) -> None:
    assert_same_chart(wandb.plot.line_series(xs, ys, **kwargs), plot.line_series(xs, ys, **kwargs))


def test_line_series_bad_input() -> None:
    cases: list[tuple[Any, Any, dict[str, Any]]] = [
        ([[0, 1], [0, 1], [0, 1]], [[1, 2], [3, 4]], {}),  # 3 x-series, 2 y-series
        ([0, 1], [[1, 2], [3, 4]], {"keys": ["only one"]}),
    ]
    for xs, ys, kwargs in cases:
        with pytest.raises(ValueError):
            wandb.plot.line_series(xs, ys, **kwargs)
        with pytest.raises(InvalidValueError, match="must match"):
            plot.line_series(xs, ys, **kwargs)
    with pytest.raises(InvalidValueError):
        plot.line_series([], [[1]])
    with pytest.raises(InvalidValueError):
        plot.line_series([1, 2], [1, 2])  # ys must be a list of series
    with pytest.raises(InvalidValueError):
        plot.line_series(None, [[1]])  # type: ignore[arg-type]


# --- confusion_matrix ----------------------------------------------------------------------


CONFUSION_CASES: list[dict[str, Any]] = [
    {"y_true": [0, 1, 2, 2, 1], "preds": [0, 2, 2, 1, 1]},
    {"y_true": [0, 1, 1], "preds": [1, 1, 1], "class_names": ["zero", "one", "two"]},
    {
        "y_true": np.array([0, 1, 2, 0]),
        "probs": np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]),
        "class_names": ["a", "b", "c"],
        "title": "CM",
    },
    # Ties go to the first column, NaN wins (numpy.argmax).
    {
        "y_true": [0, 1, 1, 0],
        "probs": [[0.5, 0.5], [0.2, 0.8], [1.0, float("nan")], [float("nan"), 0.0]],
        "split_table": True,
    },
    {"y_true": ["cat", "dog", "cat"], "preds": ["dog", "dog", "cat"]},
    {"y_true": [3.0, 1.0, 2.5], "preds": [1, 3, 3]},
    {"y_true": np.array([5, 7, 5]), "preds": [7, 7, 5], "class_names": None},
    {"y_true": [1, 0], "preds": [1, 1], "class_names": np.array(["no", "yes"])},
    {"y_true": [], "preds": []},
    # With class_names, labels are indexes into it.
    {"y_true": [True, False], "preds": [1, 0], "class_names": ["F", "T"]},
]


@pytest.mark.parametrize("kwargs", CONFUSION_CASES)
def test_confusion_matrix_matches_official(kwargs: dict[str, Any]) -> None:
    ours = plot.confusion_matrix(**kwargs)
    assert_same_chart(wandb.plot.confusion_matrix(**kwargs), ours)
    assert all(type(row[2]) is float for row in ours.table.data)


def test_confusion_matrix_counts() -> None:
    chart = plot.confusion_matrix(y_true=[0, 0, 1, 1, 1], preds=[0, 1, 1, 1, 0])
    assert table_rows(chart) == [
        ["Class_1", "Class_1", 1.0],
        ["Class_1", "Class_2", 1.0],
        ["Class_2", "Class_1", 1.0],
        ["Class_2", "Class_2", 2.0],
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": [0, 1], "preds": [0, 1], "probs": [[1, 0], [0, 1]]}, "Only one of"),
        ({"y_true": [0, 1, 1], "preds": [0, 1]}, "must be equal"),
        ({"y_true": [0, 1], "probs": [[1.0, 0.0]]}, "must be equal"),
        ({"y_true": [0, 1, 2], "preds": [0, 1, 2], "class_names": ["a", "b"]}, "exceeds"),
        ({"y_true": [0, 1], "preds": [0, 5], "class_names": ["a", "b"]}, "missing from"),
        ({"y_true": [0, -1], "preds": [0, 1], "class_names": ["a", "b"]}, "missing from"),
        ({"y_true": ["a", "b"], "preds": ["a", "b"], "class_names": ["a", "b"]}, "missing"),
    ],
)
def test_confusion_matrix_bad_input_both_refuse(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, KeyError, IndexError)):
        wandb.plot.confusion_matrix(**kwargs)
    with pytest.raises(InvalidValueError, match=message):
        plot.confusion_matrix(**kwargs)


def test_confusion_matrix_bad_input() -> None:
    with pytest.raises(InvalidValueError, match="y_true"):
        plot.confusion_matrix(preds=[0, 1])
    with pytest.raises(InvalidValueError, match="probs"):
        plot.confusion_matrix(y_true=[0, 1])
    with pytest.raises(InvalidValueError, match="sorts"):
        plot.confusion_matrix(y_true=[0, "a"], preds=[0, "a"])
    with pytest.raises(InvalidValueError, match="empty"):
        plot.confusion_matrix(y_true=[0], probs=[[]])
    with pytest.raises(InvalidValueError, match="numbers"):
        plot.confusion_matrix(y_true=[0], probs=[["x", "y"]])
    with pytest.raises(InvalidValueError, match="differ in length"):
        plot.confusion_matrix(y_true=[0, 1], probs=[[0.1, 0.9], [0.5]])
    with pytest.raises(InvalidValueError, match="hashable"):
        plot.confusion_matrix(y_true=[[0]], preds=[[0]])


# --- pr_curve and roc_curve ----------------------------------------------------------------

# scikit-learn's documented example: y_true [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8].
DOC_Y = [0, 0, 1, 1]
DOC_PROBAS = [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]]


def test_roc_curve_sklearn_doc_example() -> None:
    # roc_curve docs: fpr [0, 0, 0.5, 0.5, 1], tpr [0, 0.5, 0.5, 1, 1]; class 0 scored by
    # 1 - score is its mirror image, with the same curve.
    chart = plot.roc_curve(DOC_Y, DOC_PROBAS)
    curve = [[0.0, 0.0], [0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [1.0, 1.0]]
    assert chart.table.columns == ["class", "fpr", "tpr"]
    assert table_rows(chart) == [[c, *point] for c in (0, 1) for point in curve]
    assert all(type(row[0]) is int for row in chart.table.data)
    config = chart._chart("roc")[2]["panel_config"]
    assert config["panelDefId"] == "wandb/area-under-curve/v0"
    assert config["fieldSettings"] == {"x": "fpr", "y": "tpr", "class": "class"}
    assert config["stringSettings"] == {
        "title": "ROC Curve",
        "x-axis-title": "False positive rate",
        "y-axis-title": "True positive rate",
    }


def test_pr_curve_sklearn_doc_example() -> None:
    # precision_recall_curve docs: precision [0.5, 0.667, 0.5, 1, 1], recall [1, 1, 0.5,
    # 0.5, 0]; wandb makes precision non-decreasing ([0.5, 0.667, 0.667, 1, 1]) and reads
    # it at the first point (by rising recall) reaching each of recall 1, 0.75, ... 0.
    chart = plot.pr_curve(DOC_Y, np.array(DOC_PROBAS), labels=["neg", "pos"], interp_size=5)
    curve = [[0.667, 1.0], [0.667, 0.75], [1.0, 0.5], [1.0, 0.25], [1.0, 0.0]]
    assert chart.table.columns == ["class", "precision", "recall"]
    assert table_rows(chart) == [[c, *point] for c in ("neg", "pos") for point in curve]
    config = chart._chart("pr")[2]["panel_config"]
    assert config["fieldSettings"] == {"x": "recall", "y": "precision", "class": "class"}
    assert config["stringSettings"] == {
        "title": "Precision-Recall Curve",
        "x-axis-title": "Recall",
        "y-axis-title": "Precision",
    }


def test_roc_curve_drops_collinear_points_and_handles_one_class() -> None:
    # Scores in order P P N N: thresholds at (0,1/2) (0,1) (1/2,1) (1,1); (1/2,1) lies on
    # the straight stretch between its neighbours and goes, then (0,0) is put first.
    chart = plot.roc_curve([1, 1, 0, 0], [[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    curve = [[0.0, 0.0], [0.0, 0.5], [0.0, 1.0], [1.0, 1.0]]
    assert table_rows(chart) == [[c, *point] for c in (0, 1) for point in curve]
    # One class only: no negatives, so scikit-learn's false positive rate is NaN.
    rows = table_rows(plot.roc_curve(["a", "a"], [[0.3], [0.6]]))
    assert [row[0] for row in rows] == ["a", "a", "a"]
    assert all(math.isnan(row[1]) for row in rows)
    assert [row[2] for row in rows] == [0.0, 0.5, 1.0]


def curve_inputs(seed: int, n: int, k: int, noise: float, digits: int) -> tuple[list, list]:
    rs = random.Random(seed)
    y = [rs.randrange(k) for _ in range(n)]
    probas = [
        [round((j == t) * (1 - noise) + noise * rs.random(), digits) for j in range(k)] for t in y
    ]
    return y, probas


def test_curves_match_recorded_official_tables() -> None:
    # Recorded from the official wandb 0.31.0 with scikit-learn 1.9.1 on these inputs.
    y, probas = curve_inputs(1, 30, 3, 0.6, 2)
    names = ["cat", "dog", "bird"]
    roc = plot.roc_curve(np.array(y), np.array(probas), labels=names)
    assert table_rows(roc) == [
        ["cat", 0.0, 0.0], ["cat", 0.0, 0.083], ["cat", 0.0, 0.5], ["cat", 0.0, 0.667],
        ["cat", 0.0, 0.75], ["cat", 0.056, 0.75], ["cat", 0.056, 0.833], ["cat", 0.167, 0.917],
        ["cat", 0.222, 0.917], ["cat", 0.278, 1.0], ["cat", 0.389, 1.0], ["cat", 0.611, 1.0],
        ["cat", 1.0, 1.0], ["dog", 0.0, 0.0], ["dog", 0.0, 0.091], ["dog", 0.0, 0.909],
        ["dog", 0.053, 0.909], ["dog", 0.158, 0.909], ["dog", 0.158, 1.0], ["dog", 0.263, 1.0],
        ["dog", 1.0, 1.0], ["bird", 0.0, 0.0], ["bird", 0.0, 0.143], ["bird", 0.0, 0.571],
        ["bird", 0.043, 0.571], ["bird", 0.13, 0.571], ["bird", 0.174, 0.571],
        ["bird", 0.174, 0.714], ["bird", 0.304, 0.714], ["bird", 0.348, 1.0],
        ["bird", 0.522, 1.0], ["bird", 0.609, 1.0], ["bird", 1.0, 1.0],
    ]  # fmt: skip
    pr = plot.pr_curve(y, probas, labels=names, interp_size=6)
    assert table_rows(pr) == [
        ["cat", 0.706, 1.0], ["cat", 0.909, 0.8], ["cat", 1.0, 0.6], ["cat", 1.0, 0.4],
        ["cat", 1.0, 0.2], ["cat", 1.0, 0.0], ["dog", 0.786, 1.0], ["dog", 1.0, 0.8],
        ["dog", 1.0, 0.6], ["dog", 1.0, 0.4], ["dog", 1.0, 0.2], ["dog", 1.0, 0.0],
        ["bird", 0.467, 1.0], ["bird", 0.467, 0.8], ["bird", 0.556, 0.6], ["bird", 1.0, 0.4],
        ["bird", 1.0, 0.2], ["bird", 1.0, 0.0],
    ]  # fmt: skip


def digest(chart: plot.CustomChart) -> str:
    return hashlib.sha256(json.dumps(table_rows(chart)).encode()).hexdigest()


def test_long_curves_are_resampled_as_wandb_does() -> None:
    # Past 10000 rows wandb keeps the rows scikit-learn's resample(random_state=42,
    # stratify=class) picks, sorted; recorded from the official wandb with scikit-learn.
    y, probas = curve_inputs(2, 30000, 2, 1.0, 17)
    with pytest.warns(UserWarning, match="10000"):
        roc = plot.roc_curve(y, probas)
    assert len(roc.table.data) == 10000
    assert digest(roc) == "bbc5bf6e7fd088ff05e90ec747bc5a69f5b40b2c30831476d38cb3760daecb40"

    y, probas = curve_inputs(3, 2000, 5, 0.5, 17)
    with pytest.warns(UserWarning, match="Resampling"):
        pr = plot.pr_curve(
            y,
            probas,
            interp_size=2001,
            classes_to_plot=[0, 2, 3, 4, 1],
            labels=["e", "d", "c", "b", "a"],
        )
    assert len(pr.table.data) == 10000
    assert digest(pr) == "9ce6e578cb2184132c96a6ab43482d568a819178e73545876e6132ec1896fc7a"


def test_numpy_random_state_permutations() -> None:
    # The resampling draws are numpy's RandomState(42).permutation, bit for bit.
    ours = plot._numpy_random_state(42)
    theirs = np.random.RandomState(42)
    for n in [0, 1, 2, 5, 17, 1000, 3, 70000]:
        assert ours.permutation(n) == theirs.permutation(n).tolist()


def test_rounding_is_numpys() -> None:
    rs = random.Random(7)
    values = [rs.random() for _ in range(20000)] + [i / 2000 for i in range(2001)]
    values += [k / n for n in range(1, 120) for k in range(n + 1)]
    assert [plot._round3(v) for v in values] == np.round(np.array(values), 3).tolist()
    for n in [0, 1, 2, 3, 21, 100, 1001]:
        assert plot._linspace01(n) == np.linspace(0, 1, n).tolist()


def test_curve_options() -> None:
    y = [2, 0, 1, 2, 1, 0]
    probas = [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]] * 2
    roc = plot.roc_curve(y, probas, classes_to_plot=[2], title="mine", split_table=True)
    assert {row[0] for row in roc.table.data} == {2}
    table_key, _, config = roc._chart("r")
    assert table_key == "Custom Chart Tables/r_table"
    assert config["panel_config"]["stringSettings"]["title"] == "mine"
    # A single class to plot may be given bare; labels may be a dict.
    pr = plot.pr_curve(y, probas, classes_to_plot=1, labels={0: "x", 1: "y", 2: "z"})
    assert {row[0] for row in pr.table.data} == {"y"}
    assert len(pr.table.data) == 21
    # Labels only name integer classes, as in wandb.
    pr = plot.pr_curve(["b", "a"], [[0.1, 0.9], [0.8, 0.2]], labels=["x", "y"], interp_size=2)
    assert [row[0] for row in pr.table.data] == ["a", "a", "b", "b"]
    assert plot.pr_curve(y, probas, interp_size=0).table.data == []


@pytest.mark.parametrize(
    ("function", "args", "kwargs", "message"),
    [
        ("pr_curve", (None, [[0.5]]), {}, "y_true"),
        ("pr_curve", ([0], None), {}, "y_probas"),
        ("roc_curve", ([], []), {}, "empty"),
        ("roc_curve", ([0, 1], [[0.5, 0.5]]), {}, "same length"),
        ("roc_curve", ([0, 1, 2], [[0.5, 0.5]] * 3), {}, "columns"),
        ("roc_curve", ([0, 1], [0.3, 0.7]), {}, "list or an array"),
        ("pr_curve", ([0, 1], [[0.5, 0.5], [0.5]]), {}, "differ in length"),
        ("pr_curve", ([0.5, 1.0], [[0.5, 0.5]] * 2), {}, "continuous"),
        ("pr_curve", ([0, "a"], [[0.5, 0.5]] * 2), {}, "mixes"),
        ("pr_curve", ([0, 1], [[0.5, float("nan")]] * 2), {}, "finite"),
        ("pr_curve", ([0, 1], [["a", "b"]] * 2), {}, "numbers"),
        ("pr_curve", ([0, 1], [[0.5, 0.5]] * 2), {"classes_to_plot": [7]}, "None of"),
        ("pr_curve", ([0, 1], [[0.5, 0.5]] * 2), {"labels": ["only"]}, "no name"),
        ("pr_curve", ([0, 1], [[0.5, 0.5]] * 2), {"interp_size": -1}, "interp_size"),
        ("roc_curve", ([0, 1], [[0.5, 0.5]] * 2), {"labels": "ab"}, "labels"),
    ],
)
def test_curves_bad_input(function: str, args: tuple, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        getattr(plot, function)(*args, **kwargs)


def test_curves_compared_with_official_when_sklearn_is_installed() -> None:
    pytest.importorskip("sklearn.metrics")
    rs = random.Random(0)
    compared = 0
    for _ in range(150):
        n = rs.choice([1, 2, 3, 5, 10, 50, 200])
        kind = rs.choice(["int", "str", "float", "bool"])
        pool = {
            "int": [0, 1, 2, 3, 5],
            "str": ["cat", "dog", "ant", "zebra"],
            "float": [0.0, 1.0, 2.0],
            "bool": [False, True],
        }[kind][: rs.randint(1, 5)]
        y = [rs.choice(pool) for _ in range(n)]
        columns = len(set(y)) + rs.choice([0, 0, 1])
        coarse = rs.random() < 0.5
        probas = [
            [round(rs.random(), 1) if coarse else rs.random() for _ in range(columns)]
            for _ in range(n)
        ]
        labels = ["b", "a", "c", "a", "x", "y"] if kind == "int" and rs.random() < 0.5 else None
        to_plot = rs.sample(sorted(set(y)), max(1, len(set(y)) - 1)) if rs.random() < 0.3 else None
        interp_size = rs.choice([21, 5, 2, 1, 0, 101])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            official = wandb.plot.pr_curve(
                np.array(y), np.array(probas), labels, to_plot, interp_size=interp_size
            )
            assert_same_chart(official, plot.pr_curve(y, probas, labels, to_plot, interp_size))
            official = wandb.plot.roc_curve(np.array(y), np.array(probas), labels, to_plot)
            assert_same_chart(official, plot.roc_curve(y, np.array(probas), labels, to_plot))
        compared += 1
    assert compared == 150


# --- cheap to import -------------------------------------------------------------------------


def test_plot_imports_nothing_heavy() -> None:
    code = (
        "import sys, wandb_nexus\n"
        "before = set(sys.modules)\n"
        "import wandb_nexus.plot as p\n"
        "from wandb_nexus._media import Table\n"
        "p.line(Table(columns=['x', 'y'], data=[[1, 2]]), 'x', 'y')._chart('k')\n"
        "p.confusion_matrix(y_true=[0, 1], preds=[1, 1])._chart('c')\n"
        "p.roc_curve([0, 1, 1], [[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])._chart('r')\n"
        "p.pr_curve([0, 1, 1], [[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])._chart('p')\n"
        "p.line_series([1, 2], [[3, 4]])._chart('l')\n"
        "heavy = {'numpy', 'pandas', 'sklearn', 'scipy', 'dataclasses', 'typing'}\n"
        "print(sorted(heavy & (set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
