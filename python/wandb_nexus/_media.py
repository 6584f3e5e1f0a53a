"""Rich data types as in ``wandb``: Image, Table, Histogram, Html and Audio.

These classes hold the user's data and hand it to the native core, which checks it at once
(so a bad value raises here, naming the problem) and encodes it off the caller's thread when
the value is logged. numpy, PIL and pandas are never imported: arrays are read through
``__array_interface__``, PIL images through their own ``tobytes()``, DataFrames through their
columns.
"""

from __future__ import annotations

import os

from . import _core
from .errors import InvalidValueError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["Audio", "Histogram", "Html", "Image", "Table"]


def _is_array(value: object) -> bool:
    return hasattr(value, "__array_interface__")


def _is_tensor(value: object) -> bool:
    return type(value).__module__.split(".")[0] == "torch"


def _as_array(value: Any) -> Any:
    """`value` as an object with ``__array_interface__``, if it is array-like: a numpy array
    as it is, a torch tensor (detached, on the CPU), a TensorFlow eager tensor or JAX array
    through their own conversion; else None."""
    if _is_array(value):
        return value
    if _is_tensor(value):
        return value.detach().cpu().numpy()
    for convert in ("numpy", "__array__"):
        if callable(getattr(value, convert, None)):
            converted = getattr(value, convert)()
            if _is_array(converted):
                return converted
    return None


def _is_pil_image(value: object) -> bool:
    module = type(value).__module__
    return module.startswith("PIL.") and hasattr(value, "tobytes") and hasattr(value, "mode")


def _is_dataframe(value: object) -> bool:
    return type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "columns")


class Media:
    """Base of the values that are stored as files when logged."""

    _core_value: _core.MediaCore

    def _to_core(self) -> _core.MediaCore:
        return self._core_value


class Image(Media):
    """An image: a numpy array (HxW, HxWx1, HxWx3 or HxWx4; uint8, or floats already in
    0..255), a torch tensor (CHW), a PIL image, a path to an image file, or another Image."""

    MAX_ITEMS = 108

    _caption: str | None
    _source: Any

    def __init__(
        self,
        data_or_path: Any,
        mode: str | None = None,
        caption: str | None = None,
        grouping: int | None = None,
        classes: Any = None,
        boxes: Any = None,
        masks: Any = None,
        file_type: str | None = None,
        normalize: bool = True,
    ) -> None:
        if boxes is not None or masks is not None:
            raise InvalidValueError("Image boxes and masks are not supported yet")
        if file_type not in (None, "png"):
            raise InvalidValueError(f"Image file_type {file_type!r} is not supported (use png)")
        data = data_or_path
        if isinstance(data, Image):
            caption = caption if caption is not None else data._caption
            data = data._source
        if caption is not None and not isinstance(caption, str):
            caption = str(caption)
        self._caption = caption
        self._source = data
        if isinstance(data, (str, os.PathLike)):
            path = os.fspath(data)
            if "://" in path:
                raise InvalidValueError(f"cannot log a reference image ({path}) to a run")
            self._core_value = _core.image_from_file(path, caption)
        elif _is_pil_image(data):
            image = data
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                transparent = "A" in image.mode or "transparency" in getattr(image, "info", {})
                image = image.convert("RGBA" if transparent else "RGB")
            width, height = image.size
            self._core_value = _core.image_from_pixels(
                width, height, image.mode, image.tobytes(), caption
            )
        elif _is_tensor(data) and getattr(data, "ndim", 0) == 3:
            # A CHW tensor, as torchvision makes them: HWC for the image, as in wandb.
            array = data.detach().cpu().permute(1, 2, 0).numpy()
            self._core_value = _core.image_from_array(array, mode, caption)
        elif (array := _as_array(data)) is not None:
            self._core_value = _core.image_from_array(array, mode, caption)
        else:
            raise InvalidValueError(
                f"Image needs a numpy array, a PIL image or a path, got {type(data).__name__}"
            )

    @property
    def width(self) -> int | None:
        size = self._core_value.size
        return None if size is None else size[0]

    @property
    def height(self) -> int | None:
        size = self._core_value.size
        return None if size is None else size[1]

    @property
    def caption(self) -> str | None:
        return self._caption


class Html(Media):
    """An HTML page: its text, a path to a ``.html`` file, or a file object."""

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        if hasattr(data, "read"):
            text = data.read()
        elif (
            isinstance(data, (str, os.PathLike))
            and not data_is_not_path
            and os.fspath(data).endswith(".html")
            and os.path.isfile(data)
        ):
            with open(data, encoding="utf-8") as page:
                text = page.read()
        elif isinstance(data, str):
            text = data
        else:
            raise InvalidValueError(f"Html needs a string or a path, got {type(data).__name__}")
        self.html = text
        self._core_value = _core.html(text, inject)


class Audio(Media):
    """Audio: a numpy array of samples (with ``sample_rate``), stored as 16-bit WAV, or a
    path to an audio file."""

    def __init__(
        self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None
    ) -> None:
        self._caption = caption
        self._sample_rate = sample_rate
        if isinstance(data_or_path, (str, os.PathLike)):
            self._core_value = _core.audio_from_file(os.fspath(data_or_path), caption)
        elif (array := _as_array(data_or_path)) is not None:
            if sample_rate is None:
                raise InvalidValueError(
                    'Argument "sample_rate" is required when instantiating Audio with raw data.'
                )
            self._core_value = _core.audio_from_array(array, sample_rate, caption)
        else:
            raise InvalidValueError(
                f"Audio needs a numpy array or a path, got {type(data_or_path).__name__}"
            )


class Histogram:
    """Counts of a sequence in ``num_bins`` equal bins (as ``numpy.histogram``), or a
    ``np_histogram=(values, bins)`` pair as given."""

    MAX_LENGTH = 512

    def __init__(
        self,
        sequence: Sequence[float] | Any | None = None,
        np_histogram: tuple[Any, Any] | None = None,
        num_bins: int = 64,
    ) -> None:
        if np_histogram is not None:
            if len(np_histogram) != 2:
                raise InvalidValueError("np_histogram must be a (values, bins) pair")
            values, bins = _core.histogram_from_counts(np_histogram[0], np_histogram[1])
        elif sequence is not None:
            array = _as_array(sequence)
            values, bins = _core.histogram(sequence if array is None else array, num_bins)
        else:
            raise InvalidValueError("Histogram needs a sequence or np_histogram")
        self.histogram: list[int] = values
        self.bins: list[float] = bins

    def to_json(self, run: object = None) -> dict[str, Any]:
        return {"_type": "histogram", "values": self.histogram, "bins": self.bins}

    # What the core logs for it: the JSON itself, as it has no file.
    _to_core = to_json


class Table(Media):
    """Rows of values under named columns; cells hold numbers, strings, bools, None, lists,
    dicts, or an Image (Html, Audio). A pandas DataFrame can be given as ``dataframe`` (or
    ``data``), or logged directly."""

    MAX_ROWS = 10000
    MAX_ARTIFACT_ROWS = 200000

    def __init__(
        self,
        columns: list[Any] | None = None,
        data: Any = None,
        rows: Any = None,
        dataframe: Any = None,
        dtype: Any = None,
        optional: Any = True,
        allow_mixed_types: bool = False,
        log_mode: str | None = "IMMUTABLE",
    ) -> None:
        if log_mode not in (None, "IMMUTABLE"):
            raise InvalidValueError(f"Table log_mode {log_mode!r} is not supported yet")
        self._allow_mixed_types = allow_mixed_types
        if dataframe is None and _is_dataframe(data):
            dataframe, data = data, None
        if dataframe is not None:
            columns = list(dataframe.columns)
            data = [
                list(row) for row in zip(*(dataframe[c].tolist() for c in columns), strict=True)
            ]
        elif (array := _as_array(data)) is not None:
            data = array.tolist()
        if columns is None:
            columns = ["Input", "Output", "Expected"]
        if not isinstance(columns, list):
            raise InvalidValueError("Table columns must be a list")
        self.columns: list[Any] = columns
        rows_in = data if data is not None else rows if rows is not None else []
        self.data: list[list[Any]] = [list(row) for row in rows_in]
        self._logged = False
        self._check()

    def _check(self) -> _core.MediaCore:
        # Checked as a whole: a cell of the wrong type raises, naming its row and column.
        self._checked = _core.table(self.columns, self.data, self._allow_mixed_types)
        self._checked_shape = (len(self.data), len(self.columns))
        return self._checked

    def add_data(self, *data: Any) -> None:
        """Adds a row; it must have a cell per column. Cell types are checked when the
        table is logged."""
        if len(data) != len(self.columns):
            raise InvalidValueError(
                f"This table expects {len(self.columns)} columns: {self.columns}, found {len(data)}"
            )
        self.data.append(list(data))

    def add_row(self, *row: Any) -> None:
        self.add_data(*row)

    def add_column(self, name: Any, data: list[Any], optional: bool = False) -> None:
        if name in self.columns:
            raise InvalidValueError(f"column {name!r} already exists")
        if self.data and len(data) != len(self.data):
            raise InvalidValueError(
                f"column {name!r} has {len(data)} values for {len(self.data)} rows"
            )
        if self.data:
            rows = [[*row, cell] for row, cell in zip(self.data, data, strict=True)]
        else:
            rows = [[cell] for cell in data]
        self.columns, self.data = [*self.columns, name], rows
        self._check()

    def get_column(self, name: Any, convert_to: str | None = None) -> list[Any]:
        if name not in self.columns:
            raise InvalidValueError(f"no column {name!r} in {self.columns}")
        index = self.columns.index(name)
        return [row[index] for row in self.data]

    def _to_core(self) -> _core.MediaCore:
        # Once logged, the table is what was logged (wandb's IMMUTABLE mode): logging it
        # again refers to the same file and artifact, rows added since or not.
        if not self._logged and self._checked_shape != (len(self.data), len(self.columns)):
            self._check()
        elif self._logged and self._checked_shape[0] != len(self.data):
            return self._checked.relogged(len(self.data))
        self._logged = True
        return self._checked
