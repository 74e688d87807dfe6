"""Running the ``istn-sk`` command line in-process, for the CLI test modules."""

from __future__ import annotations

from click.testing import CliRunner, Result
from istn_sk.cli.main import main


def run(*args, ok: bool = True) -> Result:
    """Invoke ``istn-sk`` with ``args`` (made strings); with ``ok``, assert it succeeded."""
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result
