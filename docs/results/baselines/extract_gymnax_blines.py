"""Read the training logs that gymnax-blines ships with its PPO MinAtar checkpoints into rlaux's reference file.

    git clone https://github.com/RobertTLange/gymnax-blines && git -C gymnax-blines checkout 3f029d6b98afb0d654d387b5bc0f7a592373ad66
    python docs/results/baselines/extract_gymnax_blines.py gymnax-blines > rlaux/data/minatar_ppo_gymnax_blines.json

Each ``agents/<Game>-MinAtar/ppo.pkl`` is a pickle of ``{"log_steps", "log_return", "network", "train_config"}``
(gymnax-blines ``train.py``): the env steps at each evaluation and the mean return of 164 test episodes there.
The network and the config are jax/DotMap objects; they are read as stand-ins (neither jax nor dotmap is needed),
since only the two logs are used.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

GAMES = ("Asterix", "Breakout", "Freeway", "SpaceInvaders")  # Seaquest has no PPO checkpoint there
#: gymnax's EnvParams.max_steps_in_episode per game where it is not the base 1,000 (gymnax's MinFreeway: 2,500).
MAX_STEPS_IN_EPISODE = {"Freeway": 2500}


class _StandIn(dict):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def __setstate__(self, state) -> None:
        pass


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith(("numpy", "builtins", "collections", "copyreg")):
            return super().find_class(module, name)
        return _StandIn


def main(clone: Path) -> dict:
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    games = {}
    for game in GAMES:
        name = f"agents/{game}-MinAtar/ppo.pkl"
        blob = subprocess.run(["git", "-C", str(clone), "show", f"HEAD:{name}"], capture_output=True, check=True).stdout
        data = _Reader(io.BytesIO(blob)).load()
        games[game] = {"file": name, "sha256": hashlib.sha256(blob).hexdigest(),
                       "env_steps": [int(s) for s in data["log_steps"]],
                       "mean_return": [round(float(r), 6) for r in data["log_return"]],
                       "max_steps_in_episode": MAX_STEPS_IN_EPISODE.get(game, 1000)}
    return {
        "_about": "Training logs of gymnax-blines' PPO on gymnax's MinAtar port, one run (seed 0) per game: the mean "
                  "return of 164 test episodes (stochastic policy, fresh episodes) every 320,000 env steps to 10M. "
                  "Read from the pickles the repository ships (docs/results/baselines/extract_gymnax_blines.py); the "
                  "rounded 10M numbers of the gymnax README (minatar_reference.json) are the last points of these logs.",
        "source": "Lange, R. T. gymnax-blines: baselines for gymnax (PPO, ES), https://github.com/RobertTLange/gymnax-blines",
        "commit": commit,
        "env": "gymnax MinAtar port: minimal action set, no sticky actions, episodes end at max_steps_in_episode "
               "(1,000 steps; Freeway 2,500; counted as termination); observations 10x10xC booleans",
        "agent": "PPO (utils/ppo.py, agents/<Game>-MinAtar/ppo.yaml): separate actor and critic MLPs, 2 x 256 ReLU, "
                 "on the flattened frame; 64 envs x 128 steps, 8 minibatches, 4 epochs, Adam (eps 1e-5) lr 5e-4 "
                 "constant after a 5% warm-up from 5e-4, clip 0.2 (also the value clip, max of the two losses), "
                 "critic 0.5 x 0.5 x MSE, entropy 0.01, gamma 0.999, GAE lambda 0.95, grad norm 0.5",
        "evaluation": "every 5,000 rollout steps of 64 envs (319,936 env steps, then every 320,000): mean return of "
                      "164 episodes of the stochastic policy",
        "seeds": 1,
        "games": games,
    }


if __name__ == "__main__":
    json.dump(main(Path(sys.argv[1])), sys.stdout, indent=1)
    print()
