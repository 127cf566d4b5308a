"""The command line: ``python train_agent.py [train|evaluate|compare|push] ...`` (also ``python -m rlaux.cli``).

Every argparse parser of rlaux lives in this package, one module per subcommand
(:mod:`~rlaux.cli.train`, :mod:`~rlaux.cli.evaluate`, :mod:`~rlaux.cli.compare`, :mod:`~rlaux.cli.push`); each parses
its flags and calls the library. Without a subcommand, ``train`` is meant. Bad input exits
with code 2 and one line on stderr: argparse's own errors, and every
:class:`~rlaux.errors.ConfigError` the library raises.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from rlaux.errors import ConfigError

#: Subcommand -> the module of its entry point ``run_<subcommand>(argv) -> exit code``. Imported
#: when called, so that a training process does not load what only ``compare`` uses (rliable,
#: pandas, matplotlib: about 1 s of start-up for every run of a sweep).
COMMANDS: dict[str, str] = {
    "train": "rlaux.cli.train",
    "evaluate": "rlaux.cli.evaluate",
    "compare": "rlaux.cli.compare",
    "push": "rlaux.cli.push",
}


def entry_point(command: str) -> Callable[[Sequence[str]], int]:
    """The function that runs ``command`` (a key of ``COMMANDS``)."""
    return getattr(importlib.import_module(COMMANDS[command]), f"run_{command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the subcommand ``argv`` names (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    try:
        return entry_point(command)(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "entry_point", "main"]
