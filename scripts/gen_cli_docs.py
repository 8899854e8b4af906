"""Write docs/cli.md from the commands' own --help (a test checks it is current).

    python scripts/gen_cli_docs.py          # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check  # exit 1 if docs/cli.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from faceid_sdk.cli import main

TARGET = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def render() -> str:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"], prog_name="faceid-sdk", terminal_width=100).output
    parts = [
        "# Command-line reference\n",
        "Generated from `--help` by `scripts/gen_cli_docs.py`; do not edit by hand.\n",
        "```text\n" + top + "```\n",
    ]
    for name in sorted(main.commands):
        command = main.commands[name]
        if isinstance(command, click.Command):
            help_text = runner.invoke(main, [name, "--help"], prog_name="faceid-sdk",
                                      terminal_width=100).output
            parts.append(f"## faceid-sdk {name}\n\n```text\n{help_text}```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.read_text(encoding="utf-8") == text else 1)
    TARGET.write_text(text, encoding="utf-8")
