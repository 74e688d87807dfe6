"""``istn-sk``: the click group and its commands.

Heavy modules (torch, the estimators) are imported inside commands, so
``istn-sk --help`` answers fast. Plugins add commands through the
``istn_sk_add_cli_commands`` hook. Errors are reported as one line (a
traceback with ``--debug``); ``fit`` stopped by SIGINT/SIGTERM says how to
resume it and exits with status 130/143.
"""

from __future__ import annotations

import click

from ._apply import evaluate_command, predict_command, transform_command
from ._datasets import datasets_group
from ._export import export_command
from ._run import RUN_META_KEY
from ._train import fit_command, protocol_command, report_command, train_task_command


class _Group(click.Group):
    """A group that reports any error of its commands as one line, unless ``--debug``."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except Exception as error:
            run = ctx.meta.get(RUN_META_KEY)
            if run is not None:   # a failed run leaves no partial output folder
                run.discard()
            if isinstance(error, (click.ClickException, click.Abort)) or ctx.params.get("debug"):
                raise
            message = " ".join(str(error).split()) or type(error).__name__
            if not isinstance(error, (ValueError, OSError, TypeError)):
                message = f"{type(error).__name__}: {message}"
            raise click.ClickException(f"{message} (--debug shows the traceback)") from None
        finally:   # however the command ended (a signal keeps the folder): release its lock
            run = ctx.meta.pop(RUN_META_KEY, None)
            if run is not None:
                run.close()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="ISTN_SK_DEBUG",
              help="Show the traceback of an error.")
@click.version_option(package_name="istn-sk")
def main(debug: bool) -> None:
    """Image-level domain adaptation with image-and-spatial transformer networks.

    The reference workflow: train-task (T_S) -> evaluate -> fit (ISTN, and
    T_S2T) -> evaluate; transform writes S2T images; protocol runs the whole
    protocol; export writes a network for deployment (ONNX, safetensors,
    TorchScript). fit, train-task, evaluate and protocol write a
    self-contained report.html into their folder (report RUN_DIR rebuilds
    it). Every command reads --config (JSON/YAML, the reference code's keys
    too); see docs/cli.md.
    """


@main.command("plugins")
def plugins_command() -> None:
    """List every registered STN type, loss and dataset with its provider."""
    from istn_sk import get_registry

    rows = [(entry.kind, entry.name, f"{entry.provider} {entry.version}".strip(),
             entry.description) for entry in get_registry().entries()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for kind, name, provider, description in rows:
        cells = [kind.ljust(widths[0]), name.ljust(widths[1]), provider.ljust(widths[2])]
        click.echo("  ".join([*cells, description]))


for _command in (fit_command, transform_command, train_task_command, predict_command,
                 evaluate_command, protocol_command, report_command, export_command,
                 datasets_group):
    main.add_command(_command)


def _add_plugin_commands(group: click.Group) -> None:
    from istn_sk._registry import get_registry

    get_registry().plugin_manager.hook.istn_sk_add_cli_commands(cli=group)


_add_plugin_commands(main)
