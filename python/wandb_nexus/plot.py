"""Custom charts, as ``wandb.plot``: ``line``, ``scatter``, ``bar``, ``histogram``,
``line_series``, ``confusion_matrix``, ``pr_curve``, ``roc_curve`` and ``plot_table``.

Each returns a :class:`CustomChart`: a :class:`~wandb_nexus.Table` and the Vega spec that draws
it. Logged under a key, say ``run.log({"pr": chart})``, the table is logged as ``pr_table`` (or
``Custom Chart Tables/pr_table`` with ``split_table=True``) and the panel that draws it is put in
the run's config at ``_wandb.visualize.pr``, exactly as wandb does.

No numpy, pandas or scikit-learn: arrays are read through ``tolist()`` and the confusion
matrix, precision-recall and ROC curves are computed here, in plain Python, to the same numbers
as wandb 0.31.0 with numpy, pandas and scikit-learn (see :func:`pr_curve` for the details).
"""

from __future__ import annotations

from .errors import InvalidValueError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    from ._media import Table

__all__ = [
    "CustomChart",
    "CustomChartSpec",
    "bar",
    "confusion_matrix",
    "histogram",
    "line",
    "line_series",
    "plot_table",
    "pr_curve",
    "roc_curve",
    "scatter",
]

# scikit-learn's resample(..., random_state=42), which wandb uses to cut a curve's table down
# to Table.MAX_ROWS rows.
_RESAMPLE_SEED = 42


class CustomChartSpec:
    """Which Vega spec draws a chart and how its fields map to the table's columns, as
    wandb's ``CustomChartSpec``; ``key`` is set when the chart is logged."""

    def __init__(
        self,
        spec_name: str,
        fields: dict[str, Any],
        string_fields: dict[str, Any],
        key: str = "",
        panel_type: str = "Vega2",
        split_table: bool = False,
    ) -> None:
        self.spec_name = spec_name
        self.fields = fields
        self.string_fields = string_fields
        self.key = key
        self.panel_type = panel_type
        self.split_table = split_table

    @property
    def table_key(self) -> str:
        """The history key the chart's table is logged under."""
        if not self.key:
            raise UsageError("The custom chart has no key yet: it gets one when it is logged")
        if self.split_table:
            return f"Custom Chart Tables/{self.key}_table"
        return f"{self.key}_table"

    @property
    def config_value(self) -> dict[str, Any]:
        """The panel stored in the run's config under ``_wandb.visualize.<key>``."""
        summary_table = {
            "name": "summaryTable",
            "args": [{"name": "tableKey", "value": self.table_key}],
            "fields": [],
        }
        run_sets = {
            "name": "runSets",
            "args": [{"name": "runSets", "value": "${runSets}"}],
            "fields": [
                {"name": "id", "fields": []},
                {"name": "name", "fields": []},
                {"name": "_defaultColorIndex", "fields": []},
                summary_table,
            ],
        }
        return {
            "panel_type": self.panel_type,
            "panel_config": {
                "panelDefId": self.spec_name,
                "fieldSettings": dict(self.fields),
                "stringSettings": dict(self.string_fields),
                "transform": {"name": "tableWithLeafColNames"},
                "userQuery": {"queryFields": [run_sets]},
            },
        }

    @property
    def config_key(self) -> tuple[str, str, str]:
        """Where ``config_value`` goes in the run's config."""
        return ("_wandb", "visualize", self.key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CustomChartSpec):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"CustomChartSpec(spec_name={self.spec_name!r}, fields={self.fields!r}, "
            f"string_fields={self.string_fields!r}, key={self.key!r}, "
            f"panel_type={self.panel_type!r}, split_table={self.split_table!r})"
        )


class CustomChart:
    """A table and the Vega spec that draws it; log it with ``run.log({key: chart})``."""

    def __init__(self, table: Table, spec: CustomChartSpec) -> None:
        self.table = table
        self.spec = spec

    def set_key(self, key: str) -> None:
        """Sets the key the chart is logged under (wandb does this in ``run.log``)."""
        self.spec.key = key

    def _chart(self, key: str) -> tuple[str, Table, dict[str, Any]]:
        """What logging the chart under ``key`` writes: ``(table_key, table, config_value)``;
        the table goes to history under ``table_key``, ``config_value`` to the config at
        ``_wandb.visualize.<key>``."""
        if not isinstance(key, str) or not key:
            raise InvalidValueError(f"A custom chart needs a non-empty string key, got {key!r}")
        self.set_key(key)
        return self.spec.table_key, self.table, self.spec.config_value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CustomChart):
            return NotImplemented
        return self.table is other.table and self.spec == other.spec

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CustomChart(table={self.table!r}, spec={self.spec!r})"


def plot_table(
    vega_spec_name: str,
    data_table: Table,
    fields: dict[str, Any],
    string_fields: dict[str, Any] | None = None,
    split_table: bool = False,
) -> CustomChart:
    """A chart of ``data_table`` drawn by the Vega spec ``vega_spec_name`` (e.g.
    ``"wandb/line/v0"`` or one of your own): ``fields`` maps the spec's fields to the table's
    columns, ``string_fields`` gives its string constants (a title, say). With
    ``split_table=True`` the table is shown in a "Custom Chart Tables" section."""
    from ._media import Table

    if not isinstance(data_table, Table):
        raise InvalidValueError(
            "Expected `data_table` to be a wandb_nexus.Table, instead got "
            f"{type(data_table).__name__}"
        )
    if not isinstance(vega_spec_name, str) or not vega_spec_name:
        raise InvalidValueError(
            f"vega_spec_name must be the name of a Vega spec, got {vega_spec_name!r}"
        )
    return CustomChart(
        table=data_table,
        spec=CustomChartSpec(
            spec_name=vega_spec_name,
            fields=_settings(fields, "fields"),
            string_fields=_settings(string_fields or {}, "string_fields"),
            split_table=bool(split_table),
        ),
    )


def line(
    table: Table,
    x: str,
    y: str,
    stroke: str | None = None,
    title: str = "",
    split_table: bool = False,
) -> CustomChart:
    """A line chart of the table's columns ``x`` and ``y``; ``stroke`` names a column that
    splits the points into lines."""
    return plot_table(
        "wandb/line/v0",
        table,
        {"x": x, "y": y, "stroke": stroke},
        {"title": title},
        split_table=split_table,
    )


def scatter(
    table: Table,
    x: str,
    y: str,
    title: str = "",
    split_table: bool = False,
) -> CustomChart:
    """A scatter plot of the table's columns ``x`` and ``y``."""
    return plot_table(
        "wandb/scatter/v0", table, {"x": x, "y": y}, {"title": title}, split_table=split_table
    )


def bar(
    table: Table,
    label: str,
    value: str,
    title: str = "",
    split_table: bool = False,
) -> CustomChart:
    """A bar chart: a bar of height ``value`` for each ``label`` (both column names)."""
    return plot_table(
        "wandb/bar/v0",
        table,
        {"label": label, "value": value},
        {"title": title},
        split_table=split_table,
    )


def histogram(
    table: Table,
    value: str,
    title: str = "",
    split_table: bool = False,
) -> CustomChart:
    """A histogram of the table's column ``value``."""
    return plot_table(
        "wandb/histogram/v0", table, {"value": value}, {"title": title}, split_table=split_table
    )


def line_series(
    xs: Iterable[Iterable[Any]] | Iterable[Any],
    ys: Iterable[Iterable[Any]],
    keys: Iterable[str] | None = None,
    title: str = "",
    xname: str = "x",
    split_table: bool = False,
) -> CustomChart:
    """Several lines on one chart: ``ys[i]`` against ``xs[i]`` (or against ``xs`` for every
    line, when ``xs`` is one sequence), named ``keys[i]`` (default ``line_<i>``).

    As in wandb, a line whose x and y values differ in number stops at the shorter."""
    from ._media import Table

    x_values = _as_list(xs, "xs")
    if not x_values:
        raise InvalidValueError("line_series needs at least one x value in xs")
    series = [_as_list(y, "each series in ys") for y in _as_list(ys, "ys")]
    if _is_sequence(x_values[0]):
        x_series = [_as_list(x, "each series in xs") for x in x_values]
    else:
        x_series = [x_values] * len(series)
    if len(x_series) != len(series):
        raise InvalidValueError(
            f"Number of x-series ({len(x_series)}) must match y-series ({len(series)})."
        )
    if keys is None:
        names: list[Any] = [f"line_{i}" for i in range(len(series))]
    else:
        names = [_plain(k) for k in _as_list(keys, "keys")]
    if len(names) != len(series):
        raise InvalidValueError(
            f"Number of keys ({len(names)}) must match y-series ({len(series)})."
        )
    data = [
        [_plain(x), name, _plain(y)]
        for name, x_line, y_line in zip(names, x_series, series, strict=True)
        for x, y in zip(x_line, y_line, strict=False)
    ]
    return plot_table(
        "wandb/lineseries/v0",
        Table(columns=["step", "lineKey", "lineVal"], data=data),
        {"step": "step", "lineKey": "lineKey", "lineVal": "lineVal"},
        {"title": title, "xname": xname},
        split_table=split_table,
    )


def confusion_matrix(
    probs: Sequence[Sequence[float]] | None = None,
    y_true: Sequence[Any] | None = None,
    preds: Sequence[Any] | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Confusion Matrix Curve",
    split_table: bool = False,
) -> CustomChart:
    """A confusion matrix of the true labels ``y_true`` against the predictions: ``preds``,
    or the class of highest probability in each row of ``probs`` (not both).

    With ``class_names``, labels are indexes into it (0 to len - 1). Without, the classes are
    the labels seen, sorted, named ``Class_1``, ``Class_2``, ... The table has a row
    ``[actual, predicted, count]`` for every pair of classes, the counts as floats."""
    from ._media import Table

    if probs is not None and preds is not None:
        raise InvalidValueError("Only one of `probs` or `preds` should be provided, not both.")
    if y_true is None:
        raise InvalidValueError("confusion_matrix needs the true labels, y_true")
    truth = [_plain(v) for v in _as_list(y_true, "y_true")]
    if probs is not None:
        predicted = [_argmax(row, i) for i, row in enumerate(_rows(probs, "probs"))]
    elif preds is not None:
        predicted = [_plain(v) for v in _as_list(preds, "preds")]
    else:
        raise InvalidValueError("confusion_matrix needs `probs` or `preds`")
    if len(predicted) != len(truth):
        raise InvalidValueError(
            "The number of predictions and true labels must be equal: "
            f"{len(predicted)} predictions, {len(truth)} true labels."
        )
    try:
        seen_predicted, seen_true = set(predicted), set(truth)
    except TypeError as e:
        raise InvalidValueError(f"confusion_matrix labels must be hashable: {e}") from None

    if class_names is not None:
        names = [_plain(name) for name in _as_list(class_names, "class_names")]
        if len(seen_predicted) > len(names):
            raise InvalidValueError(
                "The number of unique predicted classes exceeds the number of class names."
            )
        if len(seen_true) > len(names):
            raise InvalidValueError(
                "The number of unique true labels exceeds the number of class names."
            )
        index: dict[Any, int] = {i: i for i in range(len(names))}
        for what, labels in (("y_true", truth), ("preds", predicted)):
            for label in labels:
                if label not in index:
                    raise InvalidValueError(
                        f"Label {label!r} in {what} is missing from class_names: with "
                        f"class_names, labels are indexes from 0 to {len(names) - 1}."
                    )
    else:
        try:
            classes = sorted(seen_predicted | seen_true)
        except TypeError:
            raise InvalidValueError(
                "confusion_matrix labels must be of one kind that sorts (all numbers or all "
                "strings) when class_names is not given."
            ) from None
        index = {label: i for i, label in enumerate(classes)}
        names = [f"Class_{i + 1}" for i in range(len(classes))]

    n = len(names)
    counts = [[0.0] * n for _ in range(n)]
    for actual, guess in zip(truth, predicted, strict=True):
        counts[index[actual]][index[guess]] += 1.0
    data = [[names[i], names[j], counts[i][j]] for i in range(n) for j in range(n)]
    return plot_table(
        "wandb/confusion_matrix/v1",
        Table(columns=["Actual", "Predicted", "nPredictions"], data=data),
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": title},
        split_table=split_table,
    )


def pr_curve(
    y_true: Iterable[Any] | None = None,
    y_probas: Iterable[Any] | None = None,
    labels: Sequence[str] | Mapping[Any, str] | None = None,
    classes_to_plot: Iterable[Any] | None = None,
    interp_size: int = 21,
    title: str = "Precision-Recall Curve",
    split_table: bool = False,
) -> CustomChart:
    """Precision-recall curves, one per class (one-vs-rest), at ``interp_size`` recall levels
    from 1 down to 0.

    ``y_true`` holds each sample's label; ``y_probas`` a row per sample with a score per class,
    column ``i`` for the ``i``-th of the sorted distinct labels of ``y_true``. When the labels
    are integers, ``labels[label]`` names a class in the chart. ``classes_to_plot`` limits the
    chart to those labels.

    The table (``class``, ``precision``, ``recall``, rounded to 3 places) is computed as wandb
    0.31.0 does with scikit-learn's ``precision_recall_curve`` (precision made monotonic, then
    read at each recall level), and cut to ``Table.MAX_ROWS`` rows, when longer, as
    scikit-learn's ``resample(random_state=42, stratify=class)`` picks them, reproduced here
    with its Mersenne Twister. The same numbers come out. Differences: bad input raises
    :class:`~wandb_nexus.errors.InvalidValueError` where wandb prints an error and returns
    None (``y_true`` or ``y_probas`` missing) or lets numpy/scikit-learn raise; labels that
    mix strings and numbers are refused (numpy would make them all strings); cells are Python
    ``int``/``float``/``str`` rather than numpy scalars.
    """
    from ._media import Table

    if isinstance(interp_size, bool) or not isinstance(interp_size, int) or interp_size < 0:
        raise InvalidValueError(f"interp_size must be an int >= 0, got {interp_size!r}")
    truth, scores, plotted = _curve_inputs(y_true, y_probas, labels, classes_to_plot)
    levels = _linspace01(interp_size)
    levels.reverse()

    import bisect

    curves: dict[Any, tuple[list[float], list[float]]] = {}
    for column, positive, label in plotted:
        fps, tps = _threshold_counts(truth, [row[column] for row in scores], positive)
        # scikit-learn's precision_recall_curve: by increasing threshold, then (recall 0,
        # precision 1); wandb makes precision non-decreasing along it and reads it, by
        # increasing recall, at the first point reaching each recall level.
        precision = [tp / (tp + fp) for fp, tp in zip(reversed(fps), reversed(tps), strict=True)]
        precision.append(1.0)
        recall = [tp / tps[-1] for tp in reversed(tps)]
        recall.append(0.0)
        for i in range(1, len(precision)):
            precision[i] = max(precision[i], precision[i - 1])
        precision.reverse()
        recall.reverse()
        curves[label] = (
            [precision[bisect.bisect_left(recall, level)] for level in levels],
            levels,
        )

    rows = _curve_rows(curves)
    rows = _fit_rows(rows, Table.MAX_ROWS, f"Table has a limit of {Table.MAX_ROWS} rows.")
    return plot_table(
        "wandb/area-under-curve/v0",
        Table(columns=["class", "precision", "recall"], data=rows),
        {"x": "recall", "y": "precision", "class": "class"},
        {"title": title, "x-axis-title": "Recall", "y-axis-title": "Precision"},
        split_table=split_table,
    )


def roc_curve(
    y_true: Sequence[Any],
    y_probas: Sequence[Sequence[float]] | None = None,
    labels: Sequence[str] | Mapping[Any, str] | None = None,
    classes_to_plot: Iterable[Any] | None = None,
    title: str = "ROC Curve",
    split_table: bool = False,
) -> CustomChart:
    """ROC curves, one per class (one-vs-rest): true positive rate against false positive
    rate. ``y_true``, ``y_probas``, ``labels`` and ``classes_to_plot`` are as for
    :func:`pr_curve`.

    The table (``class``, ``fpr``, ``tpr``, rounded to 3 places) has the points of
    scikit-learn's ``roc_curve`` (collinear points dropped, starting at (0, 0); a class that
    every sample has gets NaN false positive rates) and is cut to ``Table.MAX_ROWS`` rows as
    wandb does; see :func:`pr_curve` for how exactly that matches and where we differ.
    """
    from ._media import Table

    truth, scores, plotted = _curve_inputs(y_true, y_probas, labels, classes_to_plot)
    nan = float("nan")
    curves: dict[Any, tuple[list[float], list[float]]] = {}
    for column, positive, label in plotted:
        fps, tps = _threshold_counts(truth, [row[column] for row in scores], positive)
        if len(fps) > 2:
            # Keep the ends and the corners: drop points collinear with both neighbours.
            keep = [0]
            for i in range(1, len(fps) - 1):
                if (
                    fps[i + 1] - fps[i] != fps[i] - fps[i - 1]
                    or tps[i + 1] - tps[i] != tps[i] - tps[i - 1]
                ):
                    keep.append(i)
            keep.append(len(fps) - 1)
            fps = [fps[i] for i in keep]
            tps = [tps[i] for i in keep]
        fps = [0, *fps]
        tps = [0, *tps]
        fpr = [fp / fps[-1] for fp in fps] if fps[-1] > 0 else [nan] * len(fps)
        tpr = [tp / tps[-1] for tp in tps] if tps[-1] > 0 else [nan] * len(tps)
        curves[label] = (fpr, tpr)

    rows = _curve_rows(curves)
    rows = _fit_rows(
        rows, Table.MAX_ROWS, f"wandb uses only {Table.MAX_ROWS} data points to create the plots."
    )
    return plot_table(
        "wandb/area-under-curve/v0",
        Table(columns=["class", "fpr", "tpr"], data=rows),
        {"x": "fpr", "y": "tpr", "class": "class"},
        {
            "title": title,
            "x-axis-title": "False positive rate",
            "y-axis-title": "True positive rate",
        },
        split_table=split_table,
    )


# --- input ---------------------------------------------------------------------------------


def _settings(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        items = getattr(value, "items", None)
        if not callable(items):
            raise InvalidValueError(f"{name} must be a dict, got {type(value).__name__}")
        value = dict(items())
    for key in value:
        if not isinstance(key, str):
            raise InvalidValueError(f"{name} keys must be strings, got {key!r}")
    return dict(value)


def _plain(value: Any) -> Any:
    """A numpy (or torch) scalar as the Python value it holds; anything else as it is."""
    if value is None or type(value) in (str, int, float, bool, bytes):
        return value
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", None) == 0:
        return tolist()
    return value


def _is_sequence(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    return hasattr(value, "__iter__") or hasattr(value, "__getitem__")


def _as_list(value: Any, name: str) -> list[Any]:
    """A list, numpy array, pandas Series, tensor or other iterable as a list."""
    if value is None:
        raise InvalidValueError(f"{name} is required")
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", 1) != 0:
        value = tolist()
    elif callable(getattr(value, "to_numpy", None)):
        value = value.to_numpy().tolist()
    if not _is_sequence(value):
        raise InvalidValueError(f"{name} must be a list or an array, got {type(value).__name__}")
    try:
        return list(value)
    except TypeError:
        raise InvalidValueError(
            f"{name} must be a list or an array, got {type(value).__name__}"
        ) from None


def _rows(value: Any, name: str) -> list[list[Any]]:
    """A 2-D array or list of rows, each as a list; rows must be of one length."""
    rows = [_as_list(row, f"each row of {name}") for row in _as_list(value, name)]
    if rows and any(len(row) != len(rows[0]) for row in rows):
        raise InvalidValueError(f"The rows of {name} differ in length; it must be a 2-D array")
    return rows


def _number(value: Any, name: str) -> float:
    value = _plain(value)
    if isinstance(value, (str, bytes)) or value is None:
        raise InvalidValueError(f"{name} must hold numbers, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{name} must hold numbers, got {value!r}") from None


def _argmax(row: list[Any], i: int) -> int:
    """numpy.argmax of one row: the first highest value, or the first NaN."""
    if not row:
        raise InvalidValueError(f"Row {i} of probs is empty")
    values = [_number(v, "probs") for v in row]
    best, best_value = 0, values[0]
    for j, value in enumerate(values):
        if value != value:  # NaN
            return j
        if value > best_value:
            best, best_value = j, value
    return best


def _column(values: list[Any]) -> list[Any]:
    """The values as numpy would hold them in one array: bools and ints with floats become
    floats, bools with ints become ints, numbers with strings become strings."""
    kinds = {type(v) for v in values}
    if len(kinds) <= 1 or not kinds <= {bool, int, float, str}:
        return values
    if str in kinds:
        return [v if isinstance(v, str) else str(v) for v in values]
    if float in kinds:
        return [float(v) for v in values]
    return [int(v) for v in values]


def _class_column(names: list[Any]) -> list[Any]:
    """The class column as wandb's DataFrame has it: one numpy type, rounded to 3 places
    when it is a float column."""
    column = _column(names)
    if column and all(type(v) is float for v in column):
        return [_round3(v) for v in column]
    return column


def _curve_inputs(
    y_true: Any, y_probas: Any, labels: Any, classes_to_plot: Any
) -> tuple[list[Any], list[list[float]], list[tuple[int, Any, Any]]]:
    """The labels, the score rows and the classes to plot as ``(column, label, name)``."""
    import math

    if y_true is None:
        raise InvalidValueError("y_true is None: the true labels are required")
    if y_probas is None:
        raise InvalidValueError("y_probas is None: the predicted class scores are required")
    truth = [_plain(v) for v in _as_list(y_true, "y_true")]
    if not truth:
        raise InvalidValueError("y_true is empty")
    for v in truth:
        if not isinstance(v, (bool, int, float, str)):
            raise InvalidValueError(
                f"y_true must hold class labels (ints, strings, bools), got {v!r}"
            )
    kinds = {type(v) for v in truth}
    if str in kinds and len(kinds) > 1:
        raise InvalidValueError("y_true mixes string and numeric labels")
    truth = _column(truth)
    if isinstance(truth[0], float):
        for v in truth:
            if not math.isfinite(v) or v != int(v):
                raise InvalidValueError(
                    f"y_true must hold class labels, not continuous values such as {v!r}"
                )
    integer_labels = type(truth[0]) is int

    rows = _rows(y_probas, "y_probas")
    if len(rows) != len(truth):
        raise InvalidValueError(
            f"y_true and y_probas must be of the same length: {len(truth)} labels, "
            f"{len(rows)} rows of scores"
        )
    scores = [[_number(v, "y_probas") for v in row] for row in rows]
    for row in scores:
        for v in row:
            if not math.isfinite(v):
                raise InvalidValueError(f"y_probas must hold finite scores, got {v!r}")

    classes = sorted(set(truth))
    if classes_to_plot is None:
        wanted = classes
    elif _is_sequence(classes_to_plot) or hasattr(classes_to_plot, "tolist"):
        wanted = [_plain(v) for v in _as_list(classes_to_plot, "classes_to_plot")]
    else:
        wanted = [_plain(classes_to_plot)]
    if isinstance(labels, str):
        raise InvalidValueError("labels must be a list of class names, not a string")
    if labels is not None and integer_labels and hasattr(labels, "tolist"):
        labels = labels.tolist()

    plotted = []
    for column, label in enumerate(classes):
        if label not in wanted:
            continue
        if not rows or column >= len(rows[0]):
            raise InvalidValueError(
                f"y_probas has {len(rows[0]) if rows else 0} columns, but y_true has "
                f"{len(classes)} classes: column {column} holds the scores of class {label!r}"
            )
        name = label
        if labels is not None and integer_labels:
            try:
                name = _plain(labels[label])
            except (IndexError, KeyError, TypeError):
                raise InvalidValueError(f"labels has no name for class {label!r}") from None
        plotted.append((column, label, name))
    if not plotted:
        raise InvalidValueError(
            f"None of classes_to_plot {wanted!r} is a label in y_true {classes!r}"
        )
    return truth, scores, plotted


# --- curves --------------------------------------------------------------------------------


def _threshold_counts(truth: list[Any], scores: list[float], positive: Any) -> tuple[list, list]:
    """scikit-learn's binary confusion counts: false and true positives when every sample
    scoring at least the threshold is called positive, for each distinct score, highest
    first."""
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    fps: list[int] = []
    tps: list[int] = []
    fp = tp = 0
    last = len(order) - 1
    for k, i in enumerate(order):
        if truth[i] == positive:
            tp += 1
        else:
            fp += 1
        if k == last or scores[order[k + 1]] != scores[i]:
            fps.append(fp)
            tps.append(tp)
    return fps, tps


def _curve_rows(curves: dict[Any, tuple[list[float], list[float]]]) -> list[list[Any]]:
    """The rows ``[class, a, b]`` of the curves ``{class: (as, bs)}``, rounded as wandb's
    ``DataFrame.round(3)``."""
    names = _class_column([label for label, (first, _) in curves.items() for _ in first])
    pairs = [pair for first, second in curves.values() for pair in zip(first, second, strict=True)]
    return [[name, _round3(a), _round3(b)] for name, (a, b) in zip(names, pairs, strict=True)]


def _linspace01(n: int) -> list[float]:
    """numpy.linspace(0, 1, n), to the bit: i * (1 / (n - 1)), the last exactly 1."""
    if n <= 1:
        return [0.0] * n
    step = 1.0 / (n - 1)
    return [i * step for i in range(n - 1)] + [1.0]


def _round3(value: float) -> float:
    """numpy.round(value, 3), as pandas' DataFrame.round(3) does it: value * 1000 rounded half
    to even, / 1000 (not Python's correctly rounded round(value, 3))."""
    import math

    if not math.isfinite(value):
        return value
    scaled = value * 1000.0
    return math.copysign(float(round(scaled)), scaled) / 1000.0


# --- cutting a table down to size as wandb does (scikit-learn's resample) ------------------


def _fit_rows(rows: list[list[Any]], max_rows: int, message: str) -> list[list[Any]]:
    """Past ``max_rows``, the rows wandb keeps: scikit-learn's ``resample(rows,
    replace=False, n_samples=max_rows, random_state=42, stratify=class)``, sorted by the two
    values, then the class (pandas' ``sort_values``, NaN last)."""
    if len(rows) <= max_rows:
        return rows
    import warnings

    warnings.warn(f"{message} Resampling to fit.", stacklevel=3)
    draw = _numpy_random_state(_RESAMPLE_SEED)
    by_class: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        by_class.setdefault(row[0], []).append(i)
    try:
        classes = sorted(by_class)
    except TypeError:
        classes = list(by_class)
    members = [by_class[c] for c in classes]
    picks = _approximate_mode([len(m) for m in members], max_rows, draw)
    kept = [m[j] for m, n in zip(members, picks, strict=True) for j in draw.permutation(len(m))[:n]]
    # (resample shuffles the picked rows at the end, which the sort below undoes.)

    def key(row: list[Any]) -> tuple[Any, ...]:
        a, b = row[1], row[2]
        return (a != a, 0.0 if a != a else a, b != b, 0.0 if b != b else b)

    chosen = [rows[i] for i in kept]
    try:
        chosen.sort(key=lambda row: (*key(row), row[0]))
    except TypeError:
        chosen.sort(key=key)
    return chosen


def _approximate_mode(counts: list[int], draws: int, draw: _NumpyRandomState) -> list[int]:
    """scikit-learn's ``_approximate_mode``: how many of ``draws`` to take from each class,
    in proportion, the leftovers going to the largest remainders (ties broken at random)."""
    import math

    total = sum(counts)
    continuous = [count / total * draws for count in counts]
    floored = [float(math.floor(x)) for x in continuous]
    need = int(draws - sum(floored))
    if need > 0:
        remainder = [x - f for x, f in zip(continuous, floored, strict=True)]
        for value in sorted(set(remainder), reverse=True):
            tied = [i for i, r in enumerate(remainder) if r == value]
            now = min(len(tied), need)
            for j in draw.permutation(len(tied))[:now]:
                floored[tied[j]] += 1
            need -= now
            if need == 0:
                break
    return [int(f) for f in floored]


class _NumpyRandomState:
    """The draws of ``numpy.random.RandomState(seed).permutation``: MT19937 seeded as numpy's
    legacy seeding does, Fisher-Yates with numpy's masked rejection sampling."""

    def __init__(self, state: list[int]) -> None:
        import random

        self._random = random.Random()
        self._random.setstate((3, (*state, 624), None))

    def _interval(self, high: int) -> int:
        """numpy's random_interval: uniform in 0..high."""
        if high == 0:
            return 0
        mask = high
        for shift in (1, 2, 4, 8, 16, 32):
            mask |= mask >> shift
        bits = 32 if high <= 0xFFFFFFFF else 64
        while True:
            value = self._random.getrandbits(bits) & mask
            if value <= high:
                return value

    def permutation(self, n: int) -> list[int]:
        values = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self._interval(i)
            values[i], values[j] = values[j], values[i]
        return values


def _numpy_random_state(seed: int) -> _NumpyRandomState:
    """``numpy.random.RandomState(seed)``: MT19937's init_genrand."""
    state = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        previous = state[-1]
        state.append((1812433253 * (previous ^ (previous >> 30)) + i) & 0xFFFFFFFF)
    return _NumpyRandomState(state)
