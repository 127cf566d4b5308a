"""Errors that the command line turns into one clear line and exit code 2, and the one for a
missing optional package (which names the extra that installs it)."""

from __future__ import annotations

import importlib
from types import ModuleType


class ConfigError(ValueError):
    """Bad user input: an unknown name, a value out of range, an impossible combination.

    The message is one line that names the bad value and what would be valid.
    """


#: Optional packages (top-level import names) -> the extra of rlaux that installs them
#: (``[project.optional-dependencies]`` in pyproject.toml).
OPTIONAL_PACKAGES: dict[str, str] = {
    "miniworld": "miniworld",
    "moviepy": "video",
    "ray": "ray",
    "envpool": "envpool",
    "rl_zoo3": "zoo",
    "optuna": "zoo",
    "wandb": "wandb",
    "huggingface_sb3": "hub",
    "huggingface_hub": "hub",
    "minigrid": "minigrid",
}


def missing_extra(what: str, package: str) -> ConfigError:
    """``<what> needs the optional package <package>: pip install "rlaux[<extra>]"``."""
    extra = OPTIONAL_PACKAGES[package]
    return ConfigError(f'{what} needs the optional package {package}: pip install "rlaux[{extra}]"')


def import_optional(module: str, what: str) -> ModuleType:
    """``import <module>`` of an optional package (a key of ``OPTIONAL_PACKAGES``, or a submodule of one).

    A missing package, or a missing optional package it imports (huggingface_sb3 needs huggingface_hub),
    is the ConfigError of :func:`missing_extra` (``what`` says what needs it, e.g. ``"--video"``); one
    that is installed but fails to import (a missing dependency, a broken binary) is a one-line
    ConfigError too, with the first line of the error.
    """
    package = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - a broken install raises anything (ImportError, OSError ...)
        missing = (err.name or "").partition(".")[0] if isinstance(err, ModuleNotFoundError) else ""
        if missing == package or OPTIONAL_PACKAGES.get(missing) == OPTIONAL_PACKAGES[package]:
            raise missing_extra(what, missing) from None
        detail = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise ConfigError(f"{what} needs the optional package {package}, which is installed but fails to import "
                          f'({detail}); reinstall it: pip install "rlaux[{OPTIONAL_PACKAGES[package]}]"') from None


__all__ = ["OPTIONAL_PACKAGES", "ConfigError", "import_optional", "missing_extra"]
