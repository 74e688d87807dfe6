"""``fit --resume RUN``: continue a stopped or killed run from its checkpoint; the stop line.

``istn-sk fit`` checkpoints every epoch into its run folder. Stopped by
Ctrl-C (SIGINT) or SIGTERM, it keeps the folder, prints one line naming the
checkpoint and the command that resumes, and exits with status 130 or 143;
killed outright (SIGKILL, a crash of the machine), it keeps the folder too.
``--resume RUN`` reruns the fit with ``RUN/config.json``, continuing from
the checkpoint, and ends with the model an uninterrupted run would have.
Nothing here imports torch.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import click
from click.core import ParameterSource

#: Options that may accompany ``--resume``: they change where and how verbosely it runs,
#: not what it computes.
WITH_RESUME = ("resume", "device", "num_workers", "quiet")
#: ``ctx.meta`` key of the checkpoint file the fit writes.
CHECKPOINT_META_KEY = "istn_sk.checkpoint"
#: The checkpoint's file name (``istn_sk._checkpoint.CHECKPOINT_NAME``, without importing torch).
CHECKPOINT_NAME = "istn-checkpoint.pt"

resume_option = click.option(
    "--resume", type=click.Path(file_okay=False), metavar="RUN",
    help="Continue the fit whose run folder is RUN (stopped by Ctrl-C or SIGTERM, or killed) "
         "from its checkpoint, with RUN/config.json; besides it, only --device, --num-workers "
         "and -q may be given.")


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def prepare_resume(ctx: click.Context) -> bool:
    """Point the command at ``RUN/config.json`` and ``RUN`` when ``--resume RUN`` is given.

    Returns
    -------
    bool
        Whether the run resumes.

    Raises
    ------
    click.UsageError
        Without ``--out`` nor ``--resume``, or with ``--resume`` and an
        option that would change what is computed (or ``--out``).
    ValueError
        If ``RUN`` is not the folder of an unfinished fit run.
    """
    folder = ctx.params.get("resume")
    if folder is None:
        if not ctx.params.get("out"):
            raise click.UsageError("Missing option '-o' / '--out' (or --resume RUN).")
        return False
    given = [name for name in ctx.params if name not in WITH_RESUME
             and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(
            f"--resume takes the run's settings from {Path(folder) / 'config.json'}; besides "
            f"it only --device, --num-workers and -q may be given, not "
            f"{', '.join(_option_name(name) for name in given)}")
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"--resume {folder}: there is no config.json there, so it is not the "
                         "folder of an `istn-sk fit` run")
    if (folder / "adapter.pt").exists() and not (folder / CHECKPOINT_NAME).exists():
        raise ValueError(f"--resume {folder}: that run has finished (adapter.pt is written and "
                         "its checkpoint removed); there is nothing to resume")
    ctx.params.update(config=str(folder / "config.json"), out=str(folder), force=True)
    return True


def stopped_line(ctx: click.Context) -> Callable:
    """The one line ``fit`` prints when a signal stops it: the checkpoint and how to resume."""

    def line(error) -> str:
        stopped = f"istn-sk fit: stopped by {error.signal_name}"
        folder = Path(ctx.params["out"]) if ctx.params.get("out") else None
        if folder is None or not (folder / "config.json").is_file():
            return f"{stopped} before its run folder was written; there is nothing to resume"
        resume = f"resume with: istn-sk fit --resume {shlex.quote(str(folder))}"
        checkpoint = (error.checkpoint or ctx.meta.get(CHECKPOINT_META_KEY)
                      or folder / CHECKPOINT_NAME)
        if error.checkpoint is not None and error.epoch:
            return f"{stopped} after epoch {error.epoch}; the checkpoint is {checkpoint}; {resume}"
        if Path(checkpoint).is_file():   # stopped outside the training loop
            return f"{stopped}; the checkpoint is {checkpoint}; {resume}"
        return f"{stopped} before the first epoch ended; {resume} (it starts afresh)"

    return line
