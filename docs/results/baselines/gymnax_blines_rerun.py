"""The evaluations logged by gymnax-blines' own PPO, rerun here (rerun_gymnax_blines.sh), as one CSV.

    python docs/results/baselines/gymnax_blines_rerun.py runs/gymnax-blines-rerun/pkl docs/results/baselines/gymnax_blines_rerun.csv

Reads ``<Game>_s<seed>.pkl`` (gymnax-blines' ``train.py`` output: ``log_steps``, ``log_return``) into
``game,seed,step,mean_return`` (the mean return of its 164 stochastic test episodes at each evaluation). The
runs read replace those of the same game and seed in the CSV; its other runs are kept, so seeds run in
another session join the committed ones.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check import merge  # noqa: E402 - one merge for the study's tables
from extract_gymnax_blines import _Reader  # noqa: E402 - the same stand-in reader as the published logs'


def _numpy_from_jax(fun, args, array_state, aval_state):  # noqa: ARG001 - jax's pickled Array, as numpy
    value = fun(*args)
    value.__setstate__(array_state)
    return value


class _JaxReader(_Reader):
    """Logs written under a newer JAX hold jax Arrays; read them back as numpy arrays, without JAX."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("jax._src.array", "_reconstruct_array"):
            return _numpy_from_jax
        return super().find_class(module, name)


def read(folder: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(folder.glob("*_s*.pkl")):
        game, seed = re.fullmatch(r"(\w+)_s(\d+)\.pkl", path.name).groups()
        with path.open("rb") as f:
            data = _JaxReader(f).load()
        rows += [{"game": game, "seed": int(seed), "step": int(step), "mean_return": round(float(value), 6)}
                 for step, value in zip(data["log_steps"], data["log_return"], strict=True)]
    return pd.DataFrame(rows)


if __name__ == "__main__":
    target, runs = Path(sys.argv[2]), read(Path(sys.argv[1]))
    old = pd.read_csv(target) if target.is_file() else runs.iloc[:0]
    merge(old, runs, key=["game", "seed"], order=["game", "seed", "step"]).to_csv(target, index=False)
