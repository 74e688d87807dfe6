"""``istn-sk``: the click group and its commands.

Heavy modules (torch, the estimators) are imported inside commands, so
``istn-sk --help`` answers fast. Plugins add commands through the
``istn_sk_add_cli_commands`` hook.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="istn-sk")
def main() -> None:
    """Image-level domain adaptation with image-and-spatial transformer networks."""


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


def _add_plugin_commands(group: click.Group) -> None:
    from istn_sk._registry import get_registry

    get_registry().plugin_manager.hook.istn_sk_add_cli_commands(cli=group)


_add_plugin_commands(main)
