"""Settings shared by every ``faceid-sdk`` command.

Each command carries them itself (not only the group): Click caches a command's help option on
first use, so a command invoked on its own (as tests and embedding servers do) must agree with the
same command reached through ``faceid-sdk``.
"""

from __future__ import annotations

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
