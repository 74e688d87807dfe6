"""Progress reports: a tqdm bar on a terminal, plain lines elsewhere, nothing when quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: Plain lines (off a terminal) are printed at most every this share of the total.
LINE_SHARE = 0.05


class Progress:
    """Progress over ``total`` steps, written to ``stream`` (default: stderr).

    On a terminal, a tqdm bar; elsewhere (a log file, a pipe), a line
    ``desc: done/total unit info`` each time at least 5% more of the
    total is done, and when it is complete; with ``quiet``, nothing.

    Parameters
    ----------
    total : int
        Number of steps.
    desc : str
        Label of the bar and lines.
    unit : str, default="it"
        What a step is (``"epochs"``, ``"images"``).
    quiet : bool, default=False
        Report nothing.
    initial : int, default=0
        Steps already done (a resumed run).
    stream : file-like, optional
        Where to write; default ``sys.stderr`` when the object is created.
    """

    def __init__(self, total: int, *, desc: str, unit: str = "it", quiet: bool = False,
                 initial: int = 0, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.quiet = int(total), desc, unit, quiet
        self.done = self._shown = int(initial)
        self._stream = sys.stderr if stream is None else stream
        self._bar = None
        if not quiet and _is_terminal(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit,
                             file=self._stream, dynamic_ncols=True)

    def update(self, n: int = 1, info: str = "") -> None:
        """Record ``n`` more steps done; ``info`` (e.g. the epoch's losses) is shown with them."""
        self.done += n
        if self.quiet:
            return
        if self._bar is not None:
            if info:
                self._bar.set_postfix_str(info, refresh=False)
            self._bar.update(n)
            return
        if self.done - self._shown >= max(1, LINE_SHARE * self.total) or self.done >= self.total:
            self._shown = self.done
            line = f"{self.desc}: {self.done}/{self.total} {self.unit}"
            print(f"{line} {info}" if info else line, file=self._stream, flush=True)

    def close(self) -> None:
        """End the bar (plain lines need no ending)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def track(iterable: Iterable[T], total: int, *, desc: str, unit: str = "it",
          quiet: bool = False) -> Iterator[T]:
    """Yield the items of ``iterable``, reporting one step per item with :class:`Progress`."""
    with Progress(total, desc=desc, unit=unit, quiet=quiet) as progress:
        for item in iterable:
            yield item
            progress.update()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
