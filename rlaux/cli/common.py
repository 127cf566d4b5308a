"""What every subcommand's parser shares: one-line errors (exit 2) and ``name=value`` (also rl-zoo3's
``name:value``) flags."""

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


def key_values(items: Sequence[str], flag: str, literal: bool, colon: bool = False) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; values parsed as Python literals when ``literal``.

    ``colon``: ``a:1`` too (rl-zoo3's form); the name ends at the first ``=`` or ``:``, so values may hold
    either (``policy_kwargs:dict(net_arch=[64])``, ``learning_rate=lin_2.5e-4``). A value that is no
    literal stays a string, except ``dict(name=literal, ...)`` (rl-zoo3's way to write a table), which
    becomes a dict; an item without a separator is a ConfigError naming ``flag``.
    """
    out: dict[str, Any] = {}
    form = "name=value or name:value" if colon else "name=value"
    for item in items:
        cut = min((i for i in (item.find("="), item.find(":") if colon else -1) if i >= 0), default=-1)
        key, value = (item[:cut], item[cut + 1:]) if cut >= 0 else (item, "")
        if cut < 0 or not key:
            raise ConfigError(f"{flag} expects {form}, got '{item}'")
        out[key] = _literal(value) if literal else value
    return out


def _literal(text: str) -> Any:
    """A Python literal, or a ``dict(...)`` call of literals; else the text itself."""
    try:
        return _value(ast.parse(text.strip(), mode="eval").body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _value(node: ast.expr) -> Any:
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args
            and all(k.arg is not None for k in node.keywords)):
        return {k.arg: _value(k.value) for k in node.keywords}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (own flags, flags passed through)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


__all__ = ["OneLineErrorParser", "add_action_flags", "key_values", "split_extra"]


def add_action_flags(p: argparse.ArgumentParser, greedy_help: str) -> None:
    """``--deterministic`` (the default) / ``--stochastic``: how an evaluated agent picks its actions."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="deterministic", action="store_true", default=True, help=greedy_help)
    group.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions")
