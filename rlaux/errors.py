"""Errors that the command line turns into one clear line and exit code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: an unknown name, a value out of range, an impossible combination.

    The message is one line that names the bad value and what would be valid.
    """
