"""Published references a report sets results beside: the human and random scores of Atari games (for
human-normalised scores) and the per-run final scores of the Atari 100k agents (``rlaux/data``)."""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

REFERENCES = ("atari100k",)
# File name -> display name of the published Atari 100k agents shipped in rlaux/data/atari100k.
ATARI100K_AGENTS = {
    "SPR": "SPR",
    "DrQ_eps": "DrQ(eps)",
    "CURL_10_evals": "CURL",
    "SimPLe": "SimPLe",
    "IRIS": "IRIS",
}


def _load_json(*parts: str) -> Any:
    resource = importlib.resources.files("rlaux").joinpath("data", *parts)
    return json.loads(resource.read_text())


def game_key(name: str) -> str:
    """Canonical Atari game key: 'ALE/MsPacman-v5', 'MsPacmanNoFrameskip-v4', 'ms_pacman' -> 'mspacman'."""
    name = name.split("/")[-1]
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def atari_human_random() -> dict[str, tuple[float, float]]:
    """{game key: (random, human)} from the shipped dopamine table."""
    table = _load_json("atari_human_random_scores.json")
    return {game: (float(table["random"][game]), float(table["human"][game])) for game in table["human"]}


def is_atari(family: str, config: Mapping[str, Any] | None = None) -> bool:
    """True for runs of Atari games (env 'Atari'/'ALE', or an ALE / NoFrameskip env id)."""
    env_id = str((config or {}).get("env_id", ""))
    family = family.lower()  # env presets Atari, AtariRGB, Atari100k ...
    return family == "ale" or family.startswith("atari") or env_id.startswith("ALE/") or "NoFrameskip" in env_id


def atari100k_normalised_scores(games: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{agent: {game key: human-normalised per-run final scores}} of the shipped Atari 100k agents.

    ``games`` (any spelling, see :func:`game_key`) restricts to those games; default all 26.
    """
    human = {game_key(g): v[0] for g, v in _load_json("atari100k", "HUMAN.json").items()}
    random = {game_key(g): v[0] for g, v in _load_json("atari100k", "RANDOM.json").items()}
    wanted = sorted(human) if games is None else sorted({game_key(g) for g in games} & set(human))
    result: dict[str, dict[str, np.ndarray]] = {}
    for file_name, agent in ATARI100K_AGENTS.items():
        data = _load_json("atari100k", f"{file_name}.json")
        if isinstance(data, list):  # records already human-normalised: {game, seed, HNS, ...}
            by_game: dict[str, list[float]] = {}
            for record in data:
                by_game.setdefault(game_key(record["game"]), []).append(float(record["HNS"]))
            result[agent] = {g: np.array(by_game[g]) for g in wanted}
        else:
            raw = {game_key(g): np.asarray(v, dtype=float) for g, v in data.items()}
            result[agent] = {g: (raw[g] - random[g]) / (human[g] - random[g]) for g in wanted}
    return result


def atari100k_matrices(games: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """{agent: [n_runs, n_games]} human-normalised matrices of the shipped Atari 100k agents."""
    per_agent = atari100k_normalised_scores(games)
    if not any(per_agent.values()):
        return {}
    return {agent: np.stack([scores[g] for g in sorted(scores)], axis=1) for agent, scores in per_agent.items()}


__all__ = ["ATARI100K_AGENTS", "REFERENCES", "atari100k_matrices", "atari100k_normalised_scores", "atari_human_random",
           "game_key", "is_atari"]
