"""``python -m rlaux.zoo train|enjoy|record_video [rl-zoo3's flags]``: rl-zoo3's scripts, knowing aux_ppo, aux_a2c
and aux_ppo_lstm.

Examples::

    python -m rlaux.zoo train --algo aux_ppo --env MinAtar/Breakout-v1 [-conf my.yml] [-params aux_weights:"dict(reward_pred=0.5)"]
    python -m rlaux.zoo train --algo aux_a2c --env MinAtar/Breakout-v1 -optimize --n-trials 20 -n 200000
    python -m rlaux.zoo train --algo aux_ppo_lstm --env MinAtar/Breakout-v1   # RecurrentPPO + UNREAL
    python -m rlaux.zoo enjoy --algo aux_ppo --env MinAtar/Breakout-v1 -f logs/
    python -m rlaux.zoo record_video --algo aux_ppo --env MinAtar/Breakout-v1 -f logs/ -n 500
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable, Sequence

from rlaux.errors import ConfigError

# Running this module imported the package rlaux.zoo first, which registered aux_ppo, aux_a2c and
# aux_ppo_lstm in rl-zoo3 (before any of its parsers is built).


def _train() -> None:
    from rl_zoo3.train import train

    train()


def _enjoy() -> None:
    from rl_zoo3.enjoy import enjoy

    enjoy()


def _record_video() -> None:
    # rl-zoo3's record_video is a script (its code runs under ``if __name__ == "__main__"``)
    runpy.run_module("rl_zoo3.record_video", run_name="__main__")


#: Subcommand -> the rl-zoo3 script it runs.
COMMANDS: dict[str, Callable[[], None]] = {"train": _train, "enjoy": _enjoy, "record_video": _record_video}


def main(argv: Sequence[str] | None = None) -> int:
    """Run rl-zoo3's script ``argv[0]`` with the flags ``argv[1:]`` (default ``sys.argv[1:]``); the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        given = repr(argv[0]) if argv else "none"
        print(f"error: the rlaux.zoo command must be one of {', '.join(COMMANDS)}, got {given}", file=sys.stderr)
        return 2
    command, flags = argv[0], argv[1:]
    saved_argv = sys.argv
    sys.argv = [f"rlaux.zoo {command}", *flags]
    try:
        COMMANDS[command]()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
