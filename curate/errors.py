"""One exception hierarchy for everything `curate` raises on purpose.

`UserError` and its subclasses are mistakes a user can make (a bad path, flag or config): the CLI prints
their message as one line and exits 2. Anything else is a bug or an environment failure and keeps its
traceback.
"""

from __future__ import annotations


class CurateError(Exception):
    """Base of every error `curate` raises deliberately."""


class UserError(CurateError):
    """A mistake the user can fix: printed as one line, exit status 2."""


class ConfigError(UserError):
    """A configuration value, file or flag is invalid."""


class InputError(UserError):
    """An input path, URL or file listing is missing or unreadable."""


class IntegrityError(CurateError):
    """Output failed a check (counts do not add up, a checksum differs): the run must fail loudly."""


class WeightsError(CurateError):
    """Model weights are missing or do not match their pinned SHA-256."""
