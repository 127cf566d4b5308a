"""``python -m rlaux.cli ...``: the same command line as ``train_agent.py`` (sweeps launch their runs so)."""

from rlaux.cli import main

raise SystemExit(main())
