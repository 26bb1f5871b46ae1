"""The `scistack` command line: a thin click shell, one library call per command."""

from __future__ import annotations

import click

from scistack import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scistack")
def main() -> None:
    """Inspect and maintain a scistack project (versioned, lineage-tracked data)."""
