"""The baselines check (docs/results/baselines) regenerates its committed report from its committed data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BASELINES = Path(__file__).parent.parent / "docs" / "results" / "baselines"


def test_the_baselines_report_regenerates_from_its_committed_data(tmp_path):
    """check.py without --runs reads evaluations.csv and gymnax_blines_rerun.csv alone and writes report.md
    exactly as committed: every verdict, p-value and range on the baselines page comes from the data beside it."""
    done = subprocess.run([sys.executable, str(BASELINES / "check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.md").read_text() == (BASELINES / "report.md").read_text()
