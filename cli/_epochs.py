"""A skorch callback that reports each epoch (imported only when training: it imports torch)."""

from __future__ import annotations

from numbers import Number

from skorch.callbacks import Callback

from istn_sk._progress import Progress


class EpochProgress(Callback):
    """One progress step per epoch, shown with that epoch's losses and validation scores.

    Parameters
    ----------
    desc : str
        Label of the bar and lines (the command's name).
    quiet : bool, default=False
        Report nothing.
    """

    def __init__(self, desc: str, quiet: bool = False) -> None:
        self.desc, self.quiet = desc, quiet

    def on_train_begin(self, net, **kwargs) -> None:
        done = len(net.history)   # epochs a resumed fit has already trained
        self.progress_ = Progress(max(net.max_epochs, done), desc=self.desc, unit="epochs",
                                  quiet=self.quiet, initial=done)

    def on_epoch_end(self, net, **kwargs) -> None:
        scores = net.history[-1]
        self.progress_.update(info=" ".join(
            f"{key}={value:.4g}" for key, value in scores.items()
            if (key.endswith("_loss") or key.startswith("valid_"))
            and isinstance(value, Number) and not isinstance(value, bool)))

    def on_train_end(self, net, **kwargs) -> None:
        self.progress_.close()
