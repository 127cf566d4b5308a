"""Env names to gymnasium ids: ALE games, MinAtar games and MiniWorld envs matched loosely
(case, punctuation), unknown names answered with close matches (``rlaux.envs.spec`` uses them)."""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any

import gymnasium as gym

from rlaux.envs.families import MINATAR_GAMES, import_miniworld, miniworld_ids
from rlaux.errors import ConfigError
from rlaux.presets import list_presets


def norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


@functools.lru_cache(maxsize=1)
def ale_games() -> dict[str, str]:
    """normalised game name -> CamelCase name used in ids (e.g. 'spaceinvaders' -> 'SpaceInvaders')."""
    games = {}
    for key in gym.registry:
        m = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", key)
        if m:
            games[norm(m.group(1))] = m.group(1)
    return games


def close_matches(word: str, choices: list[str], n: int = 5) -> list[str]:
    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def atari_env_id(game: str, sticky: bool) -> tuple[str, dict]:
    games = ale_games()
    key = norm(game)
    if key not in games:
        # compare on normalised names, show CamelCase names
        hits = difflib.get_close_matches(key, list(games), n=5, cutoff=0.6)
        close = [games[h] for h in hits]
        hint = f"close matches: {', '.join(close)}" if close else "no close match"
        raise ConfigError(
            f"unknown Atari game {game!r} ({hint}); ALE has {len(games)} games, e.g. Breakout, Pong, SpaceInvaders"
        )
    camel = games[key]
    if not sticky and f"{camel}NoFrameskip-v4" in gym.registry:
        return f"{camel}NoFrameskip-v4", {}
    # v5 ids: the wrapper does frame skipping (max-pooled), so the env must not.
    kwargs: dict[str, Any] = {"frameskip": 1}
    if not sticky:
        kwargs["repeat_action_probability"] = 0.0
    return f"ALE/{camel}-v5", kwargs


def minatar_game(game: str) -> str:
    by_norm = {norm(g): g for g in MINATAR_GAMES}
    if norm(game) in by_norm:
        return by_norm[norm(game)]
    close = [by_norm[h] for h in difflib.get_close_matches(norm(game), list(by_norm), n=3, cutoff=0.5)]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown MinAtar game {game!r}{hint}; valid games: {', '.join(MINATAR_GAMES)}")


def miniworld_env_id(template: str, game: str) -> str:
    ids = miniworld_ids()
    env_id = template.format(game=game)
    if not ids:
        import_miniworld()  # raises the GL ConfigError
    by_lower = {k.lower(): k for k in ids}
    if env_id.lower() in by_lower:
        return by_lower[env_id.lower()]
    games = sorted({re.sub(r"^MiniWorld-|-v\d+$", "", k) for k in ids})
    close = close_matches(game, games, n=5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown MiniWorld game {game!r}{hint}; valid games: {', '.join(games)}")


def check_env_id(env_id: str) -> str:
    if env_id in gym.registry:
        return env_id
    by_lower = {k.lower(): k for k in gym.registry}
    if env_id.lower() in by_lower:
        return by_lower[env_id.lower()]
    if env_id.startswith("MiniWorld"):
        import_miniworld()  # a missing or broken miniworld says so, rather than "unknown env"
        if env_id in gym.registry:
            return env_id
    raise unknown_env(env_id)


def unknown_env(name: str) -> ConfigError:
    env_presets = list_presets("envs")
    choices = list(gym.registry) + env_presets + miniworld_ids()
    close = close_matches(name, choices, n=5)
    hint = f"close matches: {', '.join(close)}" if close else "no close match"
    game = ale_games().get(norm(name))
    if game is not None:
        hint += f"; for the Atari game use the Atari preset with game {game!r}"
    return ConfigError(
        f"unknown env {name!r} ({hint}); give a preset ({', '.join(env_presets)}) or a registered gymnasium id "
        "(an env of another package: --gym-packages PACKAGE, or --env PACKAGE:EnvId)"
    )


def kind_of_id(env_id: str) -> str:
    spec = gym.registry[env_id]
    entry = str(spec.entry_point)
    if entry.startswith("ale_py"):
        if spec.kwargs.get("obs_type", "rgb") in ("rgb", "grayscale"):
            return "atari"
        return "gym"  # RAM observations: a vector
    if entry.startswith("minatar"):
        return "minatar"
    if entry.startswith("miniworld") or env_id.startswith("MiniWorld-"):
        return "miniworld"
    return "gym"


__all__ = ["ale_games", "atari_env_id", "check_env_id", "close_matches", "kind_of_id", "minatar_game", "miniworld_env_id", "norm", "unknown_env"]
