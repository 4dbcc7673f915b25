"""The errors a user causes and can fix: a bad config value, missing data, a bad checkpoint, a
missing tool, an output folder that cannot be written.

The run's error boundary (``tasks/boundary.py``) ends a run that raises one of these with its
message alone (exit status 2, no traceback); anything else is a bug and keeps its traceback.
Every package may raise them; this module imports nothing.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """An error the user fixes; its message says what is wrong, where, and the fix."""


def show_value(value: Any) -> str:
    """A value as it is typed on the command line (``null``, ``true``, ``[1, 2]``, ``gcn``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


class ConfigError(UserError, ValueError):
    """A config value the run cannot use.

    Args:
        key: the key as the user sets it (``dropout``; the validator prefixes the group,
            ``model.dropout``).
        value: the value given.
        problem: what is wrong, e.g. ``"must be in [0, 1)"``.
        example: a value that works; shown as ``e.g. model.dropout=0.5``.
        fix: free-text fix when an example value does not say it.
    """

    def __init__(
        self,
        key: str,
        value: Any,
        problem: str,
        example: Any = None,
        fix: str | None = None,
    ) -> None:
        self.key, self.value, self.problem, self.example, self.fix = (
            key,
            value,
            problem,
            example,
            fix,
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.key}={show_value(self.value)}: {self.problem}"
        if self.example is not None:
            text += f"; e.g. {self.key}={show_value(self.example)}"
        if self.fix:
            text += f". {self.fix}"
        return text

    def with_prefix(self, prefix: str) -> ConfigError:
        """The same error for the key under ``prefix`` (``model.`` + ``dropout``)."""
        if not prefix or self.key.startswith(prefix):
            return self
        return ConfigError(prefix + self.key, self.value, self.problem, self.example, self.fix)


class MissingDataError(UserError, FileNotFoundError):
    """A dataset is not where the config points; the message says where and how to get it."""


class DataError(UserError, ValueError):
    """Data that is there but unusable (malformed, incomplete, inconsistent); the message names
    the file and how to prepare it again."""


class CheckpointError(UserError):
    """A checkpoint that cannot be used (missing, truncated, corrupt, or of another model);
    the message names the file."""


class MissingToolError(UserError):
    """An external tool or optional package the run needs is not installed."""


class OutputDirError(UserError):
    """The run folder (or a file the run writes) cannot be created or written."""
