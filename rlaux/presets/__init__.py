"""Preset files: TOML data for environments (``envs/``) and agents (``agents/``).

Presets are plain data files, one per preset, named ``<Name>.toml``. They live in
the top-level folders ``envs/`` and ``agents/`` of a checkout; an installed wheel
carries them as package data of ``rlaux.presets.envs`` and
``rlaux.presets.agents`` (see pyproject.toml ``[tool.setuptools.package-dir]``).

Lookup order for ``load_preset(kind, name)``:

1. ``name`` is a path to an existing ``.toml`` file: that file.
2. the checkout folder ``<repo>/<kind>/`` (only when ``<repo>`` is a source
   checkout (holds pyproject.toml, .git or train_agent.py and is not inside
   site-packages: an installed rlaux must never read a stray
   ``site-packages/envs`` folder of some other distribution);
3. the package data ``rlaux.presets.<kind>`` (importlib.resources).

Names match case-insensitively (``atari``, ``Atari`` and ``Atari.toml`` are the
same preset). An unknown name raises :class:`rlaux.errors.ConfigError` with one
line naming the bad value and the valid choices.
"""

from __future__ import annotations

import difflib
import importlib.resources
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: needs the tomli package
    import tomli as tomllib

from rlaux.errors import ConfigError

KINDS = ("envs", "agents")

# <repo>/rlaux/presets/__init__.py -> <repo>
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown preset kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def _is_checkout(root: Path) -> bool:
    """A source tree (editable install or plain checkout), not an installed site-packages."""
    if {"site-packages", "dist-packages"} & set(root.parts):
        return False
    return any((root / marker).exists() for marker in ("pyproject.toml", ".git", "train_agent.py"))


def _checkout_dir(kind: str) -> Path | None:
    folder = _REPO_ROOT / kind
    if _is_checkout(_REPO_ROOT) and folder.is_dir():
        return folder
    return None


def _package_dir(kind: str):
    """The importlib.resources Traversable of ``rlaux.presets.<kind>``, or None."""
    try:
        root = importlib.resources.files(f"rlaux.presets.{kind}")
    except (ModuleNotFoundError, TypeError, ValueError):
        return None
    try:
        if not root.is_dir():
            return None
    except (OSError, NotImplementedError):
        return None
    return root


def _candidates(kind: str) -> dict[str, Any]:
    """Map lower-case preset name -> file (Path or Traversable); the checkout wins."""
    found: dict[str, Any] = {}
    sources = [_checkout_dir(kind), _package_dir(kind)]
    for source in sources:
        if source is None:
            continue
        try:
            entries = list(source.iterdir())
        except (OSError, NotImplementedError):
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.endswith(".toml") and entry.is_file():
                found.setdefault(entry.name[: -len(".toml")].lower(), entry)
    return found


def list_presets(kind: str) -> list[str]:
    """Names (file stems, original case) of the presets of ``kind`` ("envs" or "agents")."""
    _check_kind(kind)
    return sorted((f.name[: -len(".toml")] for f in _candidates(kind).values()), key=str.lower)


def is_preset(kind: str, name: str) -> bool:
    """True if ``name`` is a preset of ``kind`` or a path to an existing .toml file."""
    _check_kind(kind)
    if _as_path(name) is not None:
        return True
    return _normalise(name) in _candidates(kind)


def preset_source(kind: str, name: str) -> str:
    """Where the preset ``name`` of ``kind`` is read from (a path or resource name)."""
    path = _as_path(name)
    if path is not None:
        return str(path)
    return str(_find(kind, name))


def _normalise(name: str) -> str:
    name = name.strip()
    if name.lower().endswith(".toml"):
        name = name[: -len(".toml")]
    return name.lower()


def _as_path(name: str) -> Path | None:
    if not name.lower().endswith(".toml"):
        return None
    path = Path(name).expanduser()
    if path.is_file():
        return path
    return None


def _find(kind: str, name: str):
    candidates = _candidates(kind)
    key = _normalise(name)
    if key in candidates:
        return candidates[key]
    valid = list_presets(kind)
    close = difflib.get_close_matches(key, list(candidates), n=3, cutoff=0.5)
    close_names = [candidates[c].name[: -len(".toml")] for c in close]
    hint = f" (did you mean {', '.join(close_names)}?)" if close_names else ""
    if name.lower().endswith(".toml"):
        raise ConfigError(
            f"{kind[:-1]} preset file {name!r} does not exist{hint}; valid presets: {', '.join(valid) or '(none found)'}"
        )
    raise ConfigError(f"unknown {kind[:-1]} preset {name!r}{hint}; valid presets: {', '.join(valid) or '(none found)'}")


def _parse(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {where} is not valid TOML: {exc}") from None


def load_preset(kind: str, name: str) -> dict:
    """Load the preset ``name`` of ``kind`` ("envs" or "agents") as a dict.

    ``name`` is a preset name (case-insensitive, with or without ``.toml``) or a
    path to a .toml file. Raises ConfigError (one line) for unknown names.
    """
    _check_kind(kind)
    path = _as_path(name)
    if path is not None:
        return _parse(path.read_text(encoding="utf-8"), str(path))
    entry = _find(kind, name)
    return _parse(entry.read_text(encoding="utf-8"), str(entry))


__all__ = ["KINDS", "is_preset", "list_presets", "load_preset", "preset_source"]
