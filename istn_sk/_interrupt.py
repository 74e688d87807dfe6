"""Stopping a training run on SIGINT or SIGTERM: a clean exit that keeps the last checkpoint.

Inside :func:`stop_on_signals`, Ctrl-C (SIGINT) and SIGTERM raise
:class:`TrainingInterrupted`, a :class:`SystemExit` with the shell's status
for the signal (``128 + signum``: 130, 143), so an uncaught one ends the
program without a traceback, and ``except Exception`` (scikit-learn's
``error_score``, skorch's ``KeyboardInterrupt`` handling) does not swallow
it. A signal that arrives inside :func:`signals_deferred` (a checkpoint
being written) takes effect when the block ends, so the file is whole.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: The signals that stop training.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULT_HANDLERS = (signal.SIG_DFL, signal.default_int_handler)


class TrainingInterrupted(SystemExit):
    """Training was stopped by SIGINT or SIGTERM.

    Parameters
    ----------
    signum : int
        The signal received.

    Attributes
    ----------
    code : int
        ``128 + signum``, the exit status of the program when uncaught.
    signum : int
    checkpoint : Path or None
        The checkpoint file of the last finished epoch (None: no checkpoint
        was being written).
    epoch : int
        Epochs that checkpoint holds (0: none finished yet).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.checkpoint: Path | None = None
        self.epoch = 0

    @property
    def signal_name(self) -> str:
        """``"SIGINT"`` or ``"SIGTERM"``."""
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return f"training stopped by {self.signal_name}"


class _State:
    """What the handler needs: whether ours is installed, held and delivered signals."""

    installed = False
    deferring = 0
    pending: int | None = None
    delivered: int | None = None


def _handle(signum: int, frame) -> None:
    if _State.delivered is not None:   # already stopping: a second Ctrl-C changes nothing
        return
    if _State.deferring:
        _State.pending = signum
        return
    _State.delivered = signum
    raise TrainingInterrupted(signum)


@contextmanager
def stop_on_signals(report: Callable[[TrainingInterrupted], str] | None = None
                    ) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`TrainingInterrupted` inside the block.

    Handlers are installed only in the main thread and only over the default
    ones (a signal the program ignores or handles itself is left alone);
    they are restored when the block ends. A block nested in another shares
    the outer block's handlers, and only the outermost one reports.

    Parameters
    ----------
    report : callable, optional
        Called with the exception when it leaves the outermost block; the
        line it returns is written to stderr.

    Raises
    ------
    TrainingInterrupted
        When one of the signals arrives.
    """
    if _State.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if any(handler is default for default in _DEFAULT_HANDLERS):
            previous[signum] = signal.signal(signum, _handle)
    if not previous:
        yield
        return
    _State.installed, _State.pending, _State.delivered = True, None, None
    try:
        yield
        if _State.delivered is not None:   # something swallowed the exception: raise it again
            raise TrainingInterrupted(_State.delivered)
    except TrainingInterrupted as error:
        if report is not None:
            print(report(error), file=sys.stderr, flush=True)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _State.installed, _State.pending, _State.delivered = False, None, None


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold a stop signal arriving inside the block until the block has finished.

    Raises
    ------
    TrainingInterrupted
        On leaving the block normally, when a signal arrived inside it.
    """
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    if not _State.deferring and _State.pending is not None and _State.delivered is None:
        _State.delivered, _State.pending = _State.pending, None
        raise TrainingInterrupted(_State.delivered)
