"""The one input-error type: what the `nanovla` command prints as a single line.

Bad input (a wrong option, a missing or corrupt file, a dataset that does not fit the command) is
the user's to fix, so the CLI prints `nanovla CMD: error: <message>` and exits 2. Everything else
is a bug and keeps its traceback. The subclasses also derive from the built-in exception a
Python caller would expect (`ValueError`, `FileNotFoundError`, `FileExistsError`), so library
users can catch either.
"""

from __future__ import annotations


class NanovlaError(Exception):
    """An input error: the message names the file, key, episode or argument that is wrong."""


class InputError(NanovlaError, ValueError):
    """A value the user gave (an option, a file's content) is wrong."""


class MissingError(NanovlaError, FileNotFoundError):
    """A file or directory the user named (or the command needs) does not exist."""


class ExistsError(NanovlaError, FileExistsError):
    """The command would overwrite something the user did not ask to replace."""
