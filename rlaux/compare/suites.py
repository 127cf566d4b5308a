"""Benchmark suites for ``train_agent.py compare --suite NAME``: a game list and a protocol.

``atari100k`` (Kaiser et al. 2020, the protocol of SimPLe, CURL, DrQ, SPR, IRIS):

* its 26 games (the keys of ``rlaux/data/atari100k/HUMAN.json``);
* a budget of 100,000 agent steps = 400,000 frames at frame skip 4 (SB3 counts
  agent steps, so ``--timesteps 100000``);
* no sticky actions: ``<Game>NoFrameskip-v4`` (repeat_action_probability 0);
* life loss as terminal for training (evaluation plays whole games);
* episodes capped at 27,000 agent steps = 108,000 frames. The cap is ALE's own
  ``max_num_frames_per_episode = 108000`` (frames: the NoFrameskip env steps one
  frame at a time), set in ``envs/Atari100k.toml`` so that it applies to the
  training and the evaluation envs alike, under the AtariWrapper;
* a final evaluation: every run evaluates once, at its last step
  (``--eval-freq <budget>``), over ``eval_episodes`` whole games with the
  deterministic policy; ``evaluations.npz`` in the run folder holds them, and
  the report takes that evaluation as each run's final score
  (``build_report(..., final_from_eval=True)``) and places the result beside the
  published agents (``reference="atari100k"``).

``atari5`` (Aitchison et al. 2023, "Atari-5: Distilling the Arcade Learning
Environment down to Five Games"): Battle Zone, Double Dunk, Name This Game,
Phoenix and Q*bert, the five games whose scores best predict the 57-game median,
run under the same 100k protocol. Only BattleZone and Qbert are among the 26
Atari 100k games: the comparison with the published agents uses those two.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass

from rlaux.errors import ConfigError

ATARI100K_STEPS = 100_000  #: agent steps (400k frames at frame skip 4)
FRAME_SKIP = 4
EPISODE_CAP_STEPS = 27_000  #: agent steps = 108,000 frames


def _atari100k_games() -> tuple[str, ...]:
    resource = importlib.resources.files("rlaux").joinpath("data", "atari100k", "HUMAN.json")
    return tuple(sorted(json.loads(resource.read_text())))


@dataclass(frozen=True)
class Suite:
    """A named benchmark: env preset, games, budget, evaluation and the published reference."""

    name: str
    description: str
    env: str
    games: tuple[str, ...]
    timesteps: int
    eval_episodes: int
    reference: str | None

    @property
    def frames(self) -> int:
        return self.timesteps * FRAME_SKIP

    def train_args(self, eval_episodes: int | None = None) -> list[str]:
        """Train flags of the protocol: one evaluation, at the end of training."""
        episodes = self.eval_episodes if eval_episodes is None else eval_episodes
        return ["--eval-freq", str(self.timesteps), "--eval-episodes", str(episodes)]


ATARI100K_GAMES: tuple[str, ...] = _atari100k_games()
#: Aitchison et al. 2023, Atari-5 (ICML 2023), in the paper's order.
ATARI5_GAMES: tuple[str, ...] = ("BattleZone", "DoubleDunk", "NameThisGame", "Phoenix", "Qbert")

SUITES: dict[str, Suite] = {
    "atari100k": Suite(
        name="atari100k",
        description="Atari 100k: 26 games, 100k agent steps (400k frames), no sticky actions, "
        "life loss terminal, 27k-step episode cap, final evaluation",
        env="Atari100k",
        games=ATARI100K_GAMES,
        timesteps=ATARI100K_STEPS,
        eval_episodes=10,
        reference="atari100k",
    ),
    "atari5": Suite(
        name="atari5",
        description="Atari-5 (Aitchison et al. 2023): BattleZone, DoubleDunk, NameThisGame, Phoenix, Qbert "
        "under the Atari 100k protocol",
        env="Atari100k",
        games=ATARI5_GAMES,
        timesteps=ATARI100K_STEPS,
        eval_episodes=10,
        reference="atari100k",
    ),
}


def get_suite(name: str) -> Suite:
    """The suite called ``name`` (case-insensitive); ConfigError naming the valid ones."""
    suite = SUITES.get(name.lower().replace("-", "").replace("_", ""))
    if suite is None:
        raise ConfigError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}")
    return suite
