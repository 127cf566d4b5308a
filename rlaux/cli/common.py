"""What every subcommand's parser shares: one-line errors (exit 2) and ``name=value`` flags."""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
from typing import Any, NoReturn

from rlaux.errors import ConfigError


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def key_values(items: Sequence[str], flag: str, literal: bool) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; values parsed as Python literals when ``literal``.

    A value that is no literal stays a string; an item without ``=`` is a ConfigError naming ``flag``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects name=value, got '{item}'")
        if literal:
            try:
                out[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                out[key] = value
        else:
            out[key] = value
    return out


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (own flags, flags passed through)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


__all__ = ["OneLineErrorParser", "key_values", "split_extra"]
