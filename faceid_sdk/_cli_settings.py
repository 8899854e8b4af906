"""Settings shared by every ``faceid-sdk`` command.

Each command carries them itself (not only the group): Click caches a command's help option on
first use, so a command invoked on its own (as tests and embedding servers do) must agree with the
same command reached through ``faceid-sdk``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Any

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class FaceIDCommandError(click.ClickException):
    """A library error at the CLI boundary: its message on one line, its class's exit status."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.exit_code = getattr(error, "exit_code", 1)  # type: ignore[misc]


class ThresholdType(click.ParamType):  # type: ignore[type-arg]
    """A decision threshold: a Euclidean distance > 0, or ``paper`` for the paper's 0.5."""

    name = "DISTANCE|paper"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str:
        if isinstance(value, float) or str(value).strip().lower() == "paper":
            return value if isinstance(value, float) else "paper"
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a distance nor 'paper'", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} must be a distance > 0", param, ctx)
        return number


class StoreType(click.ParamType):  # type: ignore[type-arg]
    """A store: an SQLite file path, or a ``postgresql://`` URL (kept as text, not a path)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from pathlib import Path

        text = str(value)
        if text.lower().startswith(("postgresql://", "postgres://")):
            return text
        path = Path(text)
        if path.is_dir():
            self.fail(f"{text!r} is a folder: give the store's file (e.g. faces.db)", param, ctx)
        return path


STORE_HELP = ("The store of record: an SQLite file, or a PostgreSQL URL "
              "(postgresql://user@host/db) shared by several servers.")

threshold_option = click.option(
    "--threshold", type=ThresholdType(), default=None,
    show_default="this store's calibration, else the shipped model's",
    help="Accept a match only below this Euclidean distance; 'paper' is the paper's fixed 0.5. "
         "See `faceid-sdk calibrate`.",
)


ambiguity_option = click.option(
    "--allow-ambiguous", is_flag=True,
    help="Name (or verify) the nearest identity even when another one is under the threshold "
         "too. By default such answers are refused as 'ambiguous', by every command and the "
         "server alike.",
)


def quiet_tensorflow() -> None:
    """Import TensorFlow (when installed) without its start-up lines on stderr.

    TensorFlow's C++ side prints oneDNN and CPU-feature notices before its log level is read,
    straight to file descriptor 2, on every command that loads it; a command's output is for
    its reader. Errors still surface: an import that fails raises as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            # A missing TensorFlow is reported by the command itself, with the extra to install.
            with contextlib.suppress(ImportError):
                import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
