#!/usr/bin/env bash
# Rebuild every report under docs/results from the data committed beside it (no run folders needed):
#   bash docs/results/regenerate.sh            (from the repository root, in the project's environment)
# Studies made before reports wrote episodes.csv.gz are rebuilt from their curves.csv and scores.csv;
# newer ones from episodes.csv.gz. Each study's README gives its own line.
set -euo pipefail
cd "$(dirname "$0")/../.."
compare() { python train_agent.py compare --from "$1" --out "$1" "${@:2}"; }
fromdata() { python train_agent.py compare --from "$1/episodes.csv.gz" --out "$1" "${@:2}"; }
compare docs/results/minatar --baseline none
compare docs/results/minatar-1m --baseline none
compare docs/results/minatar-1m/pilot --baseline none
compare docs/results/miniworld --baseline ppo_lstm:none --curve-window 100 --allow-missing-seeds
compare docs/results/presets/a2c --baseline a2c-before
compare docs/results/presets/ppo --baseline ppo-before
compare docs/results/unreal-weights/a2c --baseline none
compare docs/results/unreal-weights/ppo --baseline none
fromdata docs/results/a2c-minatar --baseline none
fromdata docs/results/minatar-1m/no-sticky --baseline none-no-sticky
fromdata docs/results/miniworld/runs-48adb0f --baseline none --curve-window 100
fromdata docs/results/miniworld/pilot-pixel-control --baseline pc0.05 --curve-window 100
fromdata docs/results/miniworld/pilot-pixel-control/runs-2026-12-02 --baseline pc0.05 --curve-window 100 --allow-missing-seeds
fromdata docs/results/ppg-minatar --baseline ppo:none
python train_agent.py compare --from docs/results/ppg-minatar/episodes.csv.gz --out docs/results/ppg-minatar/vs-one-epoch \
  --baseline ppo:none-1-epoch
python docs/results/baselines/check.py > /dev/null
