"""Errors every datamodule raises the same way, so tasks and tests can recognise them."""


class MissingDataError(FileNotFoundError):
    """A dataset is not where the config points; the message says where and how to get it."""
