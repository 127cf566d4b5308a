"""The code a run trained with: rlaux's version and git commit, and the versions of the libraries under it.

A run folder's ``config.json`` keeps it under ``code`` (:func:`code_version`), so that a study can tell runs
of one code from runs of another: two runs of the same command at different commits are different
experiments, however alike their settings look. ``compare`` names the code versions of the runs it reads
(:func:`code_label`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The libraries whose versions a run records beside rlaux's.
LIBRARIES = ("torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib")
#: Where rlaux's source lies: its git checkout, if it is one.
SOURCE = Path(__file__).resolve().parent


def package_version(name: str) -> str | None:
    """The installed version of a distribution, None if it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def rlaux_version() -> str:
    """rlaux's installed version; "unknown" when run from a source tree that is not installed."""
    return package_version("rlaux") or "unknown"


def git_state(folder: str | Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of the git work tree holding ``folder``;
    (None, None) outside one, or where git is not installed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """rlaux's version, the commit of its source and whether tracked files had changes (None, None where it is
    not a git checkout, e.g. installed from a wheel), and the versions of Python and :data:`LIBRARIES`."""
    commit, dirty = git_state(SOURCE)
    return {"rlaux": rlaux_version(), "commit": commit, "dirty": dirty, "python": platform.python_version(),
            **{name: package_version(name) for name in LIBRARIES}}


def code_history(code: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The code a run started with, then each code it was resumed at (``resumed_with``), oldest first."""
    return [code, *code.get("resumed_with", [])]


def code_label(code: Mapping[str, Any] | None) -> str | None:
    """A short name for the code of a run: ``4d027d3``, ``4d027d3+changes`` (tracked files differed from the
    commit), ``rlaux 0.1.0`` (no checkout); resumed at other code: ``4d027d3 then 0adfc23``. None where the run
    recorded none (written before rlaux recorded it, or another tool's log)."""
    if not code:
        return None
    labels = []
    for part in code_history(code):
        label = f"{part['commit'][:7]}{'+changes' if part.get('dirty') else ''}" if part.get("commit") \
            else f"rlaux {part.get('rlaux', 'unknown')}"
        if not labels or labels[-1] != label:
            labels.append(label)
    return " then ".join(labels)


__all__ = ["LIBRARIES", "SOURCE", "code_history", "code_label", "code_version", "git_state", "package_version", "rlaux_version"]
