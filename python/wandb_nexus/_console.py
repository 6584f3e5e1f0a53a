"""Console capture: while a run is active, text written to ``sys.stdout`` and ``sys.stderr``
still reaches the terminal and is also recorded as the run's console output."""

from __future__ import annotations

import sys

# Typing-only imports: `typing` costs milliseconds at import, and annotations are lazy.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO


class _Tee:
    """Wraps a text stream; ``write`` also hands the text to the run."""

    def __init__(self, stream: TextIO, record: Callable[[str], None]) -> None:
        self._stream = stream
        self._record = record

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if text:
            self._record(text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class ConsoleCapture:
    """Installs tees on ``sys.stdout``/``sys.stderr`` and removes them again."""

    def __init__(self, record: Callable[[bool, str], None]) -> None:
        self._record = record
        self._installed: list[tuple[str, TextIO, _Tee]] = []

    def start(self) -> None:
        for name, is_stderr in (("stdout", False), ("stderr", True)):
            stream = getattr(sys, name)
            if stream is None:
                continue
            tee = _Tee(stream, self._recorder(is_stderr))
            setattr(sys, name, tee)
            self._installed.append((name, stream, tee))

    def _recorder(self, is_stderr: bool) -> Callable[[str], None]:
        def record(text: str) -> None:
            self._record(is_stderr, text)

        return record

    def stop(self) -> None:
        for name, stream, tee in self._installed:
            # Someone may have replaced our tee since; leave their stream in place.
            if getattr(sys, name) is tee:
                setattr(sys, name, stream)
        self._installed.clear()
