"""Settings shared by every ``faceid-sdk`` command.

Each command carries them itself (not only the group): Click caches a command's help option on
first use, so a command invoked on its own (as tests and embedding servers do) must agree with the
same command reached through ``faceid-sdk``.
"""

from __future__ import annotations

import math
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


threshold_option = click.option(
    "--threshold", type=ThresholdType(), default=None,
    show_default="this store's calibration, else the shipped model's",
    help="Accept a match only below this Euclidean distance; 'paper' is the paper's fixed 0.5. "
         "See `faceid-sdk calibrate`.",
)
