#!/usr/bin/env python
"""Train, evaluate or compare SB3 agents with auxiliary tasks: ``python train_agent.py --help``."""

from rlaux.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
