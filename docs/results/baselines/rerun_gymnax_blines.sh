#!/usr/bin/env bash
# gymnax-blines' own PPO, rerun here on CPU at 1M steps for seeds 0-2, so that the published side has a spread.
# Its code runs unmodified at commit 3f029d6 with the library versions of its time; evosax, which it imports for
# its ES agents only, is replaced by a stub. The run length is the one change to its configs
# (10M -> 1M steps; it evaluates every 5,000 rollout steps of 64 envs, as in the published logs). Games: the three
# whose gaps the study looks into, SpaceInvaders, Breakout and Asterix.
# Usage, from the repository root: bash docs/results/baselines/rerun_gymnax_blines.sh [WORK_FOLDER]  (about 8 minutes a run on 2 cores)
# SEEDS and GAMES choose the runs (default: seeds 0-2 of the three games); gymnax_blines_rerun.csv keeps the runs of
# other seeds and games it already has. The committed CSV: SEEDS="0 1 2", then SEEDS="3 4".
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-runs/gymnax-blines-rerun}"
mkdir -p "$WORK/pkl" "$WORK/stub/evosax"
cd "$WORK"
[ -d venv ] || { python3 -m venv venv && venv/bin/pip install -q "jax[cpu]==0.4.30" "gymnax==0.0.6" \
  "tensorflow-probability==0.24.0" "flax==0.8.5" "optax==0.2.2" "chex==0.1.86" dotmap pyyaml tqdm "numpy<2"; }
[ -d gymnax-blines ] || { git clone -q https://github.com/RobertTLange/gymnax-blines && \
  git -C gymnax-blines checkout -q 3f029d6b98afb0d654d387b5bc0f7a592373ad66; }
echo "NetworkMapper = {}  # stub: gymnax-blines' ES agents only" > stub/evosax/__init__.py
for GAME in ${GAMES:-SpaceInvaders Breakout Asterix}; do
  sed 's/num_train_steps: 10000000/num_train_steps: 1000000/' gymnax-blines/agents/$GAME-MinAtar/ppo.yaml > ${GAME}_1m.yaml
  for SEED in ${SEEDS:-0 1 2}; do
    (cd gymnax-blines && PYTHONPATH=../stub ../venv/bin/python train.py -config ../${GAME}_1m.yaml -seed $SEED)
    cp gymnax-blines/agents/$GAME-MinAtar/ppo.pkl pkl/${GAME}_s$SEED.pkl
  done
done
cd - > /dev/null
python "$HERE/gymnax_blines_rerun.py" "$WORK/pkl" "$HERE/gymnax_blines_rerun.csv"
