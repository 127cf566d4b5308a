"""The raw output of a benchmark run, kept beside the table it feeds: machine, versions, commit, every repeat.

    from rawdata import write_raw
    write_raw(args.out, "throughput", vars(args), {"repeats": [...], "medians": {...}})

The JSON holds ``benchmark``, ``command`` (argv), ``arguments``, ``time`` (UTC), ``machine`` (platform,
processor model, logical cores, torch threads, memory), ``versions`` (python, torch, numpy, gymnasium,
stable-baselines3, sb3-contrib, rlaux), ``commit`` (git HEAD of the repository, and whether its
tracked files had changes), and ``results`` as the benchmark gives them (every repeat, not only medians).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from rlaux.provenance import LIBRARIES, git_state, package_version

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (*LIBRARIES, "rlaux")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def environment() -> dict[str, Any]:
    """Machine, versions and commit of this run."""
    import torch

    versions = {"python": platform.python_version(), **{name: package_version(name) for name in PACKAGES}}
    head, dirty = git_state(REPO)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "machine": {"platform": platform.platform(), "processor": _cpu_model(), "logical_cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "memory_gib": _memory_gib(), "gpu": gpu},
        "versions": versions,
        "commit": {"head": head, "dirty": dirty},
    }


def write_raw(path: str | os.PathLike | None, benchmark: str, arguments: dict[str, Any],
              results: dict[str, Any]) -> Path | None:
    """Write the raw JSON of one benchmark run to ``path`` (nothing if None); returns the path."""
    if path is None:
        return None
    record = {"benchmark": benchmark, "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "arguments": arguments,
              "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              **environment(), "results": results}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw output: {path}", flush=True)
    return path
