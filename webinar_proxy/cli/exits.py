"""The exit codes every command uses (documented in the man page's EXIT STATUS)."""

from __future__ import annotations

EXIT_OK = 0
#: The command ran and failed (the store or the API answered an error, a file is unreadable).
EXIT_FAILURE = 1
#: The configuration or the command line is wrong; nothing was done.
EXIT_CONFIG = 2
#: ``inspect``'s name for the same code: the input is not usable.
EXIT_USAGE = EXIT_CONFIG
