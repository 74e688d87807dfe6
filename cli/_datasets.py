"""``datasets list`` and ``datasets make``: the registered datasets."""

from __future__ import annotations

import click

from ._run import ensure_new_folder
from ._settings import KEY_VALUE, quiet_option


def _takes_verbose(make) -> bool:
    """Whether a dataset's ``make`` accepts ``verbose`` (its progress report)."""
    import inspect

    parameters = inspect.signature(make).parameters.values()
    return any(p.name == "verbose" or p.kind is p.VAR_KEYWORD for p in parameters)


@click.group("datasets")
def datasets_group() -> None:
    """List the registered datasets, or write one to a folder."""


@datasets_group.command("list")
def list_command() -> None:
    """Each registered dataset with its provider and description."""
    from istn_sk import get_registry

    for entry in get_registry().entries("dataset"):
        click.echo(f"{entry.name}  {entry.provider} {entry.version}  {entry.description}")


@datasets_group.command("make")
@click.argument("name")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write the images and manifest.tsv to.")
@click.option("--option", "options", multiple=True, type=KEY_VALUE,
              help="An option of the dataset's make (repeatable; values read as JSON/YAML), "
                   "e.g. --option n_samples=100 --option domains=[A,B].")
@click.option("--force", is_flag=True, help="Write into a non-empty folder.")
@quiet_option
def make_command(name: str, out: str, options: tuple[tuple[str, str], ...], force: bool,
                 quiet: bool) -> None:
    """Write the registered dataset NAME (see `istn-sk datasets list`) to --out.

    Options are those of the dataset's make, e.g. for morpho-mnist domains,
    splits, n_samples, random_state; for brain-sites n_per_site, shape,
    travelling_subjects (docs/datasets.md). Generation reports its progress
    (verbose=1) unless -q (or --option verbose=0).
    """
    from istn_sk import datasets, get_registry
    from istn_sk.io import parse_value

    entry = get_registry().get("dataset", name, parameter="NAME")
    ensure_new_folder(out, force=force)
    kwargs = {key: parse_value(value) for key, value in options}
    if _takes_verbose(entry.factory().make):
        kwargs.setdefault("verbose", 0 if quiet else 1)
    manifest = datasets.make(name, out, **kwargs, **({"overwrite": True} if force else {}))
    click.echo(f"wrote {manifest}")
